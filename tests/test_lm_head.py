"""The opt-in float32 GEMMs, and the difference each is allowed against the default step.

The default step is the Trainer's (tests/test_parity_trainer.py proves it bit for bit).
`logits_matmul = "fp32"` (core/lm_head.py) changes only the order of float32 additions
inside the head's three GEMMs; `matmul = "fp32"` (core/gemm.py) does the same for
every GEMM of the step. Neither is bit-identical; these tests state how far each may drift.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data import DataConfig
from core.fast import KernelConfig, choose_kernels
from core.fast.gemm import gemm_mode
from core.fast.lm_head import lm_logits
from core.fast.loss import causal_lm_loss
from core.model import InitConfig, ModelConfig, build_model
from core.optim import OptimConfig
from core.train import Training, TrainConfig


def bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    """The spacing of bf16 numbers at |x| (8 significant bits)."""
    exponent = torch.floor(torch.log2(x.abs().float().clamp_min(2.0**-126)))
    return torch.exp2(exponent - 7)


@pytest.fixture(scope="module")
def flannel_batch() -> torch.Tensor:
    """4 windows of 128 tokens over the first 6,300 ids, at the Flannel model's shape."""
    return torch.tensor(np.random.default_rng(0).integers(0, 6300, size=(4, 128)))


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_fp32_logits_are_within_one_ulp_of_the_default_and_rarely_differ(flannel_batch, tied):
    model = build_model(ModelConfig(tied=tied), InitConfig())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        default = lm_logits(model, flannel_batch, "bf16")
        fast = lm_logits(model, flannel_batch, "fp32")
    assert fast.dtype == default.dtype == torch.bfloat16 and fast.shape == default.shape == (4, 128, 10_000)
    differs = fast != default
    apart = (fast.float() - default.float()).abs()
    one_ulp = torch.maximum(bf16_ulp(default), bf16_ulp(fast))
    # One ULP, except where the 64-term sum cancels to ~0 and float32's own rounding
    # (~64 * 2^-24 * sum |h_i w_i|) is larger than a bf16 ULP of the tiny result.
    assert (apart <= one_ulp).logical_or(apart <= 1e-6).all(), "more than one bf16 ULP apart"
    assert differs.float().mean() < 1e-3, f"{differs.float().mean():.2e} of logits differ"


# The opt-in fast paths, as TrainConfig fields over the default {"logits_matmul": "bf16", "matmul": "bf16"}.
FAST_PATHS = {"fp32-head": {"logits_matmul": "fp32"}, "fp32-gemms": {"matmul": "fp32"}}
# Share of W's elements bit-equal to the default after one step from the same state. Measured
# 0.99986 (head) and 0.99176 (every GEMM: the hidden states, hence every grad_W element, move
# by ULPs, and Adam's first step ~ lr * g / |g| lands on the other side of a bf16 boundary).
FIRST_STEP_SAME = {"fp32-head": 0.999, "fp32-gemms": 0.98}


@pytest.mark.parametrize("fast", FAST_PATHS)
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_fp32_gradients_agree_with_the_default_for_every_parameter(flannel_batch, tied, fast):
    grads = {}
    for mode, knobs in (("default", {}), ("fast", FAST_PATHS[fast])):
        model = build_model(ModelConfig(tied=tied), InitConfig())
        with gemm_mode(knobs.get("matmul", "bf16"), flannel_batch.device):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = lm_logits(model, flannel_batch, knobs.get("logits_matmul", "bf16"))
                loss = causal_lm_loss(logits, flannel_batch.roll(-1, dims=1))
            loss.backward()
        grads[mode] = {name: p.grad.float() for name, p in model.named_parameters()}
    assert grads["default"].keys() == grads["fast"].keys()
    assert ("lm_head.weight" in grads["fast"]) != tied
    for name, g in grads["default"].items():
        f = grads["fast"][name]
        assert g.abs().sum() > 0, name
        cosine = torch.nn.functional.cosine_similarity(g.flatten(), f.flatten(), dim=0)
        assert cosine > 0.9999, f"{name}: cosine {cosine:.6f}"
        assert abs(f.norm() / g.norm() - 1) < 5e-3, name  # measured: <= 1.2e-3 (a LayerNorm gain)


def training(**knobs) -> Training:
    ids = torch.tensor(np.random.default_rng(1).integers(0, 6300, size=50_000))
    return Training(ids, ModelConfig(), InitConfig(), DataConfig(batch_size=4), OptimConfig(),
                    TrainConfig(steps=100, device="cpu"), choose_kernels(KernelConfig(**knobs), "cpu"))


@pytest.mark.parametrize("fast", FAST_PATHS)
def test_fp32_training_tracks_the_default_loss_and_stays_within_adams_step_bound(fast):
    first_step_same = FIRST_STEP_SAME[fast]
    default, fast = training(), training(**FAST_PATHS[fast])
    lr = default.optim_cfg.lr
    for k in range(1, 5):
        a, b = default.step(), fast.step()
        assert abs(a.loss.item() - b.loss.item()) < 1e-4 * a.loss.item(), f"step {k}"
        diff = (default.tensor("W").float() - fast.tensor("W").float()).abs()
        if k == 1:  # from one state, one step: almost every element rounds the same way
            assert (diff == 0).float().mean() > first_step_same
        assert diff.max() <= 2 * k * lr, f"step {k}: W differs by {diff.max():.2e}"
    assert not torch.equal(default.tensor("W"), fast.tensor("W")), "the fast path is not bit-identical: say so"


def test_fp32_gemms_make_the_head_choice_irrelevant():
    """Under matmul = "fp32" the head's GEMMs are the float32 ones whatever logits_matmul says."""
    runs = [training(matmul="fp32", logits_matmul=head) for head in ("bf16", "fp32")]
    for _ in range(2):
        losses = [run.step().loss.item() for run in runs]
        assert losses[0] == losses[1]
    assert torch.equal(runs[0].tensor("W"), runs[1].tensor("W"))
    head_only = training(logits_matmul="fp32")
    for _ in range(2):
        head_only.step()
    assert not torch.equal(head_only.tensor("W"), runs[0].tensor("W")), "the blocks' GEMMs changed nothing"
