"""`python -m harness.dynamics RUN.h5 [RUN.h5 ...] [--tensor W] [--out FILE.json]`: the six
dynamics definitions of each run as JSON (harness.dynamics.dynamics_summary), on stdout or
into one file ({path: summary})."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from core.h5read import TrajectoryFileError
from harness.dynamics.summary import dynamics_summary

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.dynamics", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="trajectory files (.h5)")
    p.add_argument("--tensor", default="W", help="the recorded matrix to read (default W)")
    p.add_argument("--out", default=None, help="write {path: summary} as JSON here instead of stdout")
    args = p.parse_args(argv)
    try:
        out = {run: dynamics_summary(run, args.tensor) for run in args.runs}
    except (OSError, KeyError, ValueError, TrajectoryFileError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
