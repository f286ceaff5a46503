"""`openjmp` command line: one subcommand per module in this package.

Each subcommand module defines ``add_parser(subparsers)`` (registers its arguments and sets
``func``) and is listed once in ``SUBCOMMANDS``; modules are imported only when needed so that
``openjmp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from openjmp._version import __version__
from openjmp.errors import OpenJMPError

# subcommand name -> module under openjmp.cli that implements it
SUBCOMMANDS: dict[str, str] = {
    "demo": "demo",
    "data": "data",
    "pretrain": "pretrain",
    "finetune": "finetune",
    "evaluate": "evaluate",
    "predict": "predict",
    "validate": "validate",
    "fit-scales": "fit_scales",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openjmp",
        description="Joint Multi-domain Pre-training (JMP) of GemNet-OC for atomic property prediction.",
    )
    parser.add_argument("--version", action="version", version=f"openjmp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in dict.fromkeys(SUBCOMMANDS.values()):
        importlib.import_module(f"openjmp.cli.{module}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except OpenJMPError as exc:
        print(f"openjmp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
