"""The `sweep` command's handler: run a sweep file, print a summary table and the cross-run verdicts.

Its arguments: harness.sweep.cli_parser."""

from __future__ import annotations

import argparse
import logging
import sys

from harness.resume import ignore_stop_signals_at_exit
from harness.sweep.report import cross_table, summary_table
from harness.sweep.run import SweepInterrupted, load_sweep, run_sweep

log = logging.getLogger(__name__)


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers {args.workers}: must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads}: must be >= 1")
    sweep = load_sweep(args.file, size=args.size)  # a SweepError (bad input): exit code 2, before anything runs
    try:
        result = run_sweep(sweep, args.out, workers=args.workers, ray=args.ray, threads=args.threads,
                           device=args.device, progress=not args.quiet)
    except SweepInterrupted as stop:
        ignore_stop_signals_at_exit()  # one more while the interpreter shuts down: ignored
        print(f"interrupted: {stop}.", file=sys.stderr)
        return stop.exit_code
    print(summary_table(result.index, [r.id for r in sweep.runs], sweep.expect_all))
    if result.cross:
        print()
        print(cross_table(result.cross))
    print()
    print(f"sweep {sweep.name}: {len(sweep.runs)} runs ({len(result.ran)} ran, {len(result.skipped)} already done) "
          f"-> {result.folder}" + (f"; plot {result.plot}" if result.plot else ""))
    for run_id in result.failed_runs:
        print(f"run failed: {run_id}")
    for failed in result.failed_own:
        print(f"run expectation failed (reported, not counted; see [[expect_all]]): {failed}")
    return 0 if result.ok else 1
