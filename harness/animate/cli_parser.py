"""The `animate` command's arguments, help and example (argparse only: see harness.cli)."""

from __future__ import annotations

import argparse

PROJECTIONS = ("frame0", "all")  # harness.animate.projection (tests/test_console.py checks they agree)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("animate", help="a movie of the dead and live token clouds of a trajectory file",
                       description="A movie of the dead and live token clouds in a fixed 2-D projection, "
                                   "streamed one frame at a time.",
                       epilog="example: harness animate runs/flannel_1.h5 --stride 10  (writes runs/flannel_1.gif)")
    p.add_argument("run", help="trajectory file (.h5)")
    p.add_argument("--out", default=None, help="movie file, .gif or .mp4 (default: beside the run, <name>.gif); "
                                               ".mp4 needs the `animate` extra (imageio-ffmpeg)")
    p.add_argument("--stride", type=int, default=1, help="one movie frame per N recorded frames (default 1); "
                                                         "the last frame is always shown")
    p.add_argument("--tensor", default="W", choices=("W", "E"), help="the matrix drawn (default W)")
    p.add_argument("--projection", default="frame0", choices=PROJECTIONS,
                   help="2-D projection: PCA of frame 0 (default) or of every frame shown")
    p.add_argument("--fps", type=float, default=10.0, help="movie frames per second (default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler="harness.animate.cli:cmd_animate")
