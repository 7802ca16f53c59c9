"""The `report` command's arguments, help and example (argparse only: see harness.cli)."""

from __future__ import annotations

import argparse

DEFAULT_CHUNK = 16  # harness.checks.measures.DEFAULT_CHUNK (tests/test_console.py checks they agree)


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="figures and summaries of dead-token dynamics from trajectory files",
                            description="Figures, report.json and report.md of each trajectory file; for a sweep folder "
                                        "(OUT/<sweep>/), the cross-run report: each quantity across runs.",
                            epilog="example: harness report runs/flannel_2.h5  (writes runs/flannel_2_report/)\n"
                                   "         harness report runs/flannel_2_seeds  (writes runs/flannel_2_seeds/cross_report/)",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("runs", nargs="+", help="trajectory files (.h5), or sweep folders (OUT/<sweep>/) for a "
                                               "cross-run report")
    report.add_argument("--out", default=None, help="output folder (default: <run folder>/<name>_report/; "
                                                      "for a sweep folder SWEEP_DIR/cross_report/)")
    report.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                        help=f"frames held in memory at once (default {DEFAULT_CHUNK})")
    report.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no INFO lines on the console")
    report.set_defaults(handler="harness.report.cli:cmd_report")
