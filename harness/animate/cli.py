"""`python -m harness animate RUN.h5 [--out FILE.gif|.mp4] [--stride N] [--tensor W|E] [--projection frame0|all]`.

The movie itself is harness.animate.movie; this module builds the parser only, with no heavy
import at module level, so `--help` stays fast. The one lazy import below is that deliberate
exception: matplotlib and torch load when the command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse


def cmd_animate(args: argparse.Namespace) -> int:
    from harness.animate.movie import MovieConfig, animate  # heavy (matplotlib, torch): only this command needs it

    config = MovieConfig(stride=args.stride, tensor=args.tensor, projection=args.projection, fps=args.fps)
    movie = animate(args.run, args.out, config, progress=not args.quiet)
    print(f"movie: {movie.path}  ({len(movie.frames)} frames; {movie.projection.description})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("animate", help="a movie of the dead and live token clouds of a trajectory file")
    p.add_argument("run", help="trajectory file (.h5)")
    p.add_argument("--out", default=None, help="movie file, .gif or .mp4 (default: beside the run, <name>.gif); "
                                               ".mp4 needs the `animate` extra (imageio-ffmpeg)")
    p.add_argument("--stride", type=int, default=1, help="one movie frame per N recorded frames (default 1); "
                                                         "the last frame is always shown")
    p.add_argument("--tensor", default="W", choices=("W", "E"), help="the matrix drawn (default W)")
    p.add_argument("--projection", default="frame0", choices=("frame0", "all"),
                   help="2-D projection: PCA of frame 0 (default) or of every frame shown")
    p.add_argument("--fps", type=float, default=10.0, help="movie frames per second (default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_animate)
