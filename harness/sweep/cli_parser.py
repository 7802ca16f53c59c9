"""The `sweep` command's arguments, help and example (argparse only: see harness.cli)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a sweep file: many seeded runs of one scenario, cross-run expectations",
                       epilog="example: harness sweep sweeps/flannel_2_seeds.toml --out runs --workers 2")
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no INFO lines on the console")
    p.add_argument("--dry-run", action="store_true",
                   help="load and check the sweep file (every run's scenario, every [[expect_all]]), list its runs "
                        "and expectations, and run nothing")
    p.set_defaults(handler="harness.sweep.cli:cmd_sweep")
