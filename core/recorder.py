"""Incremental HDF5 trajectory writer: every recorded step streamed to disk, bit-exact.

File layout (format 1), one file per run:
  /E, /W, /grad_E, /grad_W, /exp_avg_E, /exp_avg_W, /exp_avg_sq_E, /exp_avg_sq_W
        (n_frames, vocab, dim) bf16, one frame per chunk; only the recorded ones exist.
        A tied run stores each shared tensor once under its W name; the E name is an
        HDF5 hard link to the same dataset, so any reader sees both names.
  /logits     (n_frames, vocab) bf16: sequence 0, last position of the step's batch
  /step       (n_frames,) int64: optimizer steps done when the frame was taken
  /loss       (n_frames,) float32: the step's loss (NaN in frame 0)
  /lr         (n_frames,) float64: the LR the step used (NaN in frame 0)
  /grad_norm  (n_frames,) float32: pre-clip global grad norm (NaN in frame 0)
  /tokens/dead_mask (vocab,) bool, /tokens/counts (vocab,) int64, /tokens/strings (vocab,) str,
  /tokens/input_counts, /tokens/first_input_step (vocab,) int64 (when the run's batches are known)
  attributes: format_version, frames_complete, record_every, tied, vocab_size, dim,
        tensors, compression, keyframe_every, plus the caller's metadata (dicts and
        lists as JSON strings).
  Opt-in compression (core/encoding.py): `zstd` keeps this layout with compressed
  chunks; `delta-zstd` stores E, W and the moments XOR-coded under /delta/.

Frame 0 is the initial state (gradients and moments zero); frame k is the state after
the k-th recorded optimizer step. `frames_complete` only ever names frames that are
fully flushed, so a killed run leaves a file whose first `frames_complete` frames are
exact. The file is in SWMR mode while written: readers may watch a live run.
`TrajectoryWriter.resume` reopens an unfinished file, keeps its first N frames and
appends after them (a resumed run, core/checkpoint.py).

Speed: the training thread only copies tensors into a bounded pool of host buffers
and returns (on CUDA: a device snapshot, then pinned non-blocking copies on a side
stream); a background thread writes and flushes.
When the pool is empty the training thread waits (backpressure): memory stays flat
however long the run.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from core import onednn
from core.bf16 import hdf5_bfloat16, to_bits
from core.encoding import COMPRESSIONS, DeltaEncoder, dataset_path, is_delta_coded, read_decoded, set_filters
from core.h5clear import clear_status_flags
from core.token_tables import TokenTables

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PARAM_TENSORS = ("E", "W", "grad_E", "grad_W", "exp_avg_E", "exp_avg_W", "exp_avg_sq_E", "exp_avg_sq_W")
SCALARS = {"step": np.int64, "loss": np.float32, "lr": np.float64, "grad_norm": np.float32}
DEVICE_SCALARS = ("loss", "grad_norm")  # scalars a step hands over as 0-d device tensors
RECORDABLE = PARAM_TENSORS + ("logits",) + tuple(SCALARS)


class RecorderError(RuntimeError):
    """Writing a trajectory failed; the message says which frames are safe on disk."""


class DiskFullError(RecorderError):
    """The disk is about to fill: recording stopped before HDF5 ran out of space."""


@dataclass
class RecordConfig:
    every: int = 1  # record a frame every N optimizer steps (and always step 0 and the last)
    tensors: list[str] = field(default_factory=lambda: ["W"])  # step, loss, lr, grad_norm always
    flush_every_frames: int = 10  # flush (and advance frames_complete) after this many frames...
    flush_every_seconds: float = 5.0  # ...or this many seconds, whichever comes first
    fsync: bool = False  # also fsync on flush (survives power loss, slower)
    queue_frames: int = 4  # host buffers in flight between training and the writer thread
    disk_reserve_mb: float = 16.0  # stop (cleanly) when less than a frame plus this is free
    checkpoint_every: int = 100  # resumable checkpoint every N steps (core/checkpoint.py); 0 = none
    compression: str = "none"  # none | zstd | delta-zstd (core/encoding.py); lossless, opt-in
    writeback_every_mb: float = 16.0  # start the disk writing each N MB written (Linux); 0 = leave it to the OS
    keyframe_every: int = 64  # delta-zstd: every Nth frame stored whole (random access cost)


def tied_name(name: str) -> str:
    """The dataset that stores `name` in a tied run (E-side names live under W names)."""
    return name[:-1] + "W" if name in PARAM_TENSORS and name.endswith("E") else name


def stored_tensors(tensors: list[str], tied: bool) -> list[str]:
    """The frame datasets a run writes: recorded names, deduplicated for tied runs."""
    unknown = [t for t in tensors if t not in RECORDABLE]
    if unknown:
        raise ValueError(f"Unknown tensor {unknown[0]!r}. Available: {', '.join(RECORDABLE)}.")
    names = [t for t in tensors if t not in SCALARS]
    if tied:
        names = [tied_name(t) for t in names]
    return list(dict.fromkeys(names))


def environment() -> dict[str, str]:
    """Versions of everything that can change a trajectory's bits."""
    import tokenizers
    import transformers

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),  # on a CPU the thread count changes reduction order, so bits
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector kernels torch picked (AVX2, AVX512, ...)
        "cpu_bf16_gemm": "onednn" if onednn.bf16_gemms_on_onednn() else "fallback",  # which kernels add bf16 GEMMs
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
    }


@dataclass
class _Slot:
    """One frame's host buffers, reused round-robin."""

    buffers: dict[str, torch.Tensor]  # host: what the writer thread writes
    staging: dict[str, torch.Tensor] = field(default_factory=dict)  # CUDA: device snapshots of the frame
    scalar_staging: torch.Tensor | None = None  # CUDA: (2,) float32 loss, grad_norm on the device
    scalar_host: torch.Tensor | None = None  # CUDA: (2,) float32 pinned, their host copies
    ready: torch.cuda.Event | None = None
    step: int = 0
    scalars: dict[str, float | torch.Tensor] = field(default_factory=dict)


class _Sync(threading.Event):
    """A sync() request in the writer's queue: set once every earlier frame is flushed."""

    def __init__(self, fsync: bool):
        super().__init__()
        self.fsync = fsync


def _frame_bytes(names: list[str], vocab: int, dim: int) -> int:
    return sum(2 * vocab * (1 if n == "logits" else dim) for n in names)


class TrajectoryWriter:
    """Streams frames of a training run into one HDF5 file. Use as a context manager."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        vocab_size: int,
        dim: int,
        tied: bool,
        config: RecordConfig | None = None,
        metadata: dict[str, Any] | None = None,
        tokens: TokenTables | None = None,
        expected_frames: int | None = None,
        device: torch.device | str = "cpu",
        overwrite: bool = False,
    ):
        self._configure(path, config, vocab_size, dim, tied, device)
        self._check_destination(expected_frames, overwrite)

        self.file = h5py.File(self.path, "w", libver="latest")
        self._create_layout(metadata or {}, tokens)
        self._start(frames=0)

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike,
        *,
        frames: int,
        config: RecordConfig | None = None,
        metadata: dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
    ) -> TrajectoryWriter:
        """Reopen an unfinished trajectory to append after its first `frames` frames.

        Frames after those are discarded (every frame dataset shrinks to `frames` along
        axis 0; frames_complete = frames), so the caller continues from the training
        state those frames end at (a checkpoint). The file's own layout wins: `config`
        must record the same tensors every the same number of steps. A file whose writer
        was killed has its HDF5 consistency flags cleared first (core/h5clear.py).
        `metadata` attributes are set (or replaced); nothing else in the file changes.
        """
        path = Path(path)
        config = config or RecordConfig()
        if not path.is_file():
            raise FileNotFoundError(f"Cannot resume trajectory {path}: no such file.")
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            attrs = dict(f.attrs)
        if attrs.get("format_version") != FORMAT_VERSION:
            raise RecorderError(f"Cannot resume trajectory {path}: it has format_version "
                                f"{attrs.get('format_version')}; this writer writes {FORMAT_VERSION}.")
        recorded = (int(attrs["record_every"]), json.loads(attrs["tensors"]))
        if recorded != (config.every, list(config.tensors)):
            raise RecorderError(f"Cannot resume trajectory {path}: it records {recorded[1]} every {recorded[0]} "
                                f"step(s), not {list(config.tensors)} every {config.every}.")
        stored = (str(attrs.get("compression", "none")), int(attrs.get("keyframe_every", config.keyframe_every)))
        if stored != (config.compression, config.keyframe_every):
            raise RecorderError(f"Cannot resume trajectory {path}: it is stored with compression {stored[0]!r} "
                                f"(keyframe_every {stored[1]}), not {config.compression!r} "
                                f"(keyframe_every {config.keyframe_every}).")
        if not 0 <= frames <= int(attrs["frames_complete"]):
            raise RecorderError(f"Cannot resume trajectory {path} after frame {frames}: only "
                                f"{int(attrs['frames_complete'])} frames are complete on disk.")
        clear_status_flags(path)
        self = cls.__new__(cls)
        self._configure(path, config, int(attrs["vocab_size"]), int(attrs["dim"]), bool(attrs["tied"]), device)
        self.file = h5py.File(path, "a", libver="latest")
        try:
            # frames_complete first: a kill while shrinking leaves a file that still reads right.
            self.file.attrs["frames_complete"] = frames
            self.file.attrs["closed_cleanly"] = False
            self.file.flush()
            for name in self.names + list(SCALARS):
                self.file[self._paths.get(name, name)].resize(frames, axis=0)  # chunks past the new extent are freed
            if self._delta is not None and frames:
                for name in self.names:
                    if is_delta_coded(name, config.compression):
                        last = read_decoded(self.file[self._paths[name]], frames - 1, frames, config.keyframe_every)
                        self._delta.continue_from(name, last[0])
            for key, value in (metadata or {}).items():
                self.file.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value
            self._start(frames=frames)
        except BaseException:
            self.file.close()
            raise
        log.info("resumed %s after frame %d", path, frames)
        return self

    # ---------------------------------------------------------------- setup
    def _configure(self, path, config, vocab_size: int, dim: int, tied: bool, device) -> None:
        self.path = Path(path)
        self.config = config or RecordConfig()
        if self.config.every < 1:
            raise ValueError(f"record every must be >= 1, got {self.config.every}.")
        if self.config.queue_frames < 1:
            raise ValueError(f"queue_frames must be >= 1, got {self.config.queue_frames}.")
        if self.config.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.config.compression!r}.")
        if self.config.keyframe_every < 1:
            raise ValueError(f"keyframe_every must be >= 1, got {self.config.keyframe_every}.")
        self.vocab, self.dim, self.tied = vocab_size, dim, tied
        self.names = stored_tensors(list(self.config.tensors), tied)
        self._paths = {name: dataset_path(name, self.config.compression) for name in self.names}
        self._delta = DeltaEncoder(self.config.keyframe_every) if self.config.compression == "delta-zstd" else None
        self._frame_bytes = _frame_bytes(self.names, vocab_size, dim)
        self.device = torch.device(device)
        self._bf16 = hdf5_bfloat16()

    def _start(self, frames: int) -> None:
        """Enter SWMR mode and start the writer thread, `frames` frames already on disk."""
        self._datasets = {name: self.file[self._paths.get(name, name)] for name in self.names + list(SCALARS)}
        self._pending_scalars: list[tuple] = []
        self.file.swmr_mode = True
        self.file.flush()

        self.frames_written = frames  # frames handed to HDF5 by the writer thread
        self._writeback_from = os.path.getsize(self.path)  # bytes of the file already handed to the disk
        self.frames_complete = frames  # frames flushed and named by the frames_complete attribute
        self.bytes_written = 0
        self._error: BaseException | None = None
        self._closed = False
        cuda = self.device.type == "cuda"
        self._copy_stream = torch.cuda.Stream(self.device) if cuda else None
        self._free: queue.Queue[_Slot] = queue.Queue()
        for _ in range(self.config.queue_frames):
            slot = _Slot(self._host_buffers(pinned=cuda))
            if cuda:
                slot.staging = {n: torch.empty_like(b, device=self.device) for n, b in slot.buffers.items()}
                slot.scalar_staging = torch.empty(len(DEVICE_SCALARS), dtype=torch.float32, device=self.device)
                slot.scalar_host = torch.empty(len(DEVICE_SCALARS), dtype=torch.float32, pin_memory=True)
            self._free.put(slot)
        self._todo: queue.Queue[_Slot | _Sync | None] = queue.Queue()
        self._thread = threading.Thread(target=self._write_loop, name=f"recorder:{self.path.name}", daemon=True)
        self._thread.start()
        self._writeback_thread = None
        if self.config.writeback_every_mb and hasattr(os, "posix_fadvise"):
            self._writeback_ranges: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
            self._writeback_thread = threading.Thread(target=self._writeback_loop, daemon=True,
                                                      name=f"recorder-writeback:{self.path.name}")
            self._writeback_thread.start()

    def _check_destination(self, expected_frames: int | None, overwrite: bool) -> None:
        parent = self.path.parent
        if not parent.is_dir():
            raise RecorderError(f"Cannot write trajectory {self.path}: {parent} is not a directory.")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"Trajectory {self.path} already exists; refusing to overwrite it.")
        if expected_frames:
            need = expected_frames * self._frame_bytes
            free = shutil.disk_usage(parent).free
            if need > free:
                raise RecorderError(
                    f"Trajectory {self.path} needs about {need / 1e9:.2f} GB for {expected_frames} frames "
                    f"but {parent} has {free / 1e9:.2f} GB free. Record fewer tensors, or record every N steps."
                )

    def _create_layout(self, metadata: dict[str, Any], tokens: TokenTables | None) -> None:
        f = self.file
        compression = self.config.compression
        for name in self.names:
            shape = (self.vocab,) if name == "logits" else (self.vocab, self.dim)
            space = h5py.h5s.create_simple((0,) + shape, (h5py.h5s.UNLIMITED,) + shape)
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk((1,) + shape)  # one frame per chunk
            set_filters(dcpl, compression)
            delta = is_delta_coded(name, compression)
            lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
            lcpl.set_create_intermediate_group(True)
            h5py.h5d.create(f.id, self._paths[name].encode(), h5py.h5t.STD_U16LE if delta else self._bf16, space,
                            dcpl=dcpl, lcpl=lcpl)
            if delta:
                f[self._paths[name]].attrs.update(
                    encoding="bfloat16 bits, XOR the previous frame's bits except at keyframes",
                    keyframe_every=self.config.keyframe_every)
        if self.tied:
            for name in self.names:
                for alias in {n for n in PARAM_TENSORS if tied_name(n) == name} - {name}:
                    f[dataset_path(alias, compression)] = f[self._paths[name]]  # hard link: one dataset, two names
        for name, dtype in SCALARS.items():
            f.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(4096,), dtype=dtype)
        if tokens is not None:
            tables = {t.name: getattr(tokens, t.name) for t in fields(tokens) if getattr(tokens, t.name) is not None}
            for name, table in tables.items():
                if len(table) != self.vocab:
                    raise ValueError(f"Token table {name} must have {self.vocab} entries (the vocab size).")
            f.create_dataset("tokens/dead_mask", data=np.asarray(tokens.dead_mask, dtype=bool))
            f.create_dataset("tokens/strings", data=tokens.strings, dtype=h5py.string_dtype("utf-8"))
            for name in tables.keys() - {"dead_mask", "strings"}:  # counts, input_counts, first_input_step
                f.create_dataset(f"tokens/{name}", data=np.asarray(tables[name], dtype=np.int64))
        attrs = {
            "format_version": FORMAT_VERSION,
            "record_every": self.config.every,
            "tied": self.tied,
            "vocab_size": self.vocab,
            "dim": self.dim,
            "tensors": json.dumps(list(self.config.tensors)),
            "compression": compression,
            "keyframe_every": self.config.keyframe_every,
            "environment": json.dumps(environment()),
            **{k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in metadata.items()},
            "frames_complete": 0,
            "closed_cleanly": False,
        }
        for key, value in attrs.items():
            f.attrs[key] = "null" if value is None else value

    def _host_buffers(self, pinned: bool) -> dict[str, torch.Tensor]:
        return {
            name: torch.empty(
                (self.vocab,) if name == "logits" else (self.vocab, self.dim), dtype=torch.bfloat16, pin_memory=pinned
            )
            for name in self.names
        }

    # ---------------------------------------------------------------- training thread
    def should_record(self, step: int, last_step: int) -> bool:
        """Whether optimizer step `step` (0 = initial state) gets a frame."""
        return step == 0 or step % self.config.every == 0 or step == last_step

    def wants(self, name: str) -> bool:
        """Whether a frame needs tensor `name` (E-side names count as W-side in tied runs)."""
        return (tied_name(name) if self.tied else name) in self.names

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
        if self._copy_stream is not None:
            self._copy_through_side_stream(slot, tensors)
        else:
            for name in self.names:
                src = tensors[name].detach()
                if src.device.type == "cpu":  # numpy: one thread, no OpenMP workers spinning against the writer
                    np.copyto(to_bits(slot.buffers[name]), to_bits(src))
                else:  # MPS: a blocking copy (non_blocking reads can be stale)
                    slot.buffers[name].copy_(src)
        self._todo.put(slot)

    def _copy_through_side_stream(self, slot: _Slot, tensors: dict[str, torch.Tensor]) -> None:
        """CUDA: snapshot the frame with device copies on the training stream (microseconds),
        then copy the snapshot to pinned host memory on the recorder's own stream. The
        training stream never waits for the host copies, and may overwrite the tensors at
        once; the writer thread waits for them (slot.ready) before writing. The 0-d device
        scalars (loss, grad_norm) travel the same way instead of costing a sync each."""
        for name in self.names:
            slot.staging[name].copy_(tensors[name].detach())
        for i, key in enumerate(DEVICE_SCALARS):
            value = slot.scalars[key]
            if isinstance(value, torch.Tensor) and value.device.type != "cpu":
                slot.scalar_staging[i].copy_(value)
                slot.scalars[key] = slot.scalar_host[i]  # read by the writer thread once slot.ready
        self._copy_stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._copy_stream):
            for name in self.names:
                slot.buffers[name].copy_(slot.staging[name], non_blocking=True)
            slot.scalar_host.copy_(slot.scalar_staging, non_blocking=True)
            slot.ready = torch.cuda.Event()
            slot.ready.record(self._copy_stream)

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

    def _take_slot(self) -> _Slot:
        while True:
            try:
                return self._free.get(timeout=0.5)
            except queue.Empty:
                self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            kind = type(self._error) if isinstance(self._error, RecorderError) else RecorderError
            raise kind(
                f"Writing trajectory {self.path} failed after {self.frames_written} frames: {self._error}. "
                f"Frames 0..{self.frames_complete - 1} are complete on disk (attribute frames_complete = "
                f"{self.frames_complete})."
            ) from self._error

    # ---------------------------------------------------------------- writer thread
    def _write_loop(self) -> None:
        last_flush = time.monotonic()
        unflushed = 0
        while True:
            slot = self._todo.get()
            if slot is None:
                break
            if isinstance(slot, _Sync):  # sync(): flush everything written so far
                if self._error is None:
                    try:
                        self._flush()
                        if slot.fsync:
                            os.fsync(self.file.id.get_vfd_handle())
                        unflushed, last_flush = 0, time.monotonic()
                    except BaseException as exc:
                        log.error("Flushing %s failed: %s", self.path, exc)
                        self._error = exc
                slot.set()
                continue
            if self._error is None:
                try:
                    self._write_frame(slot)
                    self._start_writeback()
                    unflushed += 1
                    now = time.monotonic()
                    if unflushed >= self.config.flush_every_frames or now - last_flush >= self.config.flush_every_seconds:
                        self._flush()
                        unflushed, last_flush = 0, now
                except BaseException as exc:  # keep draining so the training thread never deadlocks
                    log.error("Writing %s failed: %s", self.path, exc)
                    self._error = exc
            self._free.put(slot)

    def _write_frame(self, slot: _Slot) -> None:
        """Write one frame: each tensor is exactly one chunk, written as raw bytes."""
        if slot.ready is not None:
            slot.ready.synchronize()
        n = self.frames_written
        self._check_free_space()
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
        self._pending_scalars.append(
            (slot.step, *(float(slot.scalars[k]) for k in ("loss", "lr", "grad_norm")))
        )
        self.frames_written = n + 1

    def _start_writeback(self) -> None:
        """Hand the bytes written since the last call to the writeback thread, every N MB."""
        if self._writeback_thread is None:
            return
        fd = self.file.id.get_vfd_handle()
        end = os.fstat(fd).st_size
        if end - self._writeback_from >= self.config.writeback_every_mb * 1e6:
            self._writeback_ranges.put((fd, self._writeback_from, end - self._writeback_from))
            self._writeback_from = end

    def _writeback_loop(self) -> None:
        """Ask the OS to start writing each range to disk now, without waiting for it.

        The disk then works while the next frames are produced, instead of all at the next
        fsync (or whenever the kernel's dirty limits strike). On Linux POSIX_FADV_DONTNEED
        on freshly written (dirty) pages starts their writeback and leaves them cached.
        Its own thread: starting writeback costs ~1 ms per 4 MB of CPU, kept off the writer.
        """
        while (job := self._writeback_ranges.get()) is not None:
            try:
                os.posix_fadvise(*job, os.POSIX_FADV_DONTNEED)
            except OSError as exc:  # advice only: never fail a recording over it
                log.debug("posix_fadvise on %s: %s", self.path, exc)

    def _write_scalars(self) -> None:
        """Append the scalars of the frames written since the last flush, in one block."""
        if not self._pending_scalars:
            return
        start = self.frames_written - len(self._pending_scalars)
        columns = list(zip(*self._pending_scalars))
        for name, values in zip(SCALARS, columns):
            dset = self._datasets[name]
            dset.resize(self.frames_written, axis=0)
            dset[start:] = np.asarray(values, dtype=SCALARS[name])
        self._pending_scalars.clear()

    def _check_free_space(self) -> None:
        """Stop before HDF5 meets a full disk: an HDF5 write that fails midway can leave the
        library unable to close the file, while a stop here closes it cleanly."""
        need = self._frame_bytes + int(self.config.disk_reserve_mb * 2**20)
        free = shutil.disk_usage(self.path.parent).free
        if free < need:
            raise DiskFullError(
                f"the disk is full: {free / 2**20:.1f} MiB free in {self.path.parent}, a frame needs "
                f"{self._frame_bytes / 2**20:.1f} MiB plus {self.config.disk_reserve_mb} MiB kept for closing the file"
            )

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
        if self._writeback_thread is not None:  # before the file (its descriptor) closes
            self._writeback_ranges.put(None)
            self._writeback_thread.join()
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
        self._raise_if_failed()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
