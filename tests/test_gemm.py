"""core.fast.gemm: the step's GEMM modes.

RowSplitGemms (the default on a CPU) must give the bits of the unsplit kernel for every
layout, bias shape and thread count; Float32Gemms (opt-in `matmul = "fp32"`) must give
the rounded float32 product, forward and backward, and change nothing else. The
step-level bounds of the fp32 mode against the default are in tests/test_lm_head.py;
tests/test_parity_trainer.py runs the split default step against the Trainer.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core.fast import native, onednn
from core.fast.gemm import Float32Gemms, RowSplitGemms, gemm_mode, single_threaded_layout

bf16 = torch.bfloat16


def rounded(product: torch.Tensor) -> torch.Tensor:
    return product.to(bf16)


def layout(x: torch.Tensor, column_major: bool) -> torch.Tensor:
    """The same values, stored row-major or column-major (a transposed view, as autograd hands out)."""
    return x.t().contiguous().t() if column_major else x.contiguous()


@pytest.fixture()
def operands() -> dict[str, torch.Tensor]:
    """bf16 operands with long reductions (K = 3,000) so that kernels' summation orders show."""
    g = torch.Generator().manual_seed(0)
    return {name: torch.randn(shape, generator=g).to(bf16)
            for name, shape in {"a": (96, 3000), "b": (3000, 80), "bias": (80,), "x": (4, 96, 3000), "y": (4, 3000, 40)}.items()}


# ------------------------------------------------------------------ RowSplitGemms
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("rows", [4096, 1001])
@pytest.mark.parametrize("a_col, b_col", [(False, False), (True, False), (True, True), (False, True)],
                         ids=["row@row", "col@row", "col@col", "row@col"])
def test_row_split_products_are_bit_identical_to_the_unsplit_kernel(a_col, b_col, rows, threads):
    gen = torch.Generator().manual_seed(rows + threads)
    a = layout(torch.randn(rows, 700, generator=gen).to(bf16), a_col).requires_grad_()  # (M, K)
    b = layout(torch.randn(700, 96, generator=gen).to(bf16), b_col).requires_grad_()  # (K, N)
    bias_1d = torch.randn(96, generator=gen).to(bf16)
    bias_2d = torch.randn(rows, 96, generator=gen).to(bf16)
    want = [a @ b, torch.addmm(bias_1d, a, b), torch.addmm(bias_2d, a, b)]
    mode = RowSplitGemms(threads)
    with mode:
        got = [a @ b, torch.addmm(bias_1d, a, b), torch.addmm(bias_2d, a, b)]
    for w, g in zip(want, got):
        assert g.dtype == bf16 and g.is_contiguous() and torch.equal(w, g)
    assert got[0].grad_fn is not None  # autograd still sees the product
    on_native = mode.native and native.layout_of(a, b) is not None  # core/native's kernels take row@row, row@col
    assert mode.native_calls == (3 if on_native else 0)
    assert mode.splits == (3 if single_threaded_layout(a, b) and not on_native else 0)


def test_row_split_backward_is_bit_identical():
    """The LM head's shape in miniature: its backward GEMMs are the single-threaded layouts."""
    gen = torch.Generator().manual_seed(2)
    h, w, g = (torch.randn(shape, generator=gen).to(bf16) for shape in ((2048, 64), (3000, 64), (2048, 3000)))
    grads, modes = {}, {"plain": contextlib.nullcontext(), "split": RowSplitGemms(2)}
    for name, mode in modes.items():
        x, y = h.clone().requires_grad_(), w.clone().requires_grad_()
        with mode:
            (x @ y.t()).backward(g)  # logits = h @ W.T; backward: g @ W (row@row), g.T @ h (col@row)
        grads[name] = (x.grad, y.grad)
    split = modes["split"]  # forward h @ W.T: row@col; backward g @ W: row@row, g.T @ h: col@row (split)
    assert (split.splits, split.native_calls) == ((1, 2) if split.native else (2, 0))
    assert all(torch.equal(p, s) for p, s in zip(grads["plain"], grads["split"]))


def test_small_products_are_not_split():
    a, b = torch.ones(64, 8, dtype=bf16), torch.ones(8, 8, dtype=bf16)
    mode = RowSplitGemms(2)
    with mode:
        product = a @ b
    assert mode.splits == 0 and torch.equal(product, torch.full((64, 8), 8.0, dtype=bf16))


# ------------------------------------------------------------------ Float32Gemms
def test_each_bf16_product_is_the_rounded_float32_product(operands):
    a, b, bias, x, y = operands.values()
    with Float32Gemms():
        mm, addmm, bmm, matmul = a @ b, torch.addmm(bias, a, b), torch.bmm(x, y), torch.matmul(x, y)
    assert mm.dtype == addmm.dtype == bmm.dtype == bf16
    assert torch.equal(mm, rounded(a.float() @ b.float()))
    assert torch.equal(addmm, rounded(torch.addmm(bias.float(), a.float(), b.float())))
    assert torch.equal(bmm, rounded(torch.bmm(x.float(), y.float())))
    assert torch.equal(matmul, bmm)
    # The mode changed something: torch's own bf16 kernels sum in another order.
    assert not (torch.equal(a @ b, mm) and torch.equal(torch.bmm(x, y), bmm))


def test_backward_products_are_float32_too():
    """The LM head's shape in miniature: a short forward reduction, long backward ones."""
    gen = torch.Generator().manual_seed(1)
    h, w, g = (torch.randn(shape, generator=gen).to(bf16) for shape in ((2000, 64), (64, 1500), (2000, 1500)))
    grads = {}
    for mode in ("bf16", "fp32"):
        x, y = h.clone().requires_grad_(), w.clone().requires_grad_()
        with gemm_mode(mode, torch.device("cpu")):
            (x @ y).backward(g)  # the backward pass runs under the mode as well
        grads[mode] = (x.grad, y.grad)
    assert torch.equal(grads["fp32"][0], rounded(g.float() @ w.float().t()))  # (2000, 64), sums of 1,500
    assert torch.equal(grads["fp32"][1], rounded(h.float().t() @ g.float()))  # (64, 1500), sums of 2,000
    assert not all(torch.equal(d, f) for d, f in zip(grads["bf16"], grads["fp32"]))


def test_float32_and_integer_ops_pass_through_unchanged(operands):
    a32, b32 = operands["a"].float(), operands["b"].float()
    ids = torch.arange(12).view(3, 4)
    with Float32Gemms():
        mm32, sum_ids = a32 @ b32, ids.sum()
    assert mm32.dtype == torch.float32 and torch.equal(mm32, a32 @ b32)
    assert sum_ids.item() == 66


def test_unknown_matmul_names_the_choices():
    with pytest.raises(ValueError, match=r"Unknown matmul 'tf32'. Available: bf16, fp32"):
        gemm_mode("tf32", torch.device("cpu"))


def test_the_default_mode_on_a_cpu_splits_and_the_fp32_mode_upcasts():
    cpu = torch.device("cpu")
    if onednn.bf16_gemms_on_onednn():  # torch's oneDNN kernels, untouched
        assert not isinstance(gemm_mode("bf16", cpu), TorchDispatchMode)
    elif torch.get_num_threads() > 1:
        assert isinstance(gemm_mode("bf16", cpu), RowSplitGemms)
    assert isinstance(gemm_mode("fp32", cpu), Float32Gemms)
    assert not isinstance(gemm_mode("bf16", torch.device("meta")), TorchDispatchMode)  # not a CPU: untouched


