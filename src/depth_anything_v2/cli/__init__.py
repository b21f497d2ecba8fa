"""The ``depth-anything`` command.

Each sub-command lives in its own module under ``depth_anything_v2.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func=run`` where ``run(args) -> int`` returns the
exit code. Modules are imported here only, so ``import depth_anything_v2`` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ("predict", "eval", "convert", "export", "models", "app", "train", "pseudo_label")

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command-line mistake: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-anything",
        description="Depth Anything V2: monocular depth estimation (inference, conversion, evaluation, training).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"depth-anything {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
