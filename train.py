"""Training entry point for both systems.

    python train.py --stage scl       ...   # SCL-LLE: DCE-Net with contrastive/semantic/VGG losses (Cityscapes)
    python train.py --stage enhancer  ...   # EMNet stage 1: supervised enhancer on paired LOL data
    python train.py --stage memory    ...   # EMNet stage 2: external memory on a frozen enhancer

``python train.py --stage X --help`` lists that stage's flags (the reference flag names). Launch with
``torchrun --nproc_per_node N train.py ...`` for multi-GPU data-parallel training.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from utils.errors import run_cli

# stage name -> module with add_arguments(parser) and run(args); imported only when chosen.
STAGES = {"scl": "stages.scl", "enhancer": "stages.enhancer", "memory": "stages.memory"}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, the module docstring kept as written."""


def build_parser(stage: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--stage", choices=sorted(STAGES), default="scl", help="what to train")
    importlib.import_module(STAGES[stage]).add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--stage", choices=sorted(STAGES), default="scl")
    stage = pre.parse_known_args(argv)[0].stage
    args = build_parser(stage).parse_args(argv)
    importlib.import_module(STAGES[stage]).run(args)


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
