"""The `sweep` command's handler: run a sweep file, print a summary table and the cross-run verdicts.

Its arguments: harness.sweep.cli_parser."""

from __future__ import annotations

import argparse
import logging
import sys

from harness.resume import ignore_stop_signals_at_exit
from harness.sweep.report import cross_table, summary_table
from harness.sweep.run import SweepInterrupted, load_sweep, run_sweep
from harness.sweep.spec import Sweep

log = logging.getLogger(__name__)


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers {args.workers}: must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads}: must be >= 1")
    sweep = load_sweep(args.file, size=args.size)  # a SweepError (bad input): exit code 2, before anything runs
    if args.dry_run:
        print(dry_run_table(sweep))
        return 0
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


def dry_run_table(sweep: Sweep) -> str:
    """What `harness sweep FILE` would run and check: one line per run, one per cross-run expectation."""
    lines = [f"sweep {sweep.name} ({sweep.path}): {len(sweep.runs)} runs, {len(sweep.expect_all)} cross-run "
             "expectations; nothing ran (--dry-run)"]
    for run in sweep.runs:
        lines.append(f"  run  {run.id}: {run.scenario.train.steps} steps, {run.scenario.name}")
    for e in sweep.expect_all:
        args = ", ".join(f"{k}={v!r}" for k, v in e.args.items())
        lines.append(f"  expect_all {e.id}: {e.check}({args}), min_fraction {e.min_fraction:g}"
                     + (" (exploratory)" if e.exploratory else ""))
    return "\n".join(lines)
