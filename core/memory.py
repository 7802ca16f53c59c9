"""Will one training step fit in memory? An estimate checked before a run starts, and the
test for an allocation failure once it runs.

`step_bytes_estimate` counts, per token of the batch, what a CPU step with the blockwise
loss (core/fast) was measured to hold at its peak, rounded down: the logits (B, T, V) bf16
and their gradient (4 bytes per vocab entry), ~64 bytes per hidden unit and layer (the
activations kept for backward), and the attention scores (4 bytes per head, key and layer).
Measured peaks (peak RSS minus RSS before one step, torch 2.13 CPU): 5.3 bytes per token
and vocab entry at the Flannel shape (V 10,000, T 128, dim 64, 2 layers), 18 at V 800, T 32,
where the estimate gives 4.3 and 15; the reference loss and CUDA hold more. So a run refused
by it could not have fitted; one that passes may still fail, and `is_out_of_memory`
recognises that failure so the caller can say the same thing.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

import torch

log = logging.getLogger(__name__)

LOGIT_BYTES = 4  # per token and vocab entry: bf16 logits + their bf16 gradient
HIDDEN_BYTES = 64  # per token, hidden unit and layer: activations kept for backward
SCORE_BYTES = 4  # per token, head, key position and layer: attention scores


def step_bytes_estimate(batch_windows: int, seq_len: int, vocab_size: int, dim: int, layers: int, heads: int) -> int:
    """Bytes one step needs at least for a batch of `batch_windows` windows of `seq_len` tokens."""
    per_token = vocab_size * LOGIT_BYTES + dim * layers * HIDDEN_BYTES + heads * seq_len * layers * SCORE_BYTES
    return batch_windows * seq_len * per_token


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_headroom() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None
    return max(0, soft - used)


def _cgroup_headroom() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        return None


def available_bytes(device: torch.device) -> int | None:
    """What this process may still allocate on `device`, or None where that cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    known = [b for b in (_meminfo_available(), _address_space_headroom(), _cgroup_headroom()) if b is not None]
    return min(known) if known else None


def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failed: torch's CPU or CUDA allocator, or Python's own."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
