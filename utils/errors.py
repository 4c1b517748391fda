"""User-facing errors: one line naming the file and what to do, never a traceback."""
from __future__ import annotations

import os
import sys
from typing import Callable


class UserError(Exception):
    """A problem with the user's input (file, folder, flag, checkpoint).

    The message must be one line that names the offending file or flag and says what to do.
    Command-line entry points turn it into ``error: <message>`` on stderr and exit status 2.
    """


def run_cli(main: Callable[[], object]) -> None:
    """Run ``main()`` and turn a :class:`UserError` into a one-line message and exit code 2."""
    try:
        main()
    except UserError as e:
        if not _echoed_by_another_process():
            print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def _echoed_by_another_process() -> bool:
    """Under torchrun, an error raised before the processes have joined (a flag or an input file: the same in
    every process of a machine) is printed by local rank 0 alone, not once per process. After the join the
    processes work on different shares, so each prints its own error."""
    if int(os.environ.get("WORLD_SIZE", 1) or 1) <= 1 or os.environ.get("LOCAL_RANK", "0") in ("", "0"):
        return False
    dist = sys.modules.get("torch.distributed")
    return not (dist is not None and dist.is_available() and dist.is_initialized())
