"""train.cuda_graph: the step's forward and backward replayed as a CUDA graph (core/step_graph.py).

On any machine: the captured part (core.step.forward_backward) asks nothing of the host,
which is what makes it capturable; the option is ignored, with a warning, off CUDA.
On a CUDA machine: a replayed run is bit-identical to the eager run, a short batch falls
back to an eager step without losing the graph's gradients.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core.data import DataConfig
from core.fast import LOSS_ENV, KernelConfig, choose_kernels
from core.fast.kernels import CudaGraphKernels
from core.format import PARAM_TENSORS
from core.model import InitConfig, ModelConfig
from core.optim import OptimConfig
from core.step import forward_backward
from core.train import Training, TrainConfig

aten = torch.ops.aten
# Ops that read device values on the host (a CUDA sync, illegal while capturing) or whose
# output shape depends on values.
HOST_READS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
              aten.is_nonzero.default, aten.equal.default, aten.unique_consecutive.default,
              aten._unique2.default, aten.repeat_interleave.Tensor}


class HostReads(TorchDispatchMode):
    """Records every op that would make the host wait for the device."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        boolean_index = func is aten.index.Tensor and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])
        if func in HOST_READS or boolean_index:
            self.seen.append(str(func))
        return func(*args, **kwargs)


def test_host_reads_detector_sees_item_and_boolean_masks():
    with HostReads() as reads:
        x = torch.arange(6.0)
        x.sum().item()
        x[x > 2].sum()
        torch.nonzero(x)
    assert len(reads.seen) == 3, reads.seen


def training(ids, tied: bool, device: str = "cpu", steps: int = 6, batch_size: int = 8, **train) -> Training:
    return Training(ids, ModelConfig(vocab_size=1000, tied=tied), InitConfig(),
                    DataConfig(seq_len=64, batch_size=batch_size), OptimConfig(weight_decay=0.1),
                    TrainConfig(steps=steps, device=device), choose_kernels(KernelConfig(**train), device))


@pytest.mark.parametrize("numerics", [{}, {"logits_matmul": "fp32"}, {"matmul": "fp32"}], ids=["bf16", "fp32-head", "fp32-gemms"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_forward_backward_asks_nothing_of_the_host(random_ids, tied, numerics, monkeypatch):
    """With the loss a GPU runs (the reference expression; the blockwise loss is CPU-only)."""
    monkeypatch.setenv(LOSS_ENV, "reference")
    t = training(random_ids, tied)
    inputs, targets = t.batches[0]
    with HostReads() as reads:
        out = forward_backward(t.model, inputs, targets, 1.0, choose_kernels(KernelConfig(**numerics), "cpu"),
                               capture_grads=("grad_E", "grad_W"), capture_logits=True, autocast_cache=False)
    assert reads.seen == [], f"the step reads device values on the host: {reads.seen}"
    assert out.loss.isfinite() and out.grad_norm > 0 and out.logits_row.shape == (1000,)


def test_the_cpu_blockwise_loss_reads_only_its_upstream_gradient(random_ids):
    """The CPU step's one host read: the blockwise backward's check for an unscaled loss."""
    t = training(random_ids, tied=True)
    inputs, targets = t.batches[0]
    with HostReads() as reads:
        forward_backward(t.model, inputs, targets, 1.0, t.kernels, autocast_cache=False)
    assert reads.seen == [str(aten._local_scalar_dense.default)], reads.seen


def test_cuda_graph_is_ignored_off_cuda_with_a_warning(random_ids, caplog):
    with caplog.at_level(logging.WARNING, logger="core.fast"):
        graphed = training(random_ids, tied=False, device="cpu", cuda_graph=True)
    assert "train.cuda_graph is ignored on cpu" in caplog.text
    eager = training(random_ids, tied=False, device="cpu")
    for _ in range(3):
        assert torch.equal(graphed.step().loss, eager.step().loss)
    assert not isinstance(graphed.kernels, CudaGraphKernels)
    assert torch.equal(graphed.tensor("W"), eager.tensor("W"))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def run_and_collect(t: Training, steps: int) -> list[dict[str, torch.Tensor]]:
    """Every tensor of every step, copied to the host."""
    frames = []
    for _ in range(steps):
        result = t.step(capture_grads=("grad_E", "grad_W"), capture_logits=True)
        frame = {name: t.tensor(name).cpu() for name in PARAM_TENSORS}
        frame.update(loss=result.loss.cpu(), grad_norm=result.grad_norm.cpu(), logits=result.logits_row.cpu())
        frames.append(frame)
    return frames


@needs_cuda
@pytest.mark.parametrize("numerics", [{}, {"matmul": "fp32"}], ids=["bf16", "fp32-gemms"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_replayed_steps_are_bit_identical_to_eager_steps(random_ids, tied, numerics):
    eager = run_and_collect(training(random_ids, tied, device="cuda", **numerics), 6)
    graphed_training = training(random_ids, tied, device="cuda", cuda_graph=True, **numerics)
    graphed = run_and_collect(graphed_training, 6)
    assert graphed_training.kernels.graph is not None
    for step, (a, b) in enumerate(zip(eager, graphed), start=1):
        for name in a:
            assert torch.equal(a[name], b[name]), f"step {step}: {name} differs"
    assert not torch.equal(graphed[0]["W"], graphed[-1]["W"])


@needs_cuda
def test_short_batch_runs_eagerly_between_replays(random_ids):
    ids = random_ids[: 64 + 19]  # 19 windows of 64 tokens: batches of 8, 8 and 3 per epoch
    eager = run_and_collect(training(ids, tied=False, device="cuda", steps=7), 7)
    graphed_training = training(ids, tied=False, device="cuda", steps=7, cuda_graph=True)
    assert [graphed_training.batches[s][0].shape[0] for s in range(7)] == [8, 8, 3, 8, 8, 3, 8]
    graphed = run_and_collect(graphed_training, 7)
    for step, (a, b) in enumerate(zip(eager, graphed), start=1):
        for name in a:
            assert torch.equal(a[name], b[name]), f"step {step}: {name} differs"
