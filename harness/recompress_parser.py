"""The `compress` command's arguments, help and example (argparse only: see harness.cli)."""

from __future__ import annotations

import argparse

COMPRESSIONS = ("none", "zstd", "delta-zstd")  # core.encoding.COMPRESSIONS (tests/test_console.py checks they agree)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="rewrite a trajectory with another lossless encoding (bits checked)",
                       epilog="example: harness compress runs/flannel_2.h5  (writes runs/flannel_2.delta-zstd.h5)")
    p.add_argument("run", help="trajectory file (.h5)")
    p.add_argument("--compression", choices=COMPRESSIONS, default="delta-zstd")
    p.add_argument("--keyframe-every", type=int, default=64, help="delta-zstd: every Nth frame stored whole")
    p.add_argument("--out", default=None, help="output file (default: RUN.<compression>.h5 beside RUN)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no INFO lines on the console")
    p.set_defaults(handler="harness.recompress:cmd_compress")
