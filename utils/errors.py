"""User-facing errors: one line naming the file and what to do, never a traceback."""
from __future__ import annotations

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
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
