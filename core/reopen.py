"""Reopen an unfinished trajectory to append after its first N frames (a resumed run).

The file is read, never changed, until every check has passed: the layout matches, and the
N frames kept lie inside the file as it is on disk (a truncated copy is refused, never padded
into frames of zeros). Frames after those N are discarded (every frame dataset shrinks to N along axis 0;
frames_complete = N), so the caller continues from the training state those frames end
at (a checkpoint, core/checkpoint.py). The file's own layout wins: the record config must
record the same tensors every the same number of steps, with the same compression. A file
whose writer was killed has its HDF5 consistency flags cleared first (core/h5clear.py).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import h5py

from core.disk import RecorderError
from core.encoding import DeltaEncoder, is_delta_coded, read_decoded
from core.format import FORMAT_VERSION, LIBVER, SCALARS
from core.h5clear import clear_status_flags
from core.h5read import TrajectoryFileError, check_frames, open_for_reading, reason
from core.recorder import HostStager, RecordConfig, TrajectoryWriter

log = logging.getLogger(__name__)


def _check_resumable(path: Path, attrs: dict[str, Any], frames: int, config: RecordConfig) -> None:
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


def resume_trajectory(
    path: str | os.PathLike,
    *,
    frames: int,
    config: RecordConfig | None = None,
    metadata: dict[str, Any] | None = None,
    stager: HostStager | None = None,
) -> TrajectoryWriter:
    """A writer appending to `path` after its first `frames` frames; `metadata` attributes
    are set (or replaced); nothing else in the file changes."""
    path = Path(path)
    config = config or RecordConfig()
    config.validate()
    if not path.is_file():
        raise FileNotFoundError(f"Cannot resume trajectory {path}: no such file.")
    f, _ = open_for_reading(path)
    with f:  # every check reads the file; nothing changes it before they all pass
        try:
            attrs = dict(f.attrs)
        except (OSError, KeyError) as exc:  # damaged metadata
            raise TrajectoryFileError(f"Cannot resume trajectory {path}: {reason(exc)}.") from exc
        _check_resumable(path, attrs, frames, config)
        kept = {**TrajectoryWriter.stored_names(config, bool(attrs["tied"])), **{name: name for name in SCALARS}}
        check_frames(f, path, kept, frames)
    clear_status_flags(path)
    file = h5py.File(path, "a", libver=LIBVER)
    try:
        # frames_complete first: a kill while shrinking leaves a file that still reads right.
        file.attrs["frames_complete"] = frames
        file.attrs["closed_cleanly"] = False
        file.flush()
        delta = DeltaEncoder(config.keyframe_every) if config.compression == "delta-zstd" else None
        writer_names = TrajectoryWriter.stored_names(config, bool(file.attrs["tied"]))
        for name, stored_at in writer_names.items():
            file[stored_at].resize(frames, axis=0)  # chunks past the new extent are freed
            if delta is not None and frames and is_delta_coded(name, config.compression):
                last = read_decoded(file[stored_at], frames - 1, frames, config.keyframe_every)
                delta.continue_from(name, last[0])
        for name in SCALARS:
            file[name].resize(frames, axis=0)
        for key, value in (metadata or {}).items():
            file.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value
        writer = TrajectoryWriter.attach(file, frames=frames, config=config, stager=stager or HostStager(), delta=delta)
    except BaseException:
        file.close()
        raise
    log.info("resumed %s after frame %d", path, frames)
    return writer
