"""The recorder's guards against a full disk, and early writeback of what it wrote.

  check_destination   before a file exists: the folder is there, nothing is overwritten
                      unasked, the whole run's frames fit in the free space.
  check_free_space    before each frame: stop cleanly while HDF5 can still close the file
                      (an HDF5 write that fails midway can leave it unable to).
  Writeback           asks the OS to start writing each few MB to disk now, so the disk
                      works while the next frames are produced.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class RecorderError(RuntimeError):
    """Writing a trajectory failed; the message says which frames are safe on disk."""


class DiskFullError(RecorderError):
    """The disk is about to fill: recording stopped before HDF5 ran out of space."""


def check_destination(path: Path, frame_bytes: int, expected_frames: int | None, overwrite: bool) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise RecorderError(f"Cannot write trajectory {path}: {parent} is not a directory.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"Trajectory {path} already exists; refusing to overwrite it.")
    if expected_frames:
        need = expected_frames * frame_bytes
        free = shutil.disk_usage(parent).free
        if need > free:
            raise RecorderError(
                f"Trajectory {path} needs about {need / 1e9:.2f} GB for {expected_frames} frames "
                f"but {parent} has {free / 1e9:.2f} GB free. Record fewer tensors, or record every N steps."
            )


def check_free_space(path: Path, frame_bytes: int, reserve_mb: float) -> None:
    """Raise DiskFullError unless a frame plus `reserve_mb` (kept for closing the file) fits."""
    need = frame_bytes + int(reserve_mb * 2**20)
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise DiskFullError(
            f"the disk is full: {free / 2**20:.1f} MiB free in {path.parent}, a frame needs "
            f"{frame_bytes / 2**20:.1f} MiB plus {reserve_mb} MiB kept for closing the file"
        )


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
