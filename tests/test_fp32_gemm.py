"""core.fp32_gemm: under `Float32Gemms`, every bf16 GEMM (forward and backward) is a float32
GEMM of the same operands rounded to bf16, and nothing else changes.

The step-level bounds (loss, gradients, W against the default step) are in
tests/test_lm_head.py, beside those of the head-only `logits_matmul = "fp32"`.
"""

from __future__ import annotations

import pytest
import torch

from core.fp32_gemm import Float32Gemms, gemm_precision

bf16 = torch.bfloat16


def rounded(product: torch.Tensor) -> torch.Tensor:
    return product.to(bf16)


@pytest.fixture()
def operands() -> dict[str, torch.Tensor]:
    """bf16 operands with long reductions (K = 3,000) so that kernels' summation orders show."""
    g = torch.Generator().manual_seed(0)
    return {name: torch.randn(shape, generator=g).to(bf16)
            for name, shape in {"a": (96, 3000), "b": (3000, 80), "bias": (80,), "x": (4, 96, 3000), "y": (4, 3000, 40)}.items()}


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
        with gemm_precision(mode):
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
        gemm_precision("tf32")
