"""One writer per trajectory: an OS advisory lock on `<trajectory>.lock`, held while a run writes.

HDF5 locks a file it writes, but releases the lock when SWMR writing starts (so readers may
open it): a second run with `--force` or `--resume` on the same file was not refused, and
both wrote into it. `WriterLock` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on a lock file beside
the trajectory before anything touches the trajectory or its checkpoint; a second writer
fails at once with `WriterBusy`, naming the file and the holder's pid. The kernel drops the
lock when its holder dies, so kill -9 never leaves a stale lock; readers take no lock and are
never blocked. The lock file is removed on release. Where fcntl does not exist (Windows) the
lock is not taken, and says so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)


class WriterBusy(RuntimeError):
    """Another live process writes this trajectory."""


class LockFileError(RuntimeError):
    """The lock file cannot be made: a read-only or missing folder; the message names the trajectory."""


def lock_path(trajectory: str | os.PathLike) -> Path:
    trajectory = Path(trajectory)
    return trajectory.with_name(trajectory.name + ".lock")


def holder(trajectory: str | os.PathLike) -> int | None:
    """The pid that holds `trajectory`'s writer lock now, or None (no lock, or its holder died)."""
    path = lock_path(trajectory)
    if fcntl is None or not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted: no writer holds it
        return None
    except BlockingIOError:
        return _pid(fd)
    finally:
        os.close(fd)


def _pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


class WriterLock:
    """`with WriterLock(trajectory):` the exclusive right to write `trajectory` and its checkpoint."""

    def __init__(self, trajectory: str | os.PathLike):
        self.trajectory = Path(trajectory)
        self.path = lock_path(trajectory)
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        if fcntl is None:
            log.warning("no fcntl here: %s is written without a lock against a second writer", self.trajectory)
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:  # EROFS, EACCES, ENOENT: before, an OSError traceback
                raise LockFileError(f"Cannot write trajectory {self.trajectory}: its lock file {self.path} cannot be "
                                    f"made ({exc.strerror or exc}).") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _pid(fd)
                os.close(fd)
                raise WriterBusy(f"{self.trajectory} is being written by another run (pid {pid}, lock {self.path}); "
                                 f"wait for it to finish or stop it first. Reading the file is fine.") from None
            try:  # the holder we waited for may have removed the file: then lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still held: no one locks a file about to vanish
        finally:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
