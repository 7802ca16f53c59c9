"""Incremental HDF5 trajectory writer: frames in, HDF5 out, every recorded step bit-exact.

The file layout is core/format.py's. The training thread hands a frame to `append`, which
copies it into one of a bounded pool of host buffers (a `Slot`) and returns; a
background thread writes each tensor as one raw chunk and flushes every few frames or
seconds, advancing `frames_complete` only past flushed frames. When every buffer is
waiting to be written the training thread waits (backpressure): memory stays flat however
long the run. The file is in SWMR mode while written: readers may watch a live run.

Beside the writer, not in it: a new file's datasets and attributes (core/layout.py), the
disk-space guards and early writeback (core/disk.py),
reopening an unfinished file to resume it (core/reopen.py), checkpoints
(core/checkpoint.py), and CUDA frames copied on a side stream (core/fast/staging.py, a
stager handed to the writer).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import torch

from core.bf16 import to_bits
from core.disk import (Ballast, DiskFullError, RecorderError, Writeback, check_destination, check_free_space,
                       new_file)
from core.encoding import COMPRESSIONS, DeltaEncoder, dataset_path, is_delta_coded
from core.format import SCALARS, frame_bytes, stored_tensors
from core.layout import create_layout
from core.token_tables import TokenTables

log = logging.getLogger(__name__)

__all__ = ["DiskFullError", "HostStager", "RecordConfig", "RecorderError", "Slot", "TrajectoryWriter"]
FRAME_MARGIN_MB = 1.0  # beyond a frame's bytes, free space its metadata may need (closing has the ballast)


@dataclass
class RecordConfig:
    every: int = 1  # record a frame every N optimizer steps (and always step 0 and the last)
    tensors: list[str] = field(default_factory=lambda: ["W"])  # step, loss, lr, grad_norm always
    flush_every_frames: int = 10  # flush (and advance frames_complete) after this many frames...
    flush_every_seconds: float = 5.0  # ...or this many seconds, whichever comes first
    fsync: bool = False  # also fsync on flush (survives power loss, slower)
    queue_frames: int = 4  # host buffers in flight between training and the writer thread
    disk_reserve_mb: float = 16.0  # held beside the file from the start, given back to close it on a full disk
    checkpoint_every: int = 100  # resumable checkpoint every N steps (core/checkpoint.py); 0 = none
    compression: str = "none"  # none | zstd | delta-zstd (core/encoding.py); lossless, opt-in
    writeback_every_mb: float = 16.0  # start the disk writing each N MB written (Linux); 0 = leave it to the OS
    keyframe_every: int = 64  # delta-zstd: every Nth frame stored whole (random access cost)

    def validate(self) -> None:
        for key in ("every", "queue_frames", "keyframe_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"record {key} must be >= 1, got {getattr(self, key)}.")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}.")


@dataclass
class Slot:
    """One frame's host buffers, reused round-robin."""

    buffers: dict[str, torch.Tensor]  # host, (V, D) or (V,) bf16: what the writer thread writes
    step: int = 0
    scalars: dict[str, float | torch.Tensor] = field(default_factory=dict)  # loss, lr, grad_norm


class HostStager:
    """Copies a frame into its slot on the training thread; the slot is ready at once. CPU
    tensors through numpy (one thread, no OpenMP workers spinning against the writer);
    others with a blocking copy (a non-blocking read from MPS can be stale)."""

    def new_slot(self, shapes: dict[str, tuple[int, ...]]) -> Slot:
        return Slot({name: torch.empty(shape, dtype=torch.bfloat16) for name, shape in shapes.items()})

    def stage(self, slot: Slot, tensors: dict[str, torch.Tensor]) -> None:
        for name, buffer in slot.buffers.items():
            src = tensors[name].detach()
            if src.device.type == "cpu":
                np.copyto(to_bits(buffer), to_bits(src))
            else:
                buffer.copy_(src)

    def wait(self, slot: Slot) -> None:
        """Block until the slot's host buffers hold the frame (writer thread)."""


class _Sync(threading.Event):
    """A sync() request in the writer's queue: set once every earlier frame is flushed."""

    def __init__(self, fsync: bool):
        super().__init__()
        self.fsync = fsync


class TrajectoryWriter:
    """Streams frames of a training run into one HDF5 file. Use as a context manager.

    `stager` moves each frame into host buffers (default: `HostStager`, a copy on the calling thread).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        vocab_size: int,
        dim: int,
        tied: bool,
        config: RecordConfig | None = None,
        metadata: dict[str, Any] | None = None,
        tokens: TokenTables | Callable[[], TokenTables] | None = None,
        expected_frames: int | None = None,
        stager: HostStager | None = None,
        overwrite: bool = False,
        other_bytes: int = 0,
    ):
        """`other_bytes`: what the caller writes beside the file (a checkpoint), for the up-front check.
        `tokens` may be a function that makes the token tables: it runs after that check, so a run
        that cannot fit is refused before a long pass over its batches."""
        self._configure(path, config, vocab_size, dim, tied, stager or HostStager())
        self.check_fits(self.path, self.config, vocab_size, dim, tied, expected_frames, overwrite, other_bytes)
        tokens = tokens() if callable(tokens) else tokens
        self._ballast, self._created = Ballast(self.path, self.config.disk_reserve_mb), True  # created: see close
        cfg = self.config
        attrs = {"record_every": cfg.every, "tensors": list(cfg.tensors), **(metadata or {})}
        file = new_file(self.path, lambda f: create_layout(f, self.paths, vocab_size, dim, tied, cfg.compression,
                                                           cfg.keyframe_every, attrs, tokens), self._ballast)
        try:
            self._start(file, frames=0)
        except BaseException:
            self._abandon(file)
            self.path.unlink(missing_ok=True)  # it holds no frame
            raise

    @classmethod
    def attach(cls, file: h5py.File, *, frames: int, config: RecordConfig, stager: HostStager,
               delta: DeltaEncoder | None = None) -> TrajectoryWriter:
        """A writer that appends to an open trajectory `file` (mode "a") holding `frames` frames
        (core/reopen.py). `delta`: the encoder state of a delta-zstd file's last frame."""
        attrs = file.attrs
        self = cls.__new__(cls)
        self._configure(file.filename, config, int(attrs["vocab_size"]), int(attrs["dim"]), bool(attrs["tied"]),
                        stager)
        self._ballast, self._created = Ballast(self.path, config.disk_reserve_mb), False
        if delta is not None:
            self._delta = delta
        try:
            self._start(file, frames=frames)
        except BaseException:
            self._abandon(file)
            raise
        return self

    def _abandon(self, file: h5py.File | None) -> None:
        """After a failed start: give the reserve back first (HDF5 may need it to close), then close."""
        self._ballast.release()
        try:
            if file is not None:
                file.close()
        except Exception as exc:
            log.debug("closing %s after a failed start: %s", self.path, exc)

    @classmethod
    def check_fits(cls, path: Path, config: RecordConfig, vocab_size: int, dim: int, tied: bool,
                   expected_frames: int | None, overwrite: bool, other_bytes: int) -> None:
        """Refuse, before anything is written, a file that cannot be made or cannot fit (core/disk.py)."""
        nbytes = frame_bytes(list(cls.stored_names(config, tied)), vocab_size, dim)
        reserve = int(config.disk_reserve_mb * 2**20)
        check_destination(Path(path), nbytes, expected_frames, overwrite, reserve + other_bytes)

    @staticmethod
    def stored_names(config: RecordConfig, tied: bool) -> dict[str, str]:
        """The frame tensors a run with `config` stores, each with its dataset's path in the file."""
        return {name: dataset_path(name, config.compression) for name in stored_tensors(list(config.tensors), tied)}

    # ---------------------------------------------------------------- setup
    def _configure(self, path, config: RecordConfig | None, vocab_size: int, dim: int, tied: bool,
                   stager: HostStager) -> None:
        self.path = Path(path)
        self.config = config or RecordConfig()
        self.config.validate()
        self.vocab, self.dim, self.tied = vocab_size, dim, tied
        self.paths = self.stored_names(self.config, tied)
        self.names = list(self.paths)
        self._delta = DeltaEncoder(self.config.keyframe_every) if self.config.compression == "delta-zstd" else None
        self.frame_bytes = frame_bytes(self.names, vocab_size, dim)
        self.stager = stager

    def _start(self, file: h5py.File, frames: int) -> None:
        """Enter SWMR mode and start the writer thread, `frames` frames already on disk."""
        self.file = file
        self._datasets = {name: file[self.paths.get(name, name)] for name in self.names + list(SCALARS)}
        self._pending_scalars: list[tuple] = []
        file.swmr_mode = True
        file.flush()

        self.frames_written = frames  # frames handed to HDF5 by the writer thread
        self.frames_complete = frames  # frames flushed and named by the frames_complete attribute
        self.bytes_written = 0
        self._error: BaseException | None = None
        self._closed = False
        shapes = {n: (self.vocab,) if n == "logits" else (self.vocab, self.dim) for n in self.names}
        self._free: queue.Queue[Slot] = queue.Queue()
        for _ in range(self.config.queue_frames):
            self._free.put(self.stager.new_slot(shapes))
        self._todo: queue.Queue[Slot | _Sync | None] = queue.Queue()
        self._thread = threading.Thread(target=self._write_loop, name=f"recorder:{self.path.name}", daemon=True)
        self._thread.start()
        self._writeback = (Writeback(self.path, self.config.writeback_every_mb, os.path.getsize(self.path))
                           if Writeback.available(self.config.writeback_every_mb) else None)

    # ---------------------------------------------------------------- training thread
    def should_record(self, step: int, last_step: int) -> bool:
        """Whether optimizer step `step` (0 = initial state) gets a frame."""
        return step == 0 or step % self.config.every == 0 or step == last_step

    def append(self, step: int, tensors: dict[str, torch.Tensor], **scalars: float | torch.Tensor) -> None:
        """Queue one frame. `tensors` maps stored names to (V, D) or (V,) bf16 tensors on any device;
        `scalars` are loss, lr, grad_norm (floats or 0-d device tensors, read by the writer
        thread so the training thread never waits on the device).

        Returns once the tensors are copied (or their copy is queued on the device stream);
        blocks while every host buffer is waiting to be written.
        """
        self._raise_if_failed()
        if self._closed:
            raise RecorderError(f"Trajectory {self.path} is closed.")
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise KeyError(f"Frame for step {step} lacks {', '.join(missing)}.")
        for name in self.names:
            if tensors[name].dtype != torch.bfloat16:
                raise TypeError(f"{name} must be bfloat16, got {tensors[name].dtype}.")
        slot = self._take_slot()
        slot.step = step
        slot.scalars = {k: scalars.get(k, float("nan")) for k in ("loss", "lr", "grad_norm")}
        self.stager.stage(slot, tensors)
        self._todo.put(slot)

    def sync(self, fsync: bool = False) -> int:
        """Block until every queued frame is written and flushed (and fsynced, if asked);
        returns frames_complete.

        After it returns, the file holds exactly the frames appended so far (what a
        checkpoint of the training state at this step must name).
        """
        self._raise_if_failed()
        if self._closed:
            raise RecorderError(f"Trajectory {self.path} is closed.")
        done = _Sync(fsync)
        self._todo.put(done)
        while not done.wait(timeout=0.5):
            if not self._thread.is_alive():
                break
        self._raise_if_failed()
        return self.frames_complete

    def _take_slot(self) -> Slot:
        while True:
            try:
                return self._free.get(timeout=0.5)
            except queue.Empty:
                self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            kind = type(self._error) if isinstance(self._error, RecorderError) else RecorderError
            safe = (f"Frames 0..{self.frames_complete - 1} are complete on disk" if self.frames_complete
                    else "No frame is complete on disk")
            raise kind(f"Writing trajectory {self.path} failed after {self.frames_written} frames: {self._error}. "
                       f"{safe} (attribute frames_complete = {self.frames_complete}).") from self._error

    # ---------------------------------------------------------------- writer thread
    def _write_loop(self) -> None:
        last_flush = time.monotonic()
        unflushed = 0
        while (item := self._todo.get()) is not None:
            try:
                if isinstance(item, _Sync):  # sync(): flush everything written so far
                    if self._error is None:
                        self._flush()
                        if item.fsync:
                            os.fsync(self.file.id.get_vfd_handle())
                        unflushed, last_flush = 0, time.monotonic()
                elif self._error is None:
                    self._write_frame(item)
                    if self._writeback is not None:
                        self._writeback.wrote(self.file.id.get_vfd_handle())
                    unflushed += 1
                    now = time.monotonic()
                    due = now - last_flush >= self.config.flush_every_seconds
                    if unflushed >= self.config.flush_every_frames or due:
                        self._flush()
                        unflushed, last_flush = 0, now
            except BaseException as exc:  # keep draining so the training thread never deadlocks
                log.error("Writing %s failed: %s", self.path, exc)
                self._error = exc
            finally:
                if isinstance(item, _Sync):
                    item.set()
                else:
                    self._free.put(item)

    def _write_frame(self, slot: Slot) -> None:
        """Write one frame: each tensor is exactly one chunk, written as raw bytes."""
        self.stager.wait(slot)
        n = self.frames_written
        check_free_space(self.path, self.frame_bytes, FRAME_MARGIN_MB)
        for name in self.names:
            dset = self._datasets[name]
            dset.resize(n + 1, axis=0)
            bits = to_bits(slot.buffers[name])
            if self.config.compression == "none":
                dset.id.write_direct_chunk((n,) + (0,) * bits.ndim, bits)
            else:  # HDF5's filters (shuffle, zstd) compress the chunk
                stored = self._delta.encode(name, n, bits) if is_delta_coded(name, self.config.compression) else bits
                fspace = dset.id.get_space()
                fspace.select_hyperslab((n,) + (0,) * bits.ndim, (1,) + bits.shape)
                dset.id.write(h5py.h5s.create_simple((1,) + bits.shape), fspace, stored, mtype=dset.id.get_type())
            self.bytes_written += bits.nbytes
        self._pending_scalars.append((slot.step, *(float(slot.scalars[k]) for k in ("loss", "lr", "grad_norm"))))
        self.frames_written = n + 1

    def _write_scalars(self) -> None:
        """Append the scalars of the frames written since the last flush, in one block."""
        if not self._pending_scalars:
            return
        start = self.frames_written - len(self._pending_scalars)
        for name, values in zip(SCALARS, zip(*self._pending_scalars)):
            dset = self._datasets[name]
            dset.resize(self.frames_written, axis=0)
            dset[start:] = np.asarray(values, dtype=SCALARS[name])
        self._pending_scalars.clear()

    def _flush(self) -> None:
        """Make every written frame durable, then (and only then) advance frames_complete."""
        self._write_scalars()
        self.file.flush()
        if self.config.fsync:
            os.fsync(self.file.id.get_vfd_handle())
        self.file.attrs["frames_complete"] = self.frames_written
        self.file.flush()
        self.frames_complete = self.frames_written

    # ---------------------------------------------------------------- closing
    def close(self) -> None:
        """Write every queued frame, flush, mark the file closed cleanly. Idempotent.

        After a failed write (a full disk, say) the frames named by frames_complete stay
        readable and the failure is raised as a RecorderError.
        """
        if self._closed:
            return
        self._closed = True
        self._todo.put(None)
        self._thread.join()
        if self._writeback is not None:
            self._writeback.stop()
        self._ballast.release()  # the space to flush and close in, whatever happened
        try:
            if self._error is None or isinstance(self._error, DiskFullError):
                self._flush()  # a disk-full stop left HDF5 intact: keep every written frame
            if self._error is None:
                self.file.attrs["closed_cleanly"] = True
                self.file.flush()
        except Exception as exc:
            self._error = exc
        finally:
            try:
                self.file.close()
            except Exception as exc:  # HDF5 flushes again on close; after a full disk that fails too
                log.debug("closing %s after a failure: %s", self.path, exc)
        if self._error is not None and self._created and self.frames_complete == 0:
            self.path.unlink(missing_ok=True)  # a failed run that recorded nothing leaves nothing
        self._raise_if_failed()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
