"""core/onednn's verdict, and the fallback-kernel speed-ups tested where torch would not use them.

On a CPU where torch runs bf16 GEMMs through oneDNN (AVX-512), the default step runs torch's
own calls, and core/native's kernels and core/gemm's row splits stand aside. They are still
the default on AVX2-only CPUs, so here their tests (the kernels bit for bit against torch,
the row splits, the whole step against transformers' Trainer through them) run in a child
process that makes this machine take torch's AVX2 fallback kernels: ATEN_CPU_CAPABILITY=avx2
and oneDNN disabled before any test runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.fast import onednn

ROOT = Path(__file__).resolve().parent.parent
bf16 = torch.bfloat16


def same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    return torch.equal(x.view(torch.int16), y.view(torch.int16))


def head_products() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The LM head's three products at the Flannel shape (4,096 positions, dim 64, vocab 10,000)."""
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(4096, 64, generator=gen).to(bf16)  # (B*T, D)
    w = torch.randn(10_000, 64, generator=gen).to(bf16)  # (V, D)
    g = (torch.randn(4096, 10_000, generator=gen) * 1e-3).to(bf16)  # (B*T, V): d loss / d logits
    return [(h, w.t()), (g, w), (g.t(), h)]


def test_the_verdict_holds_for_the_head_products():
    """oneDNN reported: each head product differs from the fallback kernels' bits somewhere;
    not reported: each is the same with oneDNN allowed or not (torch never used it)."""
    on_onednn = onednn.bf16_gemms_on_onednn()
    for a, b in head_products():
        allowed = a @ b
        with onednn.fallback_kernels():
            fallback = a @ b
        assert same_bits(allowed, fallback) is not on_onednn, (a.shape, b.shape, on_onednn)


def test_disabling_onednn_is_seen():
    with onednn.fallback_kernels():
        assert onednn.bf16_gemms_on_onednn() is False


CHILD_FILES = ["tests/test_native.py", "tests/test_gemm.py", "tests/test_parity_trainer.py", "tests/test_kernels.py"]


@pytest.mark.slow
def test_fallback_kernel_tests_pass_under_torchs_avx2_kernels():
    if not onednn.bf16_gemms_on_onednn():
        pytest.skip("torch runs its fallback bf16 kernels here: those tests ran in this process")
    if os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("ATEN_CPU_CAPABILITY=avx2 needs an x86-64 CPU")
    child = ("import sys, torch; torch.backends.mkldnn.enabled = False; "
             "assert torch.backends.cpu.get_cpu_capability() == 'AVX2', torch.backends.cpu.get_cpu_capability(); "
             "import pytest; sys.exit(pytest.main(sys.argv[1:]))")
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2")
    result = subprocess.run([sys.executable, "-c", child, "-q", "-p", "no:cacheprovider", "-rs", *CHILD_FILES],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"=* ?\d+ passed in .*", summary), summary  # every case ran and passed: none skipped
