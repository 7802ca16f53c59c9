"""The blockwise causal-LM loss gives the reference loss and gradient bit for bit (core/loss.py)."""

from __future__ import annotations

import pytest
import torch

from core.data import IGNORE_INDEX
from core.fast import LOSS_ENV, choose_kernels
from core.fast.loss import BlockwiseCrossEntropy, causal_lm_loss, rows_per_block
from core.step import causal_lm_loss as reference_causal_lm_loss


def logits_and_targets(n: int, vocab: int, spread: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, vocab) bf16 logits and (n,) targets, every 7th target ignored (as a window's last ones)."""
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, vocab, generator=gen) * spread).to(torch.bfloat16)
    # a third of every 5th row 70-100 below the rest: gradients that are bf16 subnormals or
    # underflow to zero, the regime of a dead token's softmax
    logits[::5, : vocab // 3] -= torch.linspace(70.0, 100.0, vocab // 3).to(torch.bfloat16)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    targets[::7] = IGNORE_INDEX
    return logits, targets


def loss_and_grad(loss_fn, logits: torch.Tensor, targets: torch.Tensor, scale: float = 1.0):
    leaf = logits.clone().requires_grad_()
    loss = loss_fn(leaf, targets)
    (loss * scale if scale != 1.0 else loss).backward()
    return loss.detach(), leaf.grad


def blockwise(block_rows: int):
    return lambda logits, targets: BlockwiseCrossEntropy.apply(logits, targets, block_rows)


def assert_same_bits(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    differ = (a.view(torch.int16 if a.dtype == torch.bfloat16 else torch.int32)
              != b.view(torch.int16 if b.dtype == torch.bfloat16 else torch.int32))
    assert not bool(differ.any()), f"{what}: {int(differ.sum())} of {differ.numel()} elements differ in bits"


@pytest.mark.parametrize("n, vocab, block_rows", [(61, 37, 8), (64, 1000, 64), (300, 1000, 7), (130, 10_000, 52)])
@pytest.mark.parametrize("spread", [0.02, 3.0], ids=["init", "trained"])
def test_blockwise_loss_and_gradient_are_the_reference_bits(n, vocab, block_rows, spread):
    logits, targets = logits_and_targets(n, vocab, spread)
    ref_loss, ref_grad = loss_and_grad(reference_causal_lm_loss, logits, targets)
    loss, grad = loss_and_grad(blockwise(block_rows), logits, targets)
    assert_same_bits(loss.reshape(1), ref_loss.reshape(1), "loss")
    assert_same_bits(grad, ref_grad, "d loss / d logits")
    assert bool((ref_grad != 0).any()), "a gradient of zeros would prove nothing"
    magnitude = ref_grad.float().abs()
    assert bool(((magnitude > 0) & (magnitude < torch.finfo(torch.bfloat16).tiny)).any()), "no subnormal gradient"


def test_flannel_shape_through_the_public_function_under_autocast():
    """The step's call: (B, T, V) bf16 logits from the head, under CPU bf16 autocast, 79 blocks."""
    logits, targets = logits_and_targets(32 * 128, 10_000, 1.0, seed=1)
    logits, targets = logits.view(32, 128, 10_000), targets.view(32, 128)
    assert rows_per_block(10_000) < 32 * 128
    calls = BlockwiseCrossEntropy.total_calls
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss, grad = loss_and_grad(causal_lm_loss, logits, targets)
    assert BlockwiseCrossEntropy.total_calls == calls + 1, "the CPU training call must take the blockwise path"
    ref_loss, ref_grad = loss_and_grad(reference_causal_lm_loss, logits, targets)
    assert_same_bits(loss.reshape(1), ref_loss.reshape(1), "loss")
    assert_same_bits(grad, ref_grad, "d loss / d logits")


def test_a_scaled_loss_backpropagates_the_reference_bits():
    """Upstream gradient != 1: the reference scales before the softmax backward, and so must we."""
    logits, targets = logits_and_targets(96, 1000, 2.0)
    _, ref_grad = loss_and_grad(reference_causal_lm_loss, logits, targets, scale=3.0)
    _, grad = loss_and_grad(blockwise(16), logits, targets, scale=3.0)
    _, unscaled = loss_and_grad(blockwise(16), logits, targets)
    assert_same_bits(grad, ref_grad, "d (3 loss) / d logits")
    assert not torch.equal(grad, unscaled)


def test_no_target_in_the_batch_gives_the_reference_nan_and_zero_gradient():
    logits, targets = logits_and_targets(40, 100, 1.0)
    targets[:] = IGNORE_INDEX
    ref_loss, ref_grad = loss_and_grad(reference_causal_lm_loss, logits, targets)
    loss, grad = loss_and_grad(blockwise(8), logits, targets)
    assert torch.isnan(ref_loss) and torch.isnan(loss)
    assert_same_bits(grad, ref_grad, "d loss / d logits")
    assert not bool(grad.any())


def test_without_a_gradient_it_is_the_reference_expression():
    logits, targets = logits_and_targets(50, 300, 1.0)
    calls = BlockwiseCrossEntropy.total_calls
    with torch.no_grad():
        loss = causal_lm_loss(logits.requires_grad_(), targets)
    assert BlockwiseCrossEntropy.total_calls == calls, "no gradient wanted: no gradient computed in the forward"
    assert_same_bits(loss.reshape(1), reference_causal_lm_loss(logits, targets).reshape(1), "loss")


@pytest.mark.parametrize("vocab, rows", [(10_000, 52), (1000, 524), (3_000_000, 1)])
def test_rows_per_block_keeps_a_block_near_two_megabytes(vocab, rows):
    assert rows_per_block(vocab) == rows


def test_the_environment_can_ask_for_the_reference_path(monkeypatch):
    logits, targets = logits_and_targets(50, 300, 1.0)
    chosen = choose_kernels(device="cpu")
    monkeypatch.setenv(LOSS_ENV, "reference")
    kernels = choose_kernels(device="cpu")
    assert (chosen.describe()["loss"], kernels.describe()["loss"]) == ("blockwise", "reference")  # what it records
    calls = BlockwiseCrossEntropy.total_calls
    loss, grad = loss_and_grad(kernels.loss, logits, targets)
    assert BlockwiseCrossEntropy.total_calls == calls
    ref_loss, ref_grad = loss_and_grad(reference_causal_lm_loss, logits, targets)
    assert_same_bits(grad, ref_grad, "d loss / d logits")
    loss_and_grad(chosen.loss, logits, targets)
    loss_and_grad(chosen.loss, logits, targets)
    assert BlockwiseCrossEntropy.total_calls == calls + 2  # counts every call, from any count (not set to 1)


def test_an_unknown_loss_path_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv(LOSS_ENV, "fused")
    with pytest.raises(ValueError, match=r"DEAD_TOKEN_HARNESS_LOSS='fused' is not one of blockwise, reference"):
        choose_kernels(device="cpu")


@pytest.mark.parametrize("bad", [-1, 300], ids=["negative", "past-the-vocab"])
def test_a_target_outside_the_vocab_is_an_error_as_in_the_reference(bad):
    logits, targets = logits_and_targets(16, 300, 1.0)
    targets[3] = bad
    with pytest.raises(IndexError, match=f"Target {bad} is out of bounds"):
        loss_and_grad(reference_causal_lm_loss, logits, targets)
    with pytest.raises(RuntimeError, match=f"index {bad} is out of bounds for dimension 1 with size 300"):
        loss_and_grad(blockwise(4), logits, targets)


def test_a_second_derivative_through_the_blockwise_loss_is_an_error_not_zeros():
    logits, targets = logits_and_targets(16, 50, 1.0)
    leaf = logits.float().requires_grad_()
    (grad,) = torch.autograd.grad(blockwise(4)(leaf, targets), leaf, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        grad.sum().backward()


def test_the_loss_is_the_reference_float32_bits_whatever_torch_default_dtype():
    """A notebook may set torch's default dtype to float64: the loss stays the Trainer's float32."""
    logits, targets = logits_and_targets(24, 100, 1.0)
    ref_loss, ref_grad = loss_and_grad(reference_causal_lm_loss, logits, targets)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        loss, grad = loss_and_grad(blockwise(8), logits, targets)
    finally:
        torch.set_default_dtype(default)
    assert_same_bits(loss.reshape(1), ref_loss.reshape(1), "loss")
    assert_same_bits(grad, ref_grad, "d loss / d logits")
