"""`python -m harness COMMAND ...`: each command lives in its own module.

A command module defines `add_parser(subparsers)`, which adds its sub-parser and sets
`func` (called with the parsed args; returns the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that each add one or more commands, in the order `--help` lists them.
COMMAND_MODULES = ("harness.scenario.cli", "harness.sweep.cli", "harness.data.cli", "harness.report.cli",
                   "harness.animate.cli", "harness.recompress")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
