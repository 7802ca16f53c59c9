"""Speed machinery behind one seam: step kernels that give the reference step's bits, faster.

Optional to read. The reference step (core/step.py) takes a `StepKernels`; this package
provides faster ones and `choose_kernels`, the one function that picks them from the
kernel knobs (scenario table [train]) and the device:

  kernels = "auto"       on a CPU: the causal-LM loss in row blocks (loss.py), the bf16 GEMMs
                         split by rows or run by checked C kernels where torch takes its
                         fallback path (gemm.py, native.py, onednn.py), freed host memory kept
                         for reuse (host_memory.py); on CUDA with cuda_graph = true, forward +
                         backward replayed as a CUDA graph (step_graph.py). Same bits as the
                         reference (tests/test_kernels.py compares every recorded dataset).
  kernels = "reference"  the Trainer's expressions and torch's kernels, nothing else.
  matmul / logits_matmul = "fp32"   opt-in float32 GEMMs (gemm.py, lm_head.py): faster on
                         AVX2-only CPUs, NOT bit-identical (an output may move by one bf16 ULP).

Choosing has side effects, and only choosing: glibc's allocator settings, compiling the C
kernels and probing which kernels torch runs happen here, never when the reference core is
constructed. Three environment variables are read here and nowhere else, and what they chose
is in `describe()`, which the harness records in every trajectory (attribute `kernels`):
  DEAD_TOKEN_HARNESS_LOSS=reference     the Trainer's loss expression on a CPU too
  DEAD_TOKEN_HARNESS_NATIVE=off         no C kernels (torch's own, same bits, slower)
  DEAD_TOKEN_HARNESS_HOST_MEMORY=system leave glibc's allocator alone
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from core.device import resolve_device
from core.fast import host_memory, native, onednn
from core.fast.gemm import MATMULS
from core.fast.kernels import CudaGraphKernels, FastKernels
from core.fast.lm_head import LOGITS_MATMULS
from core.step import REFERENCE, StepKernels

log = logging.getLogger(__name__)

KERNEL_CHOICES = ("auto", "reference")
LOSS_ENV = "DEAD_TOKEN_HARNESS_LOSS"  # "reference": the Trainer's loss expression on every device
NATIVE_ENV = "DEAD_TOKEN_HARNESS_NATIVE"  # "off": no C kernels
HOST_MEMORY_ENV = "DEAD_TOKEN_HARNESS_HOST_MEMORY"  # "system": leave glibc's defaults alone


@dataclass
class KernelConfig:
    kernels: str = "auto"  # auto = the fastest kernels that give the reference's bits; reference = torch's own
    logits_matmul: str = "bf16"  # bf16 = the Trainer's head (bit-identical); fp32 = faster on AVX2 CPUs (lm_head.py)
    matmul: str = "bf16"  # bf16 = the Trainer's kernels; fp32 = every GEMM, head included, in float32 (gemm.py)
    cuda_graph: bool = False  # CUDA: forward + backward replayed as one CUDA graph (step_graph.py); else ignored


def _env(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name, default).lower()
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}.")
    return value


def kernel_environment() -> dict[str, str]:
    """What this machine's torch does that changes a trajectory's bits (part of its `environment`)."""
    return {"cpu_bf16_gemm": "onednn" if onednn.bf16_gemms_on_onednn() else "fallback"}


def choose_kernels(cfg: KernelConfig | None = None, device: torch.device | str = "auto") -> StepKernels:
    """The step kernels for `cfg` on `device`, prepared (compiled, probed, allocator set) now."""
    cfg = cfg or KernelConfig()
    for key, allowed in (("kernels", KERNEL_CHOICES), ("matmul", MATMULS), ("logits_matmul", LOGITS_MATMULS)):
        if getattr(cfg, key) not in allowed:
            raise ValueError(f"Unknown train.{key} {getattr(cfg, key)!r}. Available: {', '.join(allowed)}.")
    device = resolve_device(device) if isinstance(device, str) else device
    if cfg.kernels == "reference":
        asked = [f"{k} = {getattr(cfg, k)!r}" for k in ("matmul", "logits_matmul") if getattr(cfg, k) != "bf16"]
        asked += ["cuda_graph = true"] if cfg.cuda_graph else []
        if asked:
            raise ValueError(f"train.kernels = 'reference' runs torch's own kernels; train.{asked[0]} needs "
                             f"train.kernels = 'auto'.")
        return REFERENCE
    blockwise_loss = _env(LOSS_ENV, ("blockwise", "reference"), "blockwise") == "blockwise"
    use_native = os.environ.get(NATIVE_ENV, "").lower() not in ("off", "0", "false", "no")
    keep_host_memory = _env(HOST_MEMORY_ENV, ("reuse", "system"), "reuse") == "reuse"
    if device.type == "cpu":
        keep_host_memory = keep_host_memory and host_memory.reuse_freed_host_memory()
        use_native = use_native and native.kernel() is not None  # built and checked (fallback CPUs only)
        gemms = FastKernels.cpu_gemm_path(cfg.matmul, use_native)
    else:
        keep_host_memory, use_native, gemms = False, False, "fp32" if cfg.matmul == "fp32" else "torch"
    if cfg.cuda_graph and device.type != "cuda":
        log.warning("train.cuda_graph is ignored on %s: CUDA graphs need a CUDA device; the step runs eagerly.",
                    device)
    kind = CudaGraphKernels if cfg.cuda_graph and device.type == "cuda" else FastKernels
    return kind(matmul=cfg.matmul, logits_matmul=cfg.logits_matmul, blockwise_loss=blockwise_loss,
                native=use_native, host_memory=keep_host_memory, gemms=gemms)
