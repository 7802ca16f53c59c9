"""Every bf16 GEMM of a step computed by a float32 GEMM: the opt-in `matmul = "fp32"`.

The default (`matmul = "bf16"`) runs the Trainer's kernels. On CPUs without bf16 matrix
instructions (AVX2 only) torch's bf16 GEMMs take a slow path: on a 2-core AVX2 machine
they are ~90 % of a Flannel step, the LM head's three (B*T, 64) x (64, 10,000) products
most of it and the blocks' 24 small ones (attention and MLP projections, forward and
backward) most of the rest once the head is float32 (`logits_matmul = "fp32"`).

Under `Float32Gemms` every `mm`, `addmm` and `bmm` whose matrix operands are bf16 becomes
the same call on their float32 copies, rounded to bf16: forward and backward, the LM head
included (its bits are then those of `logits_matmul = "fp32"`). A product of two bf16
numbers is exact in float32 and both kernels accumulate in float32, so only the order of
the float32 additions changes: an output can differ by one bf16 ULP where the sum lies
next to a rounding boundary. Not bit-identical to the Trainer's step;
tests/test_fp32_gemm.py states the difference allowed. Attention's fused
scaled-dot-product kernel, the optimizer and everything elementwise are untouched.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode

MATMULS = ("bf16", "fp32")

_aten = torch.ops.aten
_PRODUCTS = {_aten.mm.default: (0, 1), _aten.bmm.default: (0, 1), _aten.addmm.default: (1, 2)}  # op: its matrices


class Float32Gemms(TorchDispatchMode):
    """A dispatch mode: bf16 mm / bmm / addmm run as float32 GEMMs, results rounded to bf16.

    Active on the thread that enters it, and in the autograd engine's backward of a graph
    built under it, when `backward()` is called under it too.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        matrices = _PRODUCTS.get(func)
        if matrices is not None and all(args[i].dtype == torch.bfloat16 for i in matrices):
            # addmm's bias (args[0]) and alpha/beta ride along: bias + a @ b in float32, rounded once.
            upcast = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
            return func(*upcast, **kwargs).to(torch.bfloat16)
        return func(*args, **kwargs)


def gemm_precision(matmul: str) -> contextlib.AbstractContextManager:
    """The context a step's forward and backward run in for `matmul` ("bf16" or "fp32")."""
    if matmul == "bf16":
        return contextlib.nullcontext()
    if matmul == "fp32":
        return Float32Gemms()
    raise ValueError(f"Unknown matmul {matmul!r}. Available: {', '.join(MATMULS)}.")
