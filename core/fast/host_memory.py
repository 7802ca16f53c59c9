"""Keep freed host memory for reuse, so a CPU step's large temporaries cost no page faults.

A Flannel step on a CPU allocates and frees large tensors: the (B*T, 10,000) logits and
their gradient in bf16, 82 MB each (before core/fast/loss.py's blockwise loss, also ~650 MB of
float32 logits, log-softmax and gradients). glibc serves every block over 32 MB with a
fresh mmap and unmaps it on free, so each step faults in every page of them anew: measured
on a 2-core AVX2 machine with the old loss, 0.7 s of system time per step with
`matmul = "fp32"` (1.08 s/step -> 0.76 s/step without it). `reuse_freed_host_memory()`
tells glibc to serve large blocks from its heap and not to trim the heap, so the second
step reuses the first one's pages. Process-wide and one-way; no effect on any value
computed. Costs resident memory: with the blockwise loss a Flannel run peaks at 655-680
MiB instead of 620-650 MiB, at 5.5 instead of 3.5 steps/s (2-core AVX-512 CPU, 2026-12-02;
with the Trainer's loss expression: 1.6-1.7 GiB instead of 1.0 GiB).
Elsewhere than glibc (macOS, musl) it does nothing and says so. `core.fast.choose_kernels`
does not call it under DEAD_TOKEN_HARNESS_HOST_MEMORY=system (where resident memory matters more).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_MAX = -4
_KEEP_BYTES = 1 << 30  # freed memory at the top of the heap stays mapped up to this

_applied: bool | None = None  # None: not asked yet


def _glibc_function(name: str):
    """A glibc function by name, or None off Linux or where the C library lacks it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def reuse_freed_host_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (idempotent). True if it is now in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    mallopt = _glibc_function("mallopt")
    if mallopt is not None:
        _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    if not _applied:
        log.debug("host memory reuse not available here (no glibc mallopt): large temporaries are mapped per step")
    return _applied


def host_memory_reuse() -> bool:
    """Whether `reuse_freed_host_memory()` is in effect in this process."""
    return bool(_applied)


def release_freed_host_memory() -> bool:
    """Hand the heap's free pages back to the system now (glibc `malloc_trim(0)`); True if it did.

    For after a one-off burst of small temporaries that glibc keeps mapped: tokenizing the
    default corpus leaves ~210 MB of them (measured 2026-12-02: a run's RSS 617 -> 408 MB
    after data preparation). Changes no value; does nothing off glibc.
    """
    malloc_trim = _glibc_function("malloc_trim")
    return bool(malloc_trim(0)) if malloc_trim is not None else False
