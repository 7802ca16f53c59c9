"""`harness report RUN.h5 [RUN.h5 ...] [--out DIR]`: the `report` command's handler (its arguments:
harness.report.cli_parser).

Writes each file's report with harness.report.write.write_report: figures, report.json and
report.md in DIR, by default `<run folder>/<run name>_report/`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.report.write import write_report


def cmd_report(args: argparse.Namespace) -> int:
    for run in args.runs:
        out = args.out if len(args.runs) == 1 or args.out is None else Path(args.out) / Path(run).stem
        written = write_report(run, out, chunk=args.chunk, progress=not args.quiet)
        print(f"report: {written['report.md']}  ({len(written) - 2} figures)")
    return 0
