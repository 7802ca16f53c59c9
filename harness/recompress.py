"""`harness compress RUN.h5`: rewrite a trajectory with another lossless encoding.

Every complete frame, scalar, token table and metadata attribute is copied; the bits of
every tensor are identical (checked after writing). Use it on trajectories recorded before
`record.compression` existed, or to decompress a file for a reader without hdf5plugin.
Its arguments: harness.recompress_parser.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from core.format import SCALARS, stored_tensors
from core.recorder import RecordConfig, TrajectoryWriter
from core.trajectory import Trajectory
from harness.progress import progress_bar

log = logging.getLogger(__name__)

# Attributes the writer sets itself: not copied from the source file.
WRITER_ATTRS = {"format_version", "frames_complete", "closed_cleanly", "record_every", "tied", "vocab_size", "dim",
                "tensors", "compression", "keyframe_every"}
CHUNK = 64  # frames held in memory at once


def recompress(src: Path, dst: Path, compression: str, keyframe_every: int = 64, progress: bool = True) -> int:
    """Write `src`'s complete frames to a new file `dst` with `compression`; returns frames copied."""
    with Trajectory(src) as traj:
        meta = traj.meta
        tensors = list(meta["tensors"])
        config = RecordConfig(tensors=tensors, every=int(meta["record_every"]), compression=compression,
                              keyframe_every=keyframe_every)
        names = stored_tensors(tensors, traj.tied)
        tokens = traj.token_tables()
        copied = {k: v for k, v in traj.file.attrs.items() if k not in WRITER_ATTRS}
        copied["recompressed_from"] = str(src)
        n = len(traj)
        with TrajectoryWriter(dst, vocab_size=int(meta["vocab_size"]), dim=int(meta["dim"]), tied=traj.tied,
                              config=config, metadata=copied, tokens=tokens, expected_frames=n) as writer, \
                progress_bar(total=n, desc=f"compress {src.name}", unit="frame", progress=progress) as bar:
            for start in range(0, n, CHUNK):
                blocks = {name: traj[name][start : start + CHUNK] for name in names}
                scalars = {name: traj[name][start : start + CHUNK] for name in SCALARS}
                for i in range(len(scalars["step"])):
                    writer.append(int(scalars["step"][i]), {name: blocks[name][i] for name in names},
                                  **{k: float(scalars[k][i]) for k in ("loss", "lr", "grad_norm")})
                bar.update(len(scalars["step"]))
    _verify(src, dst, names)
    return n


def _verify(src: Path, dst: Path, names: list[str]) -> None:
    """Every tensor and scalar of `dst` has the bits of `src`'s complete frames."""
    with Trajectory(src) as a, Trajectory(dst) as b:
        if len(a) != len(b):
            raise RuntimeError(f"{dst} has {len(b)} frames, {src} has {len(a)}")
        for name in names:
            for start, block in a.iter_frames(name, chunk=CHUNK):
                if not torch.equal(block.view(torch.int16), b[name][start : start + len(block)].view(torch.int16)):
                    raise RuntimeError(f"{dst}: {name} differs from {src} within frames {start}..{start + len(block) - 1}")
        for name in SCALARS:
            if not np.array_equal(a[name][:], b[name][:], equal_nan=True):
                raise RuntimeError(f"{dst}: {name} differs from {src}")


def cmd_compress(args: argparse.Namespace) -> int:
    src = Path(args.run)
    dst = Path(args.out) if args.out else src.with_name(f"{src.stem}.{args.compression}.h5")
    if dst.resolve() == src.resolve():
        raise ValueError(f"--out {dst} is the source file; write to another path")
    n = recompress(src, dst, args.compression, args.keyframe_every, progress=not args.quiet)
    before, after = src.stat().st_size, dst.stat().st_size
    print(f"{dst}: {n} frames, {args.compression}, {before / 1e9:.3f} GB -> {after / 1e9:.3f} GB "
          f"({before / after:.2f}x smaller), every bit checked against {src}")
    return 0
