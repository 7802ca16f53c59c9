"""Whether torch runs this machine's bf16 CPU GEMMs through oneDNN or its own fallback kernels.

torch (2.6-2.13 at least, ATen/native/mkldnn/Matmul.cpp) hands a bf16 matrix product of
more than 16^3 multiply-adds to oneDNN where its build has oneDNN,
`torch.backends.mkldnn.enabled` is true and the CPU has AVX-512 (BW, VL, DQ) or
AVX-NE-CONVERT; elsewhere (AVX2-only x86 CPUs, for one) to its own fallback kernels. The
two add in different orders, so a trajectory's bits depend on which one the machine takes
(the Trainer's own bits do too: it runs the same torch kernels as the core).

native.py's kernels and gemm.py's row splits are modelled on the fallback kernels and
checked against them; where oneDNN runs they stand aside and the step runs torch's own
calls (oneDNN's kernels are fast and multi-threaded: on a 2-core AVX-512 BF16 machine the
LM head's three products at the Flannel shape take ~0.065 s, the fallback kernels ~2.9 s).

Measured, not inferred from CPU flags: a product of exactly cancelling values (any other
order of additions shows in its bits) with oneDNN allowed and with it disabled.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

import torch

_lock = threading.Lock()


def bf16_gemms_on_onednn() -> bool:
    """Whether torch's large bf16 CPU GEMMs run through oneDNN in this process, as now set."""
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    return _onednn_differs_from_fallback()


@functools.cache
def _onednn_differs_from_fallback() -> bool:
    gen = torch.Generator().manual_seed(0)
    values = torch.tensor([2.0**20, -(2.0**20), 1.0, -1.0, 2.0**-5, 3.0])
    a = values[torch.randint(len(values), (32, 96), generator=gen)].bfloat16()  # (M, K): 32*96*32 > 16^3
    b = values[torch.randint(len(values), (96, 32), generator=gen)].bfloat16()  # (K, N)
    pairs = ((a, b), (a, b.t().contiguous().t()))  # row@row and row@col
    with _lock:
        allowed = [x @ y for x, y in pairs]
        with fallback_kernels():
            fallback = [x @ y for x, y in pairs]
    return any(not torch.equal(p.view(torch.int16), q.view(torch.int16)) for p, q in zip(allowed, fallback))


@contextlib.contextmanager
def fallback_kernels() -> Iterator[None]:
    """oneDNN disabled inside: torch's fallback kernels run every bf16 GEMM. The switch is
    process-wide (`torch.backends.mkldnn.enabled`): GEMMs on other threads meanwhile see it too."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before
