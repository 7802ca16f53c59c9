"""Training steps/s at the Flannel-1 shape, recording off vs every-step W, per device.

    nox -s benchmarks -- -k train

The ratio "with recording / without" is the recording overhead (goal: >= 0.95).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import available_devices
from core.data import DataConfig
from core.device import synchronize
from core.model import ModelConfig
from core.recorder import RecordConfig, TrajectoryWriter
from core.run import frame_tensors
from core.train import Training, TrainConfig

STEPS_PER_ROUND = {"cpu": 1, "cuda": 50, "mps": 10}
_steps_per_s: dict[tuple, float] = {}


def flannel_training(device: str, tied: bool) -> Training:
    ids = torch.tensor(np.random.default_rng(0).integers(0, 6300, size=400_000))
    return Training(ids, ModelConfig(tied=tied), data_cfg=DataConfig(), train_cfg=TrainConfig(steps=10**6, device=device))


@pytest.mark.parametrize("recording", ["off", "W-every-step"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("device", available_devices())
def test_train_steps_per_second(benchmark, bench_dir, device, tied, recording):
    training = flannel_training(device, tied)
    writer = None
    if recording != "off":
        writer = TrajectoryWriter(bench_dir / f"bench-{device}-{tied}.h5", vocab_size=10_000, dim=64, tied=tied,
                                  config=RecordConfig(tensors=["W"]), device=training.device, overwrite=True)
    n = STEPS_PER_ROUND[training.device.type]

    def run_steps():
        for _ in range(n):
            result = training.step()
            if writer is not None:
                writer.append(result.step, frame_tensors(training, writer.names, result), loss=result.loss)
        synchronize(training.device)

    benchmark.group = f"train-step-{device}-{'tied' if tied else 'untied'}"
    benchmark.pedantic(run_steps, rounds=3, warmup_rounds=1, iterations=1)
    if writer is not None:
        writer.close()
    steps_per_s = n / benchmark.stats.stats.mean
    _steps_per_s[(device, tied, recording)] = steps_per_s
    benchmark.extra_info.update(device=device, tied=tied, recording=recording, batch=32, seq_len=128,
                                vocab=10_000, dim=64, dtype="bfloat16", steps_per_round=n,
                                steps_per_s=round(steps_per_s, 3), threads=torch.get_num_threads())
    off = _steps_per_s.get((device, tied, "off"))
    if recording != "off" and off:
        benchmark.extra_info["ratio_to_no_recording"] = round(steps_per_s / off, 3)
        print(f"\n{device} tied={tied}: {off:.3f} steps/s without recording, {steps_per_s:.3f} with W every step "
              f"(ratio {steps_per_s / off:.3f})")
    assert training.steps_done == 4 * n
