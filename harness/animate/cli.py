"""`harness animate RUN.h5 [--out FILE.gif|.mp4] [...]`: the `animate` command's handler (its
arguments: harness.animate.cli_parser). The movie itself is harness.animate.movie."""

from __future__ import annotations

import argparse

from harness.animate.movie import MovieConfig, animate


def cmd_animate(args: argparse.Namespace) -> int:
    config = MovieConfig(stride=args.stride, tensor=args.tensor, projection=args.projection, fps=args.fps)
    movie = animate(args.run, args.out, config, progress=not args.quiet)
    print(f"movie: {movie.path}  ({len(movie.frames)} frames; {movie.projection.description})")
    return 0
