"""The causal-LM loss as the Trainer computed it (core/step.py), without its (N, V) float32 temporaries on a CPU.

The Trainer's loss (transformers' ForCausalLMLoss) and its backward, for logits (N, V) bf16:
  forward   logits.float() -> log_softmax -> nll_loss(mean over the targets that exist)
  backward  nll's one-hot gradient, -1/count at each target -> log_softmax backward -> bf16
Each of those is a (N, V) float32 tensor: on the Flannel shape (N = 4,096, V = 10,000) four
of 164 MB each, written and read again every step, and ~1 GB of a CPU run's peak memory.

`causal_lm_loss` on a CPU runs the same torch kernels on blocks of rows (`rows_per_block`),
and computes each block's gradient in the forward, while the block's log-softmax is still in
cache: what stays is the (N, V) bf16 gradient the Trainer's backward hands to the head. The
bits are the Trainer's because every kernel involved works row by row (a row's log-softmax
and its backward see only that row), the target gradient is the value nll_loss_backward
writes (-(1/count), count over the whole batch), and the mean is nll_loss's own reduction
over the same N picked log-probabilities in the same order (tests/test_loss.py, and the
Trainer parity test, which runs it). Measured on a 2-core AVX-512 CPU, Flannel 1
(benchmarks/test_loss_bench.py): peak RSS 1.43-1.74 GiB -> 650-680 MiB, steps/s 5.1-5.5 ->
5.5; where freed host memory is not kept for reuse (macOS, DEAD_TOKEN_HARNESS_HOST_MEMORY=
system: host_memory.py) 2.0 -> 3.5 steps/s, the float32 tensors' page faults gone.

Elsewhere (CUDA, MPS), or with no gradient to compute, it is the reference expression
itself: on a GPU the (N, V) temporaries are cheap and a loop of blocks costs launches.
`core.fast.choose_kernels` keeps the reference on a CPU too under DEAD_TOKEN_HARNESS_LOSS=reference
(to compare, or should a torch release change a kernel: the parity test would say so). The blockwise backward reads its upstream
gradient on the host (a CPU scalar: no device to wait for) to tell an unscaled loss, whose
gradient it has, from a scaled one, which it recomputes the reference way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.data import IGNORE_INDEX
from core.step import causal_lm_loss as reference_causal_lm_loss

# A block's float32 log-softmax: ~2 MB, half a block per thread of a 2-core machine's 1 MB L2.
# Measured in-step, Flannel 1, 2-core AVX-512 (10 ABBA rounds of 8 steps): 1 MB 127 ms/step,
# 2 MB 125, 4 MB 129-131, 8 MB 140.
_BLOCK_BYTES = 2 << 20


def rows_per_block(vocab_size: int) -> int:
    """Rows of logits per block: a block's float32 log-softmax fills about `_BLOCK_BYTES`."""
    return max(1, _BLOCK_BYTES // (4 * vocab_size))


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reference loss, and its gradient, bit for bit; blockwise on a CPU (module docstring).

    logits (B, T, V) or (N, V), any float dtype; targets (B, T) or (N,) int64.
    """
    if logits.device.type != "cpu" or not (torch.is_grad_enabled() and logits.requires_grad):
        return reference_causal_lm_loss(logits, targets)
    vocab = logits.size(-1)
    return BlockwiseCrossEntropy.apply(logits.reshape(-1, vocab), targets.reshape(-1), rows_per_block(vocab))


class BlockwiseCrossEntropy(torch.autograd.Function):
    """Forward: the loss, and d loss / d logits for an upstream gradient of 1, block by block."""

    total_calls = 0  # forwards run in this process (the parity test checks the step ran this)

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, block_rows: int) -> torch.Tensor:
        # logits (N, V); targets (N,)
        BlockwiseCrossEntropy.total_calls += 1
        n = logits.size(0)
        valid = targets != IGNORE_INDEX  # (N,)
        target_grad = -(1.0 / valid.sum().float())  # nll_loss_backward's value at a target: -(1 / count)
        cols = torch.where(valid, targets, 0).unsqueeze(1)  # (N, 1); an ignored row picks column 0, unused
        col_grad = torch.where(valid, target_grad, 0.0).unsqueeze(1)  # (N, 1) float32
        picked = torch.empty(n, 1, dtype=torch.float32)  # (N, 1): each row's target log-probability
        grad = torch.empty(logits.shape, dtype=logits.dtype)  # (N, V): what the Trainer's backward yields
        with torch.autocast(device_type="cpu", enabled=False):
            for start in range(0, n, block_rows):
                rows = slice(start, min(n, start + block_rows))
                log_probs = torch.log_softmax(logits[rows].float(), dim=-1)  # (b, V) float32
                picked[rows] = log_probs.gather(1, cols[rows])
                one_hot = torch.zeros_like(log_probs).scatter_(1, cols[rows], col_grad[rows])  # (b, V)
                block_grad = torch.ops.aten._log_softmax_backward_data(one_hot, log_probs, 1, torch.float32)
                grad[rows] = block_grad  # rounds to the logits' dtype, as the Trainer's .float() backward
            # the mean as nll_loss reduces it: the same N values, the same order, the same count
            loss = F.nll_loss(picked, torch.where(valid, 0, IGNORE_INDEX), ignore_index=IGNORE_INDEX)
        ctx.save_for_backward(grad, logits, targets)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable  # a second derivative through it is an error, not zeros
    def backward(ctx, upstream: torch.Tensor):
        grad, logits, targets = ctx.saved_tensors
        if upstream.item() == 1.0:  # a loss backpropagated as it is: the gradient computed in forward
            return grad, None, None
        # a scaled loss: the Trainer's graph scales before the softmax backward; so does this
        with torch.enable_grad():
            leaf = logits.detach().requires_grad_()
            (scaled,) = torch.autograd.grad(reference_causal_lm_loss(leaf, targets), leaf, upstream)
        return scaled, None, None
