"""`harness report RUN.h5|SWEEP_DIR [...] [--out DIR]`: the `report` command's handler (its
arguments: harness.report.cli_parser).

Writes each file's report with harness.report.write.write_report: figures, report.json and
report.md in DIR, by default `<run folder>/<run name>_report/`. A sweep folder (OUT/<sweep>/,
with its index.json) gets the cross-run report of harness.report.cross instead: each quantity
across runs, by default in `SWEEP_DIR/cross_report/`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
