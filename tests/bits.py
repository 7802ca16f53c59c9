"""Bit-for-bit comparison of tensors through integer views.

`torch.equal` compares values: it calls +0.0 and -0.0 equal and a NaN unequal to itself,
so it can pass on tensors whose bits differ and fail on tensors whose bits agree. Parity
tests mean "the same bits", so they compare the tensors' integer views instead: a bf16 or
fp16 tensor as int16, a float32 one as int32, a float64 one as int64. The dtype and the
shape must match too.

    assert_same_bits(ours, theirs, "W after step 3")   # AssertionError saying what differs
    bit_differences(ours, theirs)                      # None, or that description
"""

from __future__ import annotations

import torch

INT_VIEW = {
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns: a CPU integer tensor of its shape (0-d stays 0-d)."""
    if t.dtype not in INT_VIEW:
        raise TypeError(f"No integer view for {t.dtype}; compare integer tensors with torch.equal.")
    return t.detach().cpu().contiguous().view(INT_VIEW[t.dtype])


def _hex(pattern: int, dtype: torch.dtype) -> str:
    width = torch.finfo(dtype).bits
    return f"0x{pattern & ((1 << width) - 1):0{width // 4}x}"


def bit_differences(a: torch.Tensor, b: torch.Tensor) -> str | None:
    """None when `a` and `b` have the same dtype, shape and bits in every element; else what differs."""
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} vs {b.dtype}"
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    bits_a, bits_b = bits(a), bits(b)
    differ = bits_a != bits_b
    if not bool(differ.any()):
        return None
    where = tuple(int(i) for i in differ.nonzero()[0])  # () for a 0-d tensor
    val_a, val_b = a.detach().cpu()[where].item(), b.detach().cpu()[where].item()
    pat_a, pat_b = int(bits_a[where]), int(bits_b[where])
    spread = (a.detach().cpu().double() - b.detach().cpu().double()).abs().nan_to_num(nan=float("inf")).max().item()
    return (f"{int(differ.sum())} of {differ.numel()} elements differ in their bits, the first at {list(where)}: "
            f"{val_a!r} ({_hex(pat_a, a.dtype)}) vs {val_b!r} ({_hex(pat_b, b.dtype)}); max |diff| {spread!r}")


def assert_same_bits(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """AssertionError naming `what` unless `a` and `b` are the same bits (`bit_differences`)."""
    problem = bit_differences(a, b)
    assert problem is None, f"{what}: {problem}"
