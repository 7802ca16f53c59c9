"""core/native: the bf16 GEMM kernels give torch's bits, or are not used.

The kernels are a speed-up of the default (bit-identical) CPU step; their contract is
torch's own kernels, bit for bit, for row-major @ row-major and row-major @ column-major
products, on every shape, bias and value: long and short reductions around each kernel's
blocking, exact cancellations (which expose any other order of additions), NaN, +-inf,
signed zeros, subnormals and underflowing products.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.fast import native, onednn

bf16 = torch.bfloat16
ROOT = Path(__file__).resolve().parent.parent
has_compiler = any(shutil.which(c) for c in ("cc", "gcc")) or "CC" in os.environ
x86 = os.uname().machine in ("x86_64", "AMD64")
# Child processes take this process's oneDNN switch (tests/test_fallback_kernels.py turns it off).
CHILD_PRELUDE = f"import torch; torch.backends.mkldnn.enabled = {torch.backends.mkldnn.enabled}\n"


@pytest.fixture(scope="module")
def kernel():
    if not (has_compiler and x86):
        pytest.skip("the kernel is built on x86-64 machines with a C compiler")
    if onednn.bf16_gemms_on_onednn():
        pytest.skip("torch runs bf16 GEMMs through oneDNN on this CPU, not the fallback kernels the kernel repeats "
                    "(tests/test_fallback_kernels.py runs this file under torch's AVX2 fallback kernels)")
    lib = native.kernel()
    assert lib is not None, "a C compiler is present but the kernel was not built or failed its check"
    return lib


def same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.shape == y.shape and torch.equal(x.view(torch.int16), y.view(torch.int16))


CANCELLING = torch.tensor([2.0**20, -(2.0**20), 1.0, -1.0, 2.0**-5, 3.0])


def draw(gen, values: str, *shape) -> torch.Tensor:
    if values == "normal":
        return torch.randn(shape, generator=gen).to(bf16)
    return CANCELLING[torch.randint(len(CANCELLING), shape, generator=gen)].to(bf16)


# K: every K % 4 and % 16, below, at and across the 64-element iterations; M, N around the blocks.
@pytest.mark.parametrize("values", ["normal", "cancelling"])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 15, 16, 17, 63, 64, 65, 72, 80, 200, 257, 1003])
@pytest.mark.parametrize("m, n", [(1, 1), (9, 63), (67, 65), (130, 17)])
@pytest.mark.parametrize("layout", native.LAYOUTS)
def test_products_match_torch_bit_for_bit(kernel, layout, m, n, k, values):
    gen = torch.Generator().manual_seed(m * 10_000 + n * 10 + k)
    a, b = native.arrange(layout, draw(gen, values, m, k), draw(gen, values, k, n))
    if 1 in (m, n, k):  # torch's vector kernels: left to torch
        assert native.layout_of(a, b) is None
        return
    assert native.layout_of(a, b) == layout
    assert same_bits(native.product(a, b), a @ b)
    bias_1d, bias_2d = draw(gen, values, n), draw(gen, values, m, n)
    assert same_bits(native.product(a, b, bias_1d), torch.addmm(bias_1d, a, b))
    assert same_bits(native.product(a, b, bias_2d), torch.addmm(bias_2d, a, b))


@pytest.mark.parametrize("layout", native.LAYOUTS)
def test_strided_operands_expanded_bias_and_row_ranges(kernel, layout):
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(100, 90, generator=gen).to(bf16)[:, 5:85]  # rows 90 apart
    b = torch.randn(120, 70, generator=gen).to(bf16)[:80, 3:67]  # row stride 70
    b = b if layout == "row@row" else torch.randn(70, 120, generator=gen).to(bf16)[3:67, :80].t()  # column stride 120
    assert native.layout_of(a, b) == layout
    bias = torch.randn(1, 64, generator=gen).to(bf16).expand(100, 64)  # row stride 0
    want = torch.addmm(bias, a, b)
    out = torch.full((100, 64), float("nan"), dtype=bf16)
    for lo, hi in ((0, 37), (37, 38), (38, 100)):  # as threads split it
        native.product(a, b, bias, out=out, rows=(lo, hi))
    assert same_bits(out, want)


@pytest.mark.parametrize("layout", native.LAYOUTS)
def test_special_values_and_underflowing_products(kernel, layout):
    """NaN, +-inf, signed zeros, subnormals, overflowing and underflowing products."""
    vals = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-39, -3e-40, 1e-30, 2e-25,
                         1.0, -1.5, 3e38, 1e-20, -7e-21], dtype=torch.float32).to(bf16)
    gen = torch.Generator().manual_seed(2)
    for k in (23, 150):
        a, b = native.arrange(layout, vals[torch.randint(len(vals), (40, k), generator=gen)],
                              vals[torch.randint(len(vals), (k, 70), generator=gen)])
        assert same_bits(native.product(a, b), a @ b)
    # each product 1e-50 underflows to 0 in float32
    tiny, other = native.arrange(layout, torch.full((8, 12), 1e-30, dtype=bf16), torch.full((12, 3), 1e-20, dtype=bf16))
    assert same_bits(native.product(tiny, other), tiny @ other)


def test_the_head_products_at_full_size(kernel):
    """The LM head at the Flannel shape: logits h @ W.T (row@col) and its input gradient
    g @ W (row@row); its weight gradient g.T @ h (col@row) is left to torch."""
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(4096, 64, generator=gen).to(bf16)
    g = (torch.randn(4096, 10_000, generator=gen) * 1e-4).to(bf16)
    w = (torch.randn(10_000, 64, generator=gen) * 0.02).to(bf16)
    assert same_bits(native.product(h, w.t()), h @ w.t())
    assert same_bits(native.product(g, w), g @ w)
    assert native.layout_of(g.t(), h) is None


def test_turned_off_or_without_a_compiler_torch_runs_the_step(tmp_path):
    """DEAD_TOKEN_HARNESS_NATIVE=off, and CC naming no compiler: no kernel, no error, the default step runs."""
    code = CHILD_PRELUDE + ("from core.fast import choose_kernels, native; from core.fast.gemm import RowSplitGemms; "
            "import torch; k = choose_kernels(device='cpu'); assert not k.native and k.describe()['gemms'] != 'native'; "
            "m = RowSplitGemms(1, k.native); a = torch.ones(70, 9, dtype=torch.bfloat16)\n"
            "with m: p = a @ torch.ones(9, 5, dtype=torch.bfloat16)\n"
            "assert m.native_calls == 0 and bool((p == 9).all())")
    for extra in ({"DEAD_TOKEN_HARNESS_NATIVE": "off"}, {"CC": str(tmp_path / "no-such-cc")}):
        env = {**os.environ, "DEAD_TOKEN_HARNESS_CACHE": str(tmp_path / "cache"), **extra}
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        if onednn.bf16_gemms_on_onednn():  # not even built: torch's oneDNN kernels run the GEMMs
            assert "bf16 GEMM kernel" not in result.stderr and not (tmp_path / "cache").exists()
        elif "CC" in extra:
            assert "bf16 GEMM kernel unavailable" in result.stderr and "no-such-cc" in result.stderr


def test_built_once_into_the_cache(kernel):
    built = list(native.cache_dir().glob("bf16_gemm-*.so"))
    assert built, f"no kernel in {native.cache_dir()}"


def test_self_check_refuses_a_build_without_fused_multiply_adds(kernel, tmp_path):
    """A kernel built the other way (every product rounded on its own) differs from torch's
    AVX2 kernel where a product overflows: the check before first use must see it."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("torch's baseline kernel does not fuse")
    unfused = tmp_path / "unfused.so"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    subprocess.run([compiler, *[f for f in native.flags() if f != "-DFUSED"], str(native.SOURCE), "-lm", "-o", str(unfused)],
                   check=True)
    code = CHILD_PRELUDE + ("import ctypes; from core.fast import native\n"
            f"native._kernel = native.bind(ctypes.CDLL({str(unfused)!r}))\n"
            "print(native._self_check())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "an overflowing product added to +inf" in result.stdout
