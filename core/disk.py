"""The recorder's guards against a full disk, and early writeback of what it wrote.

  check_destination   before a file exists: the folder is there, nothing is overwritten
                      unasked, the whole run's frames fit in the free space.
  check_free_space    before each frame: stop cleanly while HDF5 can still close the file
                      (an HDF5 write that fails midway can leave it unable to).
  Ballast             the space to close the file in, held as a file beside it from the
                      start and given back when the disk fills: HDF5 then flushes and closes
                      cleanly (without it, a disk filled by another process left HDF5 unable
                      to close the file, and the interpreter died by SIGSEGV at exit). (Reserving
                      the file's own growth with fallocate(KEEP_SIZE) does not hold: HDF5
                      truncates the file to its allocated end at every flush.)
  Writeback           asks the OS to start writing each few MB to disk now, so the disk
                      works while the next frames are produced.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import shutil
import threading
from pathlib import Path
from typing import Callable

import h5py

from core.format import LIBVER

log = logging.getLogger(__name__)


class RecorderError(RuntimeError):
    """Writing a trajectory failed; the message says which frames are safe on disk."""


class DiskFullError(RecorderError):
    """The disk is about to fill: recording stopped before HDF5 ran out of space."""


def check_destination(path: Path, frame_bytes: int, expected_frames: int | None, overwrite: bool,
                      other_bytes: int = 0) -> None:
    """Refuse before anything is written: no folder, an existing file, or a run that cannot fit
    (`expected_frames` frames plus `other_bytes`: the reserve, a checkpoint)."""
    parent = path.parent
    if not parent.is_dir():
        raise RecorderError(f"Cannot write trajectory {path}: {parent} is not a directory.")
    if path.is_dir():
        raise RecorderError(f"Cannot write trajectory {path}: a directory stands there.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"Trajectory {path} already exists; refusing to overwrite it.")
    if not os.access(parent, os.W_OK):
        raise RecorderError(f"Cannot write trajectory {path}: {parent} is not writable.")
    need = (expected_frames or 0) * frame_bytes + other_bytes
    free = shutil.disk_usage(parent).free + (path.stat().st_size if path.is_file() else 0)
    if need > free:
        raise DiskFullError(
            f"Trajectory {path} needs about {need / 1e9:.3g} GB ({expected_frames or 0} frames of "
            f"{frame_bytes / 2**20:.1f} MiB and {other_bytes / 2**20:.1f} MiB beside: reserve, checkpoint) "
            f"but {parent} has {free / 1e9:.3g} GB free. Record fewer tensors, or record every N steps."
        )


def check_free_space(path: Path, frame_bytes: int, reserve_mb: float) -> None:
    """Raise DiskFullError unless a frame plus `reserve_mb` (its metadata) fits."""
    need = frame_bytes + int(reserve_mb * 2**20)
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise DiskFullError(
            f"the disk is full: {free / 2**20:.1f} MiB free in {path.parent}, a frame needs "
            f"{frame_bytes / 2**20:.1f} MiB and {reserve_mb} MiB for its metadata"
        )


def new_file(path: Path, build: Callable[[h5py.File], None], ballast: Ballast) -> h5py.File:
    """A new HDF5 file at `path` whose layout `build` makes, opened for appending frames.

    The layout is built in memory and written out by Python: a disk that fills meanwhile is an
    OSError here (the file removed, the reserve given back), not an HDF5 library left unable
    to close the file (measured: it crashed the interpreter at exit).
    """
    creating = path.with_name(f".{path.name}.creating")  # renamed into place whole: no reader sees half a file
    try:
        image = io.BytesIO()
        with h5py.File(image, "w", libver=LIBVER) as layout:
            build(layout)
        creating.write_bytes(image.getbuffer())
        os.replace(creating, path)
        return h5py.File(path, "a", libver=LIBVER)
    except BaseException as exc:
        ballast.release()
        creating.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise RecorderError(f"Cannot create trajectory {path}: {exc}") from exc
        raise


class Ballast:
    """`mb` MiB held in `.<trajectory>.reserve` beside a trajectory, for closing it on a full disk."""

    def __init__(self, trajectory: Path, mb: float):
        self.path = trajectory.with_name(f".{trajectory.name}.reserve")
        nbytes = int(mb * 2**20)
        if not nbytes:
            return
        try:
            with self.path.open("wb") as f:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(f.fileno(), 0, nbytes)
                else:
                    f.truncate(nbytes)  # sparse where fallocate is missing: a weaker promise
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            raise DiskFullError(f"Cannot reserve {mb} MiB beside {trajectory} (record.disk_reserve_mb) for closing "
                                f"it: {exc.strerror or exc}.") from exc

    def release(self) -> None:
        """Give the space back (idempotent)."""
        self.path.unlink(missing_ok=True)


class Writeback:
    """Start the disk writing each `every_mb` MB of a file as it grows, without waiting for it.

    Otherwise the kernel writes everything at the next fsync, or whenever its dirty limits
    strike. On Linux POSIX_FADV_DONTNEED on freshly written (dirty) pages starts their
    writeback and leaves them cached. Its own thread: starting writeback costs ~1 ms per
    4 MB of CPU, kept off the recorder's writer thread. Advice only: never fails a run.
    """

    def __init__(self, path: Path, every_mb: float, written_bytes: int):
        self.path, self.every_bytes = path, every_mb * 1e6
        self._from = written_bytes  # bytes of the file already handed to the disk
        self.handed_bytes = 0  # handed over by this object
        self._ranges: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"recorder-writeback:{path.name}")
        self._thread.start()

    @staticmethod
    def available(every_mb: float) -> bool:
        return bool(every_mb) and hasattr(os, "posix_fadvise")

    def wrote(self, fd: int) -> None:
        """The file behind `fd` has grown: hand what was written since the last range over, every N MB."""
        end = os.fstat(fd).st_size
        if end - self._from >= self.every_bytes:
            self._ranges.put((fd, self._from, end - self._from))
            self.handed_bytes += end - self._from
            self._from = end

    def _loop(self) -> None:
        while (job := self._ranges.get()) is not None:
            try:
                os.posix_fadvise(*job, os.POSIX_FADV_DONTNEED)
            except OSError as exc:
                log.debug("posix_fadvise on %s: %s", self.path, exc)

    def stop(self) -> None:
        """Finish the queued ranges; call before the file (its descriptor) closes."""
        self._ranges.put(None)
        self._thread.join()
