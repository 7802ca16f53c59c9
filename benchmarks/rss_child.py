"""Peak RSS of one recording run, in its own process: python rss_child.py PATH STEPS."""

from __future__ import annotations

import sys

import numpy as np
import torch

from conftest import peak_rss_kib
from core.data import DataConfig
from core.model import ModelConfig
from core.fast import choose_kernels
from core.format import PARAM_TENSORS
from core.recorder import RecordConfig, TrajectoryWriter
from core.run import train_and_record
from core.train import Training, TrainConfig


def main() -> None:
    path, steps = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    ids = torch.tensor(np.random.default_rng(0).integers(0, 1500, size=50_000))
    training = Training(
        ids,
        ModelConfig(vocab_size=2000, tied=False),
        data_cfg=DataConfig(seq_len=32, batch_size=4),
        train_cfg=TrainConfig(steps=steps, device="cpu"),
        kernels=choose_kernels(device="cpu"),
    )
    config = RecordConfig(tensors=list(PARAM_TENSORS) + ["logits"])
    with TrajectoryWriter(path, vocab_size=2000, dim=64, tied=False, config=config) as writer:
        train_and_record(training, writer)
    written = writer.bytes_written
    peak_kib = peak_rss_kib()
    print(f"{peak_kib} {written}")


if __name__ == "__main__":
    main()
