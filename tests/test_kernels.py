"""The seam between the reference step and core/fast: the chosen fast kernels record the
reference kernels' trajectory bit for bit, and choosing is the only thing with side effects."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from core.data import DataConfig
from core.fast import KernelConfig, choose_kernels, onednn
from core.fast.gemm import RowSplitGemms
from core.fast.loss import BlockwiseCrossEntropy
from core.format import RECORDABLE
from core.model import ModelConfig
from core.optim import OptimConfig
from core.recorder import RecordConfig, TrajectoryWriter
from core.run import train_and_record
from core.step import REFERENCE, StepKernels
from core.train import Training, TrainConfig

STEPS = 20


def record(path, ids, tied: bool, kernels: StepKernels) -> None:
    """20 Flannel-shape steps (vocab 10,000, dim 64, 2 layers, 2 heads, seq 128), batch 8, every
    recordable dataset every step. The corpus holds 150 windows: step 19 is an epoch's short
    last batch (6 windows). max_grad_norm 0.5: clipping acts."""
    training = Training(ids, ModelConfig(tied=tied), data_cfg=DataConfig(batch_size=8),
                        optim_cfg=OptimConfig(max_grad_norm=0.5, weight_decay=0.1),
                        train_cfg=TrainConfig(steps=STEPS, device="cpu"), kernels=kernels)
    assert training.batches.order.batches_per_epoch == 19
    with TrajectoryWriter(path, vocab_size=10_000, dim=64, tied=tied, config=RecordConfig(tensors=list(RECORDABLE)),
                          metadata={"kernels": kernels.describe()}) as writer:
        train_and_record(training, writer)


def datasets(path) -> dict[str, bytes]:
    """Every recorded dataset's bytes (tied runs: E names link to W datasets)."""
    with h5py.File(path, "r") as f:
        assert f.attrs["frames_complete"] == STEPS + 1
        return {name: f[name][()].tobytes() for name in RECORDABLE}


@pytest.mark.slow
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_fast_kernels_record_the_reference_trajectory_bit_for_bit(tmp_path, tied):
    ids = np.random.default_rng(5).integers(0, 7_000, size=150 + 128)  # ids >= 7,000 are dead
    fast = choose_kernels(device="cpu")
    assert fast is not REFERENCE and fast.describe()["loss"] == "blockwise"
    blockwise, native, splits = (BlockwiseCrossEntropy.total_calls, RowSplitGemms.total_native,
                                 RowSplitGemms.total_splits)
    record(tmp_path / "fast.h5", ids, tied, fast)
    assert BlockwiseCrossEntropy.total_calls == blockwise + STEPS, "the fast step did not run the blockwise loss"
    if not onednn.bf16_gemms_on_onednn() and torch.get_num_threads() > 1:
        assert (RowSplitGemms.total_native, RowSplitGemms.total_splits) != (native, splits), \
            "on torch's fallback kernels the fast step must run its own GEMM path"
    blockwise = BlockwiseCrossEntropy.total_calls
    record(tmp_path / "reference.h5", ids, tied, REFERENCE)
    assert BlockwiseCrossEntropy.total_calls == blockwise, "the reference step ran a fast kernel"

    fast_data, reference_data = datasets(tmp_path / "fast.h5"), datasets(tmp_path / "reference.h5")
    differ = [name for name in fast_data if fast_data[name] != reference_data[name]]
    assert not differ, f"the fast kernels' trajectory differs from the reference's in {differ}"
    with h5py.File(tmp_path / "fast.h5", "r") as f:
        grad_norm = f["grad_norm"][1:]
        assert (grad_norm > 0.5).all(), "clipping must act in every step for this test to cover it"
        assert not np.array_equal(f["W"][0], f["W"][-1]), "W never moved: the comparison would prove nothing"


def test_the_reference_kernels_are_the_default_and_say_so():
    ids = np.arange(300) % 50
    training = Training(ids, ModelConfig(vocab_size=64), data_cfg=DataConfig(seq_len=16, batch_size=2),
                        train_cfg=TrainConfig(steps=2, device="cpu"))
    assert training.kernels is REFERENCE and REFERENCE.describe() == {"kernels": "reference"}
    calls = BlockwiseCrossEntropy.total_calls
    training.step()
    assert BlockwiseCrossEntropy.total_calls == calls


def test_kernels_reference_refuses_a_fast_knob():
    assert choose_kernels(KernelConfig(kernels="reference"), "cpu") is REFERENCE
    with pytest.raises(ValueError, match=r"train.matmul = 'fp32' needs train.kernels = 'auto'"):
        choose_kernels(KernelConfig(kernels="reference", matmul="fp32"), "cpu")
    with pytest.raises(ValueError, match=r"Unknown train.kernels 'turbo'. Available: auto, reference"):
        choose_kernels(KernelConfig(kernels="turbo"), "cpu")


def test_describe_names_what_runs():
    described = choose_kernels(KernelConfig(matmul="fp32"), "cpu").describe()
    assert described["kernels"] == "fast" and described["gemms"] == "fp32" and described["matmul"] == "fp32"
    gemms = choose_kernels(device="cpu").describe()["gemms"]
    assert gemms == "onednn" if onednn.bf16_gemms_on_onednn() else gemms in ("native", "row-split", "torch")
