"""Pick the torch device a run uses: cuda > mps > cpu, or an explicit override."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device named by `name` ("auto", "cpu", "cuda", "cuda:1", "mps").

    "auto" prefers CUDA, then Apple MPS, then CPU. A device that does not exist on this
    machine is an error, never a silent fallback: a run that asked for a GPU must not
    quietly produce a CPU trajectory.
    """
    kind = name.split(":", 1)[0]
    if kind not in DEVICE_KINDS:
        raise ValueError(f"Unknown device {name!r}. Available: {', '.join(DEVICE_KINDS)} (or 'cuda:N').")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"Device {name!r} was requested but CUDA is not available on this machine.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"Device {name!r} was requested but Apple MPS is not available on this machine.")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"Device {name!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist.")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on `device` (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
