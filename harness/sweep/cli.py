"""CLI command `sweep`: run a sweep file, print a summary table and the cross-run verdicts."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.sweep.run import load_sweep, run_sweep  # heavy: only this command needs it
    from harness.sweep.report import cross_table, summary_table  # heavy: only this command needs it

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers {args.workers}: must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads}: must be >= 1")
    sweep = load_sweep(args.file, size=args.size)  # a SweepError (bad input) is exit code 2, raised before anything runs
    result = run_sweep(sweep, args.out, workers=args.workers, ray=args.ray, threads=args.threads,
                       device=args.device, progress=not args.quiet)
    print(summary_table(result.index, [r.id for r in sweep.runs]))
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a sweep file: many seeded runs of one scenario, cross-run expectations")
    p.add_argument("file", help="sweep file (TOML): scenario, [axes], [[expect_all]]")
    p.add_argument("--size", default=None, metavar="NAME",
                   help="apply the sweep file's [sizes.NAME] table: fewer or shorter runs (e.g. smoke)")
    p.add_argument("--out", default="runs", help="output folder: writes OUT/<sweep>/<run id>.h5 and index.json")
    p.add_argument("--workers", type=int, default=None,
                   help="runs at a time (default: half the CPU cores locally, the cluster's CPUs on Ray)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per run (default: the sweep file's threads, 1); on a CPU the count "
                        "changes a run's bits")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster at ADDRESS ('auto', 'ray://host:10001'), or 'local' to start one")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N, mps (default: the scenario's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
