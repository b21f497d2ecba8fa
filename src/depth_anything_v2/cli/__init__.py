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
COMMANDS: tuple[str, ...] = ("predict", "eval", "convert", "export", "models", "app", "train", "pseudo_label", "oak")

#: Exit codes, the same for every command (README, "Exit codes").
EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_MODEL_UNAVAILABLE = 0, 1, 2, 3


class CommandError(Exception):
    """An error the user can act on: printed as ``depth-anything CMD: error: MESSAGE``, no traceback."""

    exit_code = EXIT_FAILURES


class UsageError(CommandError):
    """A command-line mistake (bad option, missing input, unreadable checkpoint): exit code 2."""

    exit_code = EXIT_USAGE


class ModelUnavailable(CommandError):
    """A published model that is neither cached nor downloadable now: exit code 3."""

    exit_code = EXIT_MODEL_UNAVAILABLE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-anything",
        description="Depth Anything V2: monocular depth estimation (inference, conversion, evaluation, training).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    parser.command_parsers = sub.choices  # type: ignore[attr-defined]  # for main's usage errors
    return parser


def _version() -> str:
    """The installed distribution's version (what pip shows), else the package's own."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("depth-anything-v2")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would blame the top-level parser and print its usage; the sub-command's is the useful one
        parser.command_parsers[args.command].error(  # type: ignore[attr-defined]
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        print(f"depth-anything {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
