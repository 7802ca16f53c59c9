"""The language-model head's matmuls, computed the default way or with float32 accumulation.

The default (`logits_matmul = "bf16"`) is what transformers' Trainer ran: under bf16
autocast, `lm_head` multiplies bf16 hidden states by the bf16 unembedding W. On CPUs
without bf16 matrix instructions (AVX2 only) those bf16 GEMMs are the step's cost: on a
2-core AVX2 machine the three (B*T, 64) x (64, 10,000) products of a Flannel step take
~7 of its ~9 s.

`logits_matmul = "fp32"` (opt-in) computes the same three products from the same bf16
operands with a float32 GEMM and rounds the result to bf16. Every product of two bf16
numbers is exact in float32, and both kernels accumulate in float32, so the only change
is the order of the float32 additions: an output element can differ by one bf16 ULP where
the float32 sum lies next to a rounding boundary (~0.004 % of logits on the Flannel shape).
The trajectory is then no longer bit-identical to the Trainer's; tests/test_lm_head.py
states the difference allowed.
"""

from __future__ import annotations

import torch

LOGITS_MATMULS = ("bf16", "fp32")


class _Float32AccumulatedHead(torch.autograd.Function):
    """logits = bf16(h) @ W.T with float32 accumulation; grads likewise.

    h (N, D) any float dtype (autocast hands float32 from the last LayerNorm); W (V, D) bf16.
    Returns (N, V) bf16, as autocast's bf16 linear would.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        h16 = hidden.to(torch.bfloat16)  # the cast autocast applies before the linear
        ctx.save_for_backward(h16, weight)
        ctx.hidden_dtype = hidden.dtype
        return (h16.float() @ weight.float().t()).to(torch.bfloat16)

    @staticmethod
    def backward(ctx, grad_logits: torch.Tensor):
        h16, weight = ctx.saved_tensors
        g = grad_logits.float()  # (N, V)
        grad_hidden = (g @ weight.float()).to(torch.bfloat16).to(ctx.hidden_dtype)  # (N, D)
        grad_weight = (g.t() @ h16.float()).to(weight.dtype)  # (V, D)
        return grad_hidden, grad_weight


def lm_logits(model: torch.nn.Module, inputs: torch.Tensor, logits_matmul: str = "bf16") -> torch.Tensor:
    """The model's logits (B, T, V) bf16 for input ids (B, T); call under bf16 autocast."""
    if logits_matmul == "bf16":
        return model(input_ids=inputs).logits
    if logits_matmul != "fp32":
        raise ValueError(f"Unknown logits_matmul {logits_matmul!r}. Available: {', '.join(LOGITS_MATMULS)}.")
    hidden = model.transformer(input_ids=inputs).last_hidden_state  # (B, T, D)
    b, t, d = hidden.shape
    with torch.autocast(device_type=inputs.device.type, enabled=False):
        logits = _Float32AccumulatedHead.apply(hidden.reshape(b * t, d), model.lm_head.weight)
    return logits.view(b, t, -1)
