"""`python -m harness report RUN.h5|SWEEP_DIR [...] [--out DIR]`: the `report` command.

Writes each file's report with harness.report.write.write_report: figures, report.json and
report.md in DIR, by default `<run folder>/<run name>_report/`. A sweep folder (OUT/<sweep>/,
with its index.json) gets the cross-run report of harness.report.cross instead: each quantity
across runs, by default in `SWEEP_DIR/cross_report/`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.report.analysis import DEFAULT_CHUNK
from harness.report.cross import write_cross_report
from harness.report.write import write_report


def cmd_report(args: argparse.Namespace) -> int:
    for run in args.runs:
        out = args.out if len(args.runs) == 1 or args.out is None else Path(args.out) / Path(run).stem
        if Path(run).is_dir():
            kind, written = "cross-run report", write_cross_report(run, out)
        else:
            kind, written = "report", write_report(run, out, chunk=args.chunk, progress=not args.quiet)
        print(f"{kind}: {written['report.md']}  ({len(written) - 2} figures)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="figures and summaries of dead-token dynamics from trajectory files")
    report.add_argument("runs", nargs="+", help="trajectory files (.h5), or sweep folders (OUT/<sweep>/) for a "
                                               "cross-run report")
    report.add_argument("--out", default=None, help="output folder (default: <run folder>/<name>_report/; "
                                                      "for a sweep folder SWEEP_DIR/cross_report/)")
    report.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="frames held in memory at once")
    report.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    report.set_defaults(func=cmd_report)
