"""Lazy reader of trajectory files (the layout: core/format.py).

    traj = Trajectory("runs/flannel_1.h5")
    traj["W"][0]              # (V, D) bf16 tensor, the initial W, bit-exact
    traj["W"][10:20, traj.dead]  # (10, n_dead, D)
    traj["loss"][:]           # (n_frames,) float32 numpy array
    for start, block in traj.iter_frames("W", chunk=64): ...   # streams a 7.7 GB file

Compressed files (core/encoding.py) read the same way, bit-exact.

Only frames up to the file's `frames_complete` attribute exist for the reader, so a file
from a killed run reads exactly the frames that were fully on disk. Files being written
can be opened too (SWMR); `refresh()` picks up frames written since. A truncated, damaged or
foreign file is a TrajectoryFileError at once (core/h5read.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import torch

from core.bf16 import from_bits, is_hdf5_bfloat16
from core.encoding import DELTA_GROUP, read_decoded
from core.format import COORDINATES
from core.h5read import TrajectoryFileError, check_attributes, check_frames, open_for_reading, reason
from core.netcdf import to_xarray
from core.token_tables import TokenTableViews

Index = int | slice | np.ndarray | list[int]


class TensorView:
    """One recorded quantity, indexed [frames] or [frames, tokens], read on demand."""

    def __init__(self, traj: Trajectory, name: str, dataset: h5py.Dataset):
        self.traj, self.name, self.dataset = traj, name, dataset
        # delta-coded (core/encoding.py): uint16 XOR bits, decoded here
        self.keyframe_every = int(dataset.attrs["keyframe_every"]) if "keyframe_every" in dataset.attrs else 0
        self.is_bf16 = bool(self.keyframe_every) or is_hdf5_bfloat16(dataset.id.get_type())
        self._last: tuple[int, np.ndarray] | None = None  # (frame, its bits): the last delta-decoded frame

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.traj),) + self.dataset.shape[1:]

    def __len__(self) -> int:
        return len(self.traj)

    def __getitem__(self, key: Index | tuple) -> torch.Tensor | np.ndarray:
        """[frames] or [frames, tokens, ...]: frames are read from disk, the rest indexes in memory."""
        frames, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        n = len(self.traj)
        if isinstance(frames, (int, np.integer)):
            f = int(frames) + n if frames < 0 else int(frames)
            if not 0 <= f < n:
                raise IndexError(f"frame {frames} out of range for {self.name} with {n} complete frames")
            out = self._read(f, f + 1)[0]
        elif isinstance(frames, slice):
            start, stop, stride = frames.indices(n)
            out = self._read(start, max(start, stop))[::stride] if stride > 0 else self._read(0, n)[frames]
        else:
            idx = np.asarray(frames)
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"frames {idx.tolist()} out of range for {self.name} with {n} complete frames")
            out = self._read(0, n)[self._index(idx)]
        if rest:
            lead = () if isinstance(frames, (int, np.integer)) else (slice(None),)
            out = out[lead + tuple(self._index(k) for k in rest)]
        return out

    def _index(self, key):
        """Array-like indices become tensors for bf16 (torch) data."""
        if self.is_bf16 and not isinstance(key, (int, np.integer, slice)):
            return torch.as_tensor(np.asarray(key))
        return key

    def _read(self, start: int, stop: int) -> torch.Tensor | np.ndarray:
        """Frames [start, stop): bf16 as raw bits -> torch.bfloat16; others as numpy."""
        try:
            return self._read_frames(start, stop)
        except OSError as exc:  # damaged bytes HDF5 notices (a bad checksum, a chunk that does not decode)
            raise TrajectoryFileError(f"Cannot read frames {start}..{stop - 1} of {self.name} in {self.traj.path}: "
                                      f"{reason(exc)}.") from exc

    def _read_frames(self, start: int, stop: int) -> torch.Tensor | np.ndarray:
        if not self.is_bf16:
            return self.dataset[start:stop]
        if self.keyframe_every:
            previous = self._last[1] if self._last is not None and self._last[0] == start - 1 else None
            bits = read_decoded(self.dataset, start, stop, self.keyframe_every, previous)
            if len(bits):
                self._last = (stop - 1, bits[-1].copy())
            return from_bits(bits)
        shape = (stop - start,) + self.dataset.shape[1:]
        bits = np.empty(shape, dtype=np.uint16)
        if stop > start:
            fspace = self.dataset.id.get_space()
            fspace.select_hyperslab((start,) + (0,) * (len(shape) - 1), shape)
            mspace = h5py.h5s.create_simple(shape)
            self.dataset.id.read(mspace, fspace, bits, mtype=self.dataset.id.get_type())
        return from_bits(bits)


class Trajectory(TokenTableViews):
    """A trajectory file opened read-only and lazily. Use as a context manager or close().

    Token tables (dead, live, counts, strings, ...): core/token_tables.py `TokenTableViews`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file, self.swmr = open_for_reading(self.path)  # swmr: its writer is live, was killed, or it is cut
        try:
            self._load()
        except BaseException as exc:
            self.file.close()
            if isinstance(exc, (OSError, KeyError, RuntimeError)):  # h5py's errors reading damaged metadata
                raise TrajectoryFileError(f"Cannot read trajectory {self.path}: {reason(exc)}.") from exc
            raise

    def _load(self) -> None:
        """Read the layout; a foreign, older or damaged file is a TrajectoryFileError naming it."""
        check_attributes(self.file, self.path)
        self._paths = {k: k for k, v in self.file.items() if isinstance(v, h5py.Dataset) and k not in COORDINATES}
        if DELTA_GROUP in self.file:
            self._paths.update({k: f"{DELTA_GROUP}/{k}" for k in self.file[DELTA_GROUP]})
        self._names = sorted(self._paths)
        self._frames = int(self.file.attrs["frames_complete"])
        check_frames(self.file, self.path, self._paths, self._frames)

    # -------------------------------------------------------------- frames
    def __len__(self) -> int:
        """Frames complete on disk."""
        return self._frames

    def refresh(self) -> int:
        """Reopen a file that is still being written and return its new frame count.

        Views taken before the refresh keep reading the old handle; take new ones.
        """
        self.file.close()
        self.file, self.swmr = open_for_reading(self.path)
        self._load()
        return self._frames

    @property
    def names(self) -> list[str]:
        """Every recorded quantity (tied runs list both E and W names)."""
        return self._names

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> TensorView:
        return TensorView(self, name, self.dataset(name))

    def dataset(self, name: str) -> h5py.Dataset:
        """The HDF5 dataset that stores `name` (/W, or /delta/W in a delta-coded file)."""
        if name not in self.names:
            raise KeyError(f"{self.path} has no {name!r}. Recorded: {', '.join(self.names)}.")
        return self.file[self._paths[name]]

    @property
    def steps(self) -> np.ndarray:
        """Optimizer step of each complete frame: (n_frames,) int64."""
        return self["step"][:]

    def frame_of_step(self, step: int) -> int:
        hits = np.flatnonzero(self.steps == step)
        if not hits.size:
            raise KeyError(f"Step {step} was not recorded in {self.path} (record_every = {self.meta['record_every']}).")
        return int(hits[0])

    def iter_frames(self, name: str, chunk: int = 64, tokens: Index | None = None) -> Iterator[tuple[int, Any]]:
        """(first frame, block of up to `chunk` frames) over the whole file, in bounded memory."""
        view = self[name]
        for start in range(0, len(self), chunk):
            block = view[start : start + chunk]
            yield start, (block if tokens is None else block[:, tokens])

    # -------------------------------------------------------------- tables and metadata
    @property
    def meta(self) -> dict[str, Any]:
        """Run metadata: attributes, with JSON-encoded ones decoded."""
        out = {}
        for key, value in self.file.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and (value[:1] in ("{", "[") or value == "null"):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            elif isinstance(value, np.generic):
                value = value.item()
            out[key] = value
        return out

    @property
    def tied(self) -> bool:
        return bool(self.file.attrs["tied"])

    def to_xarray(self):
        """The file as a lazy xarray.Dataset with named axes (core/netcdf.py; the optional extra `xarray`)."""
        if self.swmr:
            raise TrajectoryFileError(f"{self.path} is being written, or its writer was killed, or it is cut short: "
                                      f"xarray cannot open it; read it with Trajectory(path)[name].")
        return to_xarray(self.path, len(self), self.token_tables())

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
