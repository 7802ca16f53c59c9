"""How a frame's tensors reach the recorder's host buffers, off the training thread's critical path.

The recorder (core/recorder.py) keeps a bounded pool of `Slot`s, one frame's host buffers
each. A stager fills a slot on the training thread and says when the writer thread may
read it:
  HostStager   CPU and MPS tensors: copied at once (CPU through numpy: one thread, no
               OpenMP workers spinning against the writer; MPS blocking, as a non-blocking
               read can be stale).
  CudaStager   CUDA: a device snapshot on the training stream (microseconds), then pinned
               non-blocking copies on a side stream; the training stream never waits for
               them, the writer thread does (slot.ready). The 0-d device scalars (loss,
               grad_norm) travel the same way instead of costing a sync each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from core.bf16 import to_bits

DEVICE_SCALARS = ("loss", "grad_norm")  # scalars a step hands over as 0-d device tensors


@dataclass
class Slot:
    """One frame's host buffers, reused round-robin."""

    buffers: dict[str, torch.Tensor]  # host, (V, D) or (V,) bf16: what the writer thread writes
    step: int = 0
    scalars: dict[str, float | torch.Tensor] = field(default_factory=dict)  # loss, lr, grad_norm
    staging: dict[str, torch.Tensor] = field(default_factory=dict)  # CUDA: device snapshots of the frame
    scalar_staging: torch.Tensor | None = None  # CUDA: (2,) float32 loss, grad_norm on the device
    scalar_host: torch.Tensor | None = None  # CUDA: (2,) float32 pinned, their host copies
    ready: torch.cuda.Event | None = None  # CUDA: set when the host copies are done


def host_buffers(shapes: dict[str, tuple[int, ...]], pinned: bool = False) -> dict[str, torch.Tensor]:
    return {name: torch.empty(shape, dtype=torch.bfloat16, pin_memory=pinned) for name, shape in shapes.items()}


class HostStager:
    """Copies a frame into its slot on the calling thread; the slot is ready at once."""

    def new_slot(self, shapes: dict[str, tuple[int, ...]]) -> Slot:
        return Slot(host_buffers(shapes))

    def stage(self, slot: Slot, tensors: dict[str, torch.Tensor]) -> None:
        for name, buffer in slot.buffers.items():
            src = tensors[name].detach()
            if src.device.type == "cpu":
                np.copyto(to_bits(buffer), to_bits(src))
            else:
                buffer.copy_(src)

    def wait(self, slot: Slot) -> None:
        """Block until the slot's host buffers hold the frame (writer thread)."""


class CudaStager(HostStager):
    """Device snapshot on the training stream, pinned host copies on a side stream."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def new_slot(self, shapes: dict[str, tuple[int, ...]]) -> Slot:
        slot = Slot(host_buffers(shapes, pinned=True))
        slot.staging = {n: torch.empty_like(b, device=self.device) for n, b in slot.buffers.items()}
        slot.scalar_staging = torch.empty(len(DEVICE_SCALARS), dtype=torch.float32, device=self.device)
        slot.scalar_host = torch.empty(len(DEVICE_SCALARS), dtype=torch.float32, pin_memory=True)
        return slot

    def stage(self, slot: Slot, tensors: dict[str, torch.Tensor]) -> None:
        for name, snapshot in slot.staging.items():
            snapshot.copy_(tensors[name].detach())
        for i, key in enumerate(DEVICE_SCALARS):
            value = slot.scalars[key]
            if isinstance(value, torch.Tensor) and value.device.type != "cpu":
                slot.scalar_staging[i].copy_(value)
                slot.scalars[key] = slot.scalar_host[i]  # read by the writer thread once slot.ready
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            for name, buffer in slot.buffers.items():
                buffer.copy_(slot.staging[name], non_blocking=True)
            slot.scalar_host.copy_(slot.scalar_staging, non_blocking=True)
            slot.ready = torch.cuda.Event()
            slot.ready.record(self.stream)

    def wait(self, slot: Slot) -> None:
        slot.ready.synchronize()


def stager_for(device: torch.device | str) -> HostStager:
    device = torch.device(device)
    return CudaStager(device) if device.type == "cuda" else HostStager()
