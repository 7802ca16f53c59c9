"""Open a trajectory file for reading: a damaged file is a clear error at once, never a hang,
and a frame the file cannot hold is never served as fill values.

HDF5 reads a file two ways, and each misses something:
  plain read-only  checks the end-of-file address (refuses a truncated file, even one whose
                   complete frames are all intact: a run stopped by a full disk) and fails
                   at once on a bad metadata checksum, but refuses a file whose consistency
                   flags are set: one a writer has open (a live run) or left open (a killed
                   run).
  SWMR read        opens those, but skips the end-of-file check (a truncated file opens, its
                   missing chunks read as zeros) and retries a bad checksum with back-off
                   sleeps, for minutes (measured: a 64-byte overwrite of an object header).
So: plain first; SWMR for a file with its flags set or cut short, with 16 metadata read attempts
instead of HDF5's 100 (H5Pset_metadata_read_attempts, called through ctypes: h5py does not
expose it; where the library cannot be found, HDF5's default). Measured on a header
overwritten by 64 bytes: 16 attempts give up in ~0.2 s, 100 were still retrying after 60 s; a
reader of a live run still gets retries for metadata caught mid-update. Then every complete
frame's chunks are checked to lie inside the file (`check_frames`).

Not detectable: bytes overwritten inside a frame's raw chunk (frames carry no checksum).
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import h5py

from core.format import FORMAT_VERSION, REQUIRED_ATTRIBUTES

log = logging.getLogger(__name__)


# Why a plain open fails on a file SWMR can still read: a writer holds it (HDF5's flags, or its
# file lock while the writer lives), or it is shorter than its end-of-file address.
SWMR_READABLE = ("already open for write", "unable to lock file", "truncated file")


class TrajectoryFileError(ValueError):
    """A file is not a readable trajectory: truncated, damaged, foreign. The message names it."""


def reason(exc: BaseException) -> str:
    """HDF5's message without h5py's prefix."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    for prefix in ("Unable to synchronously open file (", "Unable to synchronously open object ("):
        if text.startswith(prefix):
            text = text[len(prefix):].rstrip(")")
    return text


def _hdf5_library() -> ctypes.CDLL | None:
    """The HDF5 library h5py runs on, as loaded in this process (Linux: from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "/libhdf5" in line and "hdf5_hl" not in line})
        return ctypes.CDLL(paths[0]) if paths else None
    except (OSError, IndexError):
        return None


def _swmr_access(read_attempts: int = 16) -> h5py.h5p.PropFAID:
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_LATEST)
    lib = _hdf5_library()
    setter = getattr(lib, "H5Pset_metadata_read_attempts", None) if lib is not None else None
    if setter is not None:
        setter.argtypes, setter.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
        if setter(fapl.id, read_attempts) < 0:
            log.debug("H5Pset_metadata_read_attempts failed: HDF5's default retries")
    return fapl


def open_for_reading(path: str | os.PathLike) -> tuple[h5py.File, bool]:
    """`path` opened read-only, and whether it was opened in SWMR mode (its writer live or killed,
    or the file cut short: `check_frames` then tells whether the frames it names are intact).

    Raises FileNotFoundError for a missing file and TrajectoryFileError for one HDF5 cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Trajectory file not found: {path}")
    try:
        return h5py.File(path, "r"), False
    except OSError as exc:
        if not any(why in str(exc) for why in SWMR_READABLE):
            raise TrajectoryFileError(f"Cannot read trajectory {path}: {reason(exc)}.") from exc
    try:
        fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=_swmr_access())
        return h5py.File(fid), True
    except OSError as exc:
        raise TrajectoryFileError(f"Cannot read trajectory {path}: {reason(exc)}.") from exc


def check_attributes(f: h5py.File, path: str | os.PathLike) -> None:
    """Raise TrajectoryFileError unless `f` has this format's version and every attribute a reader
    needs, and every attribute decodes (damage shows now, not in a later read); then check
    its token tables lie inside the file."""
    attrs = f.attrs
    if "format_version" not in attrs:
        raise TrajectoryFileError(f"{path} is not a trajectory file: it has no attribute format_version.")
    if attrs["format_version"] != FORMAT_VERSION:
        raise TrajectoryFileError(f"{path} has format_version {attrs['format_version']}; this reader knows "
                                  f"{FORMAT_VERSION}.")
    dict(attrs.items())
    missing = [key for key in REQUIRED_ATTRIBUTES if key not in attrs]
    if missing:
        raise TrajectoryFileError(f"{path} is not a complete trajectory file: it lacks attribute(s) "
                                  f"{', '.join(missing)}.")
    if "tokens" in f:
        check_frames(f, path, {f"tokens/{k}": f"tokens/{k}" for k in f["tokens"]}, None)


def check_frames(f: h5py.File, path: str | os.PathLike, datasets: dict[str, str], frames: int | None) -> None:
    """Raise TrajectoryFileError unless each of `datasets` (name: path in `f`) holds `frames`
    frames along axis 0 (None: all it has), each in chunks that lie inside the file as it is on disk."""
    size = os.path.getsize(path)
    for name, where in datasets.items():
        try:
            dset = f[where]
            n = dset.shape[0] if frames is None else frames
            if dset.shape[0] < n:
                raise TrajectoryFileError(f"{path}: {name} holds {dset.shape[0]} frames, but the file names "
                                          f"{n} complete (attribute frames_complete).")
            if dset.chunks is None:  # contiguous: one block
                spans = [(0, dset.id.get_offset(), dset.id.get_storage_size())] if n else []
            else:
                spans = [(first, *_chunk_span(dset, first)) for first in range(0, n, dset.chunks[0])]
        except (OSError, KeyError, RuntimeError) as exc:
            raise TrajectoryFileError(f"Cannot read {name} in trajectory {path}: {reason(exc)}.") from exc
        for first, offset, nbytes in spans:
            if offset is None or offset + nbytes > size:
                raise TrajectoryFileError(
                    f"{path}: frame {first} of {name} is not in the file (it ends at byte {size:,}; the file is "
                    f"truncated or was copied while written). Frames before it may be intact.")


def _chunk_span(dset: h5py.Dataset, first: int) -> tuple[int | None, int]:
    info = dset.id.get_chunk_info_by_coord((first,) + (0,) * (dset.ndim - 1))
    return info.byte_offset, info.size
