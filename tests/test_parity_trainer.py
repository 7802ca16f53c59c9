"""Parity with the seeds' method: transformers' Trainer as notebook 1.20a ran it vs the core.

The Trainer side is written the way the notebooks wrote it (their TokenDataset, their
GPT2Config, their init cells, their compute_loss override, TrainingArguments with
bf16=True and optim="adamw_torch", Trainer defaults for clipping and schedule), with
the Trainer's own random sampler: nothing of the core is handed to it. The core side is
`core.train.Training` with the CPU's default kernels (`choose_kernels(device="cpu")`).

Compared after every one of the 6 steps, bit for bit through integer views (tests/bits.py:
bf16 as int16, float32 as int32, so +0.0 vs -0.0 and NaN payloads count as differences,
which torch.equal would miss or misreport), dtype and shape included:
- E and W (bf16, (V, D)): the state the dead-token analysis reads;
- the loss (() float32): the core's `StepResult.loss` vs the tensor the Trainer's
  compute_loss returned and backpropagated;
- the pre-clip global grad norm (() bf16, the parameters' dtype): `StepResult.grad_norm`
  vs what the Trainer's `_clip_grad_norm` returned.
The Trainer side's loss and grad norm are captured as tensors (tests/seed_trainer.py,
`RecordSteps`) and held to the values the Trainer itself logged every step (logging_steps=1).

The corpus is chosen so that the run covers what a single mid-epoch stretch would not:
- an epoch boundary with a short last batch: 71 windows of 32 make 3 batches an epoch
  (32, 32, 7), so the 6 steps are two whole epochs, each reshuffled by the sampler, each
  ending in a short batch (the loss's mean, the gradient's scale and the next epoch's order
  all differ there); both sides must agree on each step's batch size and epoch;
- clipping at the default max_grad_norm = 1.0: Zipf-distributed ids (as text is) give
  pre-clip grad norms above 1.0 at lr 1e-3 (measured 1.45 to 2.5), so the clip scales the
  gradients of the Flannel configs too; the Thimble-like config clips harder (0.05).
Ids below 700 only: the top 300 rows are dead, as Thai rows were in Flannel; a smaller vocab
than Flannel's keeps the test fast on a CPU without bf16 matrix units; every other setting
is notebook 1.20a's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")
from bits import assert_same_bits, bit_differences  # noqa: E402
from core.fast import choose_kernels, native, onednn  # noqa: E402
from core.data import DataConfig  # noqa: E402
from core.fast.gemm import RowSplitGemms  # noqa: E402
from core.fast.loss import BlockwiseCrossEntropy, rows_per_block  # noqa: E402
from core.model import InitConfig, ModelConfig, build_model  # noqa: E402
from core.optim import OptimConfig  # noqa: E402
from core.train import Training, TrainConfig  # noqa: E402
from seed_trainer import RecordSteps, SeedRun, TrainerStep, notebook_model, notebook_trainer  # noqa: E402

VOCAB = 1000
STEPS = 6
SEED = 42
SEQ_LEN = 128
BATCH = 32
N_WINDOWS = 2 * BATCH + 7  # 3 batches an epoch, the last of 7 windows: STEPS covers two epochs


# (tied, learning_rate, weight_decay, max_grad_norm): Flannel 1, Flannel 2 (both at the
# Trainer's default max_grad_norm, which the corpus's grad norms exceed), and a Thimble-like
# run (AdamW lr 3e-4, wd 0.1) whose small max_grad_norm makes clipping act on every step.
CONFIGS = {
    "flannel1-tied": (True, 1e-3, 0.0, 1.0),
    "flannel2-untied": (False, 1e-3, 0.0, 1.0),
    "thimble-decay-clipped": (True, 3e-4, 0.1, 0.05),
}


@dataclass
class CoreStep:
    """One step of the core, in the fields the Trainer's `TrainerStep` has."""

    E: torch.Tensor
    W: torch.Tensor
    loss: torch.Tensor
    grad_norm: torch.Tensor
    batch_size: int
    epoch: int


def seed_run(config: str) -> SeedRun:
    tied, lr, wd, max_grad_norm = CONFIGS[config]
    return SeedRun(vocab_size=VOCAB, tied=tied, steps=STEPS, lr=lr, weight_decay=wd, max_grad_norm=max_grad_norm,
                   batch_size=BATCH, seq_len=SEQ_LEN, seed=SEED, logging_steps=1)


def run_trainer(ids: torch.Tensor, config: str, tmp_path) -> list[TrainerStep]:
    recorder = RecordSteps()
    notebook_trainer(ids, seed_run(config), tmp_path / "trainer", recorder).train()
    recorder.check(STEPS, logged_every_step=True)
    return recorder.steps


def run_core(ids: torch.Tensor, config: str) -> list[CoreStep]:
    """The core's default step. On a CPU where torch runs bf16 GEMMs through oneDNN, torch's
    own calls; where it runs its fallback kernels, through core/fast/native's kernels (or,
    without them, split by rows over >= 2 torch threads: core.fast.gemm.RowSplitGemms). The
    loss blockwise over rows (core/fast/loss.py)."""
    tied, lr, wd, max_grad_norm = CONFIGS[config]
    splits_before, native_before = RowSplitGemms.total_splits, RowSplitGemms.total_native
    losses_before = BlockwiseCrossEntropy.total_calls
    training = Training(
        ids,
        ModelConfig(vocab_size=VOCAB, tied=tied),
        InitConfig(seed=SEED, std=0.02),
        DataConfig(seq_len=SEQ_LEN, batch_size=BATCH, target_offset=2, seed=SEED),
        OptimConfig(lr=lr, weight_decay=wd, max_grad_norm=max_grad_norm, schedule="linear"),
        TrainConfig(steps=STEPS, device="cpu"),
        choose_kernels(device="cpu"),
    )
    order = training.batches.order
    steps = []
    for k in range(STEPS):
        batch_size = training.batches[k][0].shape[0]  # the (B, T) inputs step k + 1 trains on
        result = training.step()
        steps.append(CoreStep(training.tensor("E").clone(), training.tensor("W").clone(), result.loss.clone(),
                              result.grad_norm.clone(), batch_size, k // order.batches_per_epoch))
    assert BlockwiseCrossEntropy.total_calls == losses_before + STEPS, "the CPU step must take the blockwise loss"
    assert rows_per_block(VOCAB) < (N_WINDOWS % BATCH) * SEQ_LEN, \
        "one block of rows, even in the short batch, would leave the blockwise loss half tested"
    if onednn.bf16_gemms_on_onednn():
        assert (RowSplitGemms.total_native, RowSplitGemms.total_splits) == (native_before, splits_before), \
            "with oneDNN the step must run torch's own GEMM calls"
    elif native.kernel() is not None:
        assert RowSplitGemms.total_native > native_before, "the step ran no GEMM natively: parity proves less"
    elif torch.get_num_threads() > 1:
        assert RowSplitGemms.total_splits > splits_before, "the default CPU step split no GEMM: parity proves less"
    return steps


def check_coverage(core: list[CoreStep], max_grad_norm: float) -> None:
    """The compared steps cross an epoch boundary after a short batch, and clipping acted."""
    sizes, epochs = [s.batch_size for s in core], [s.epoch for s in core]
    assert N_WINDOWS % BATCH != 0
    short_then_new_epoch = [k for k in range(STEPS - 1) if sizes[k] < BATCH and epochs[k + 1] == epochs[k] + 1]
    assert short_then_new_epoch, f"no short batch ends an epoch in the compared steps: sizes {sizes}, epochs {epochs}"
    assert sizes == [BATCH, BATCH, N_WINDOWS % BATCH] * 2 and epochs == [0, 0, 0, 1, 1, 1], (sizes, epochs)
    norms = [s.grad_norm.item() for s in core]
    assert any(n > max_grad_norm for n in norms), \
        f"clipping never acted (max_grad_norm {max_grad_norm}, pre-clip norms {norms}): the test would not test it"
    if max_grad_norm < 1.0:
        assert all(n > max_grad_norm for n in norms), f"clipping must act on every step for this config: {norms}"


@pytest.fixture(scope="module")
def corpus_ids() -> torch.Tensor:
    """N_WINDOWS + SEQ_LEN tokens, ids below 700 (ids 700..999 dead) drawn Zipf-like: p(rank r) ~ 1/r."""
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, 701)
    ranks = rng.choice(700, size=N_WINDOWS + SEQ_LEN, p=p / p.sum())
    return torch.tensor(rng.permutation(700)[ranks], dtype=torch.long)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_core_init_equals_notebook_init(tied):
    ours = build_model(ModelConfig(vocab_size=VOCAB, tied=tied), InitConfig(seed=SEED, std=0.02))
    theirs = notebook_model(SeedRun(vocab_size=VOCAB, tied=tied, seed=SEED))
    ours_params, theirs_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert ours_params.keys() == theirs_params.keys()
    for name, p in theirs_params.items():
        assert p.dtype == torch.bfloat16
        assert_same_bits(ours_params[name], p, name)


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_core_matches_trainer_bit_for_bit(corpus_ids, config, tmp_path):
    tied, max_grad_norm = CONFIGS[config][0], CONFIGS[config][3]
    theirs = run_trainer(corpus_ids, config, tmp_path)
    ours = run_core(corpus_ids, config)
    assert len(theirs) == len(ours) == STEPS
    check_coverage(ours, max_grad_norm)
    e0 = build_model(ModelConfig(vocab_size=VOCAB, tied=tied), InitConfig(seed=SEED)).transformer.wte.weight
    for step, (t, c) in enumerate(zip(theirs, ours), start=1):
        assert (t.batch_size, t.epoch) == (c.batch_size, c.epoch), f"step {step}: the batches differ in size or epoch"
        assert_same_bits(c.loss, t.loss, f"loss of step {step}")
        assert_same_bits(c.grad_norm, t.grad_norm, f"pre-clip grad norm of step {step}")
        assert_same_bits(c.E, t.E, f"E after step {step}")
        assert_same_bits(c.W, t.W, f"W after step {step}")
    assert ours[0].loss.dtype == torch.float32 and ours[0].grad_norm.dtype == torch.bfloat16
    assert bit_differences(ours[-1].W, e0) is not None, "W never moved: the comparison would prove nothing"


# The comparator itself: it must see a difference torch.equal cannot, and nothing where there is none.


def test_bits_pass_on_identical_tensors():
    w = build_model(ModelConfig(vocab_size=VOCAB, tied=False), InitConfig(seed=SEED)).lm_head.weight.detach()
    assert_same_bits(w, w.clone(), "W")
    assert_same_bits(torch.tensor(-0.0), torch.tensor(-0.0), "a float32 -0.0")
    nan = torch.tensor(float("nan"))
    assert not torch.equal(nan, nan.clone())  # torch.equal fails on identical bits: a NaN is not equal to itself
    assert_same_bits(nan, nan.clone(), "a float32 NaN")


def test_bits_fail_on_one_ulp_in_one_element_of_w():
    w = build_model(ModelConfig(vocab_size=VOCAB, tied=False), InitConfig(seed=SEED)).lm_head.weight.detach()
    nudged = w.clone()
    nudged.view(torch.int16)[17, 5] += 1  # one ULP away from zero: the next bf16 in magnitude
    x = w[17, 5]
    assert nudged[17, 5] == torch.nextafter(x, torch.copysign(torch.tensor(float("inf"), dtype=x.dtype), x))
    assert bit_differences(w, nudged) is not None
    with pytest.raises(AssertionError, match=r"W: 1 of 64000 elements differ in their bits, the first at \[17, 5\]"):
        assert_same_bits(w, nudged, "W")


def test_bits_fail_on_the_sign_of_a_zero():
    plus, minus = torch.tensor(0.0), torch.tensor(-0.0)  # float32 scalars, as the loss
    assert torch.equal(plus, minus)  # what the integer view is for
    with pytest.raises(AssertionError, match=r"loss: 1 of 1 elements differ .*: 0.0 \(0x00000000\) vs -0.0 \(0x8"):
        assert_same_bits(plus, minus, "loss")
    w = torch.zeros(4, 3, dtype=torch.bfloat16)
    flipped = w.clone()
    flipped[2, 1] = -0.0
    assert torch.equal(w, flipped)
    with pytest.raises(AssertionError, match=r"1 of 12 elements differ .* \[2, 1\]: 0.0 \(0x0000\) vs -0.0 \(0x8000\)"):
        assert_same_bits(w, flipped, "W")


def test_bits_fail_on_dtype_and_shape():
    w = torch.zeros(4, 3, dtype=torch.bfloat16)
    with pytest.raises(AssertionError, match="dtype"):
        assert_same_bits(w, w.float(), "W")
    with pytest.raises(AssertionError, match="shape"):
        assert_same_bits(w, w.reshape(3, 4), "W")
