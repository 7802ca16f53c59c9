"""CUDA frames off the training stream's critical path: the recorder's CUDA stager.

The recorder (core/recorder.py) fills a bounded pool of `Slot`s, one frame's host buffers
each; its default `HostStager` copies a frame in at once, which on CUDA waits for the device.
`CudaStager` instead takes a device snapshot on the training stream (microseconds), then
copies it to pinned host memory with non-blocking copies on a side stream; the training
stream never waits for them, the writer thread does (slot.ready). The 0-d device scalars
(loss, grad_norm) travel the same way instead of costing a sync each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from core.recorder import HostStager, Slot

DEVICE_SCALARS = ("loss", "grad_norm")  # scalars a step hands over as 0-d device tensors


@dataclass
class CudaSlot(Slot):
    staging: dict[str, torch.Tensor] = field(default_factory=dict)  # device snapshots of the frame
    scalar_staging: torch.Tensor | None = None  # (2,) float32 loss, grad_norm on the device
    scalar_host: torch.Tensor | None = None  # (2,) float32 pinned, their host copies
    ready: torch.cuda.Event | None = None  # set when the host copies are done


class CudaStager(HostStager):
    """Device snapshot on the training stream, pinned host copies on a side stream."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def new_slot(self, shapes: dict[str, tuple[int, ...]]) -> CudaSlot:
        slot = CudaSlot({n: torch.empty(shape, dtype=torch.bfloat16, pin_memory=True) for n, shape in shapes.items()})
        slot.staging = {n: torch.empty_like(b, device=self.device) for n, b in slot.buffers.items()}
        slot.scalar_staging = torch.empty(len(DEVICE_SCALARS), dtype=torch.float32, device=self.device)
        slot.scalar_host = torch.empty(len(DEVICE_SCALARS), dtype=torch.float32, pin_memory=True)
        return slot

    def stage(self, slot: CudaSlot, tensors: dict[str, torch.Tensor]) -> None:
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

    def wait(self, slot: CudaSlot) -> None:
        slot.ready.synchronize()


def frame_stager(device: torch.device | str) -> HostStager:
    """The stager for frames whose tensors live on `device` (the recorder's `stager=`)."""
    device = torch.device(device)
    return CudaStager(device) if device.type == "cuda" else HostStager()
