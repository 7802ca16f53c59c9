"""`python -m harness report RUN.h5 [RUN.h5 ...] [--out DIR]`: the `report` command.

Writes each file's report with harness.report.write.write_report: figures, report.json and
report.md in DIR, by default `<run folder>/<run name>_report/`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.report.analysis import DEFAULT_CHUNK
from harness.report.write import write_report


def cmd_report(args: argparse.Namespace) -> int:
    for run in args.runs:
        out = args.out if len(args.runs) == 1 or args.out is None else Path(args.out) / Path(run).stem
        written = write_report(run, out, chunk=args.chunk, progress=not args.quiet)
        print(f"report: {written['report.md']}  ({len(written) - 2} figures)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="figures and summaries of dead-token dynamics from trajectory files")
    report.add_argument("runs", nargs="+", help="trajectory files (.h5)")
    report.add_argument("--out", default=None, help="output folder (default: <run folder>/<name>_report/)")
    report.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="frames held in memory at once")
    report.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    report.set_defaults(func=cmd_report)
