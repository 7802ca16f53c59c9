"""A recording run in its own process, for the crash tests (killed with SIGKILL / a full disk).

    python tests/record_child.py PATH STEPS [--fsize-limit BYTES]
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys

import numpy as np
import torch

from core.data import DataConfig
from core.model import ModelConfig
from core.recorder import RecordConfig, TrajectoryWriter
from core.run import train_and_record
from core.train import Training, TrainConfig

TENSORS = ["E", "W", "grad_W", "exp_avg_W", "loss"]


def make_training(steps: int) -> Training:
    ids = torch.tensor(np.random.default_rng(0).integers(0, 700, size=20_000))
    return Training(
        ids,
        ModelConfig(vocab_size=1000, tied=False),
        data_cfg=DataConfig(seq_len=32, batch_size=4),
        train_cfg=TrainConfig(steps=steps, device="cpu"),
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("steps", type=int)
    parser.add_argument("--fsize-limit", type=int, default=0, help="simulate a full disk past this file size")
    parser.add_argument("--reserve-mb", type=float, default=16.0)
    parser.add_argument("--compression", default="none")
    parser.add_argument("--expect-frames", type=int, default=None, help="the writer's expected_frames (reserves space)")
    args = parser.parse_args()
    if args.fsize_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))
    training = make_training(args.steps)
    config = RecordConfig(tensors=TENSORS, flush_every_frames=1, queue_frames=2, disk_reserve_mb=args.reserve_mb,
                          compression=args.compression, keyframe_every=4)
    try:
        writer = TrajectoryWriter(args.path, vocab_size=1000, dim=64, tied=False, config=config,
                                  expected_frames=args.expect_frames)
    except Exception as exc:  # a disk full before the first frame
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 3
    try:
        train_and_record(training, writer, on_step=lambda r: print(f"step {r.step}", flush=True))
    finally:
        try:
            writer.close()
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
