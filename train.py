"""Training entry point for both systems.

    python train.py --stage scl       ...   # SCL-LLE: DCE-Net with contrastive/semantic/VGG losses (Cityscapes)
    python train.py --stage enhancer  ...   # EMNet stage 1: supervised enhancer on paired LOL data
    python train.py --stage memory    ...   # EMNet stage 2: external memory on a frozen enhancer

``python train.py --stage X --help`` lists that stage's flags (the reference flag names). Every stage
refuses to start over an earlier run unless given --resume (continue) or --overwrite (start afresh),
stops on a NaN/Inf loss keeping its last good checkpoint, and on SIGINT/SIGTERM/SIGHUP/SIGUSR1 (to the
process or its whole process group) writes a resumable checkpoint and exits with status 130/143/129/138.
Launch with ``torchrun --nproc_per_node N train.py ...`` for data-parallel training (every stage, the memory
stage included).
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from stages.batches import STOP_SIGNALS
from stages.common import Interrupted
from utils import options
from utils.device import close_distributed
from utils.errors import UserError, run_cli

# stage name -> module with add_arguments(parser) and run(args); imported only when chosen.
STAGES = {"scl": "stages.scl", "enhancer": "stages.enhancer", "memory": "stages.memory"}


def _stage_parser(**kw) -> argparse.ArgumentParser:
    """A parser holding ``--stage`` (declared here only)."""
    parser = options.parser(**kw)
    parser.add_argument_group("stage").add_argument("--stage", choices=sorted(STAGES), default="scl",
                                                    help="what to train")
    return parser


def build_parser(stage: str) -> argparse.ArgumentParser:
    parser = _stage_parser(description=__doc__)
    importlib.import_module(STAGES[stage]).add_arguments(parser)
    options.add_dist_timeout_argument(parser.add_argument_group("several processes (torchrun)"))
    return parser


def _stop_with_the_launcher() -> None:
    """Under torchrun each rank runs in a session of its own, so a signal to the launcher's process group does
    not reach it; the launcher passes SIGTERM/SIGINT/SIGHUP on but dies of SIGUSR1. Linux then sends the rank
    SIGTERM (``PR_SET_PDEATHSIG``): it saves and stops instead of training on, orphaned."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the launcher died before the request
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    stage = _stage_parser(add_help=False).parse_known_args(argv)[0].stage
    args = options.parse(build_parser(stage), argv)
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    _stop_with_the_launcher()
    done = False
    try:
        importlib.import_module(STAGES[stage]).run(args)
        done = True
    except OSError as e:  # a file-system fault while training (disk full, folder removed): one line, the path
        if e.filename is None:
            raise
        raise UserError(f"{e.filename}: {e.strerror or e}; free space or choose another folder") from None
    finally:  # a run that failed leaves no handler of its own behind, nor a process group
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        close_distributed(barrier=done)


def _cli() -> None:
    try:
        main(sys.argv[1:])
    except Interrupted as e:
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one line, from the process that saved
            print(f"stopped: {e}", file=sys.stderr)
        sys.exit(e.code)


if __name__ == "__main__":
    run_cli(_cli)
