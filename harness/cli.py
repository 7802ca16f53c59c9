"""`harness COMMAND ...` (or `python -m harness COMMAND ...`): the command line.

Each command has two halves, so that `harness --help` and `harness COMMAND --help` import no
torch, transformers, h5py or matplotlib:
- its arguments, help and one example (argparse epilog) in a `cli_parser` module that imports
  only the standard library: `add_parser(subparsers)` adds the sub-parser and names the handler
  as a string, `set_defaults(handler="harness.report.cli:cmd_report")`;
- its handler, `cmd_NAME(args) -> exit code`, in the module that string names, which may import
  whatever the command needs. `main` imports it (importlib) only when the command runs.
This dispatch by name is the one deliberate lazy import of the CLI; tests/test_import_graph.py
counts the named handler modules as imports of the parser module (cycles and layers), and
checks that the parser modules reach nothing outside the standard library.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Callable

from harness import LOG_FORMAT, recompress_parser
from harness.animate import cli_parser as animate_parser
from harness.data import cli_parser as data_parser
from harness.report import cli_parser as report_parser
from harness.scenario import cli_parser as scenario_parser
from harness.sweep import cli_parser as sweep_parser

# Modules that each add one or more commands, in the order `--help` lists them.
COMMAND_PARSERS = (scenario_parser, sweep_parser, data_parser, report_parser, animate_parser, recompress_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Dead-token simulation harness: run scenarios, record their trajectories, check and report them.",
        epilog="example: harness run flannel_2 --scale smoke --out runs\n"
               "`harness COMMAND --help` shows a command's options and an example.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_PARSERS:
        module.add_parser(sub)
    return parser


def load_handler(name: str) -> Callable[[argparse.Namespace], int]:
    """The function a parser named, "package.module:function", imported now."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = logging.StreamHandler(sys.stderr)
    # -q: warnings and errors only on the console (a run's log file keeps its INFO lines)
    console.setLevel(logging.WARNING if getattr(args, "quiet", False) and not args.verbose else logging.NOTSET)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT,
                        handlers=[console])
    try:
        return int(load_handler(args.handler)(args) or 0)
    except KeyboardInterrupt:  # a Ctrl-C before a run has its own handler (e.g. during the imports)
        print("interrupted.", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
