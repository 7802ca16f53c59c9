"""Resumable checkpoints: everything that determines the rest of a run, in one file.

A checkpoint of a `Training` after `steps_done` optimizer steps holds:
  - the model's parameters and the optimizer's state (Adam moments, step counts), bit-exact;
  - steps_done: the batch order is a pure function of the step (core/data.py BatchOrder),
    so this is the whole data-order state; its parameters (windows, batch size, seed,
    drop_last) are stored too and must match on restore;
  - the RNG states: torch CPU (and every CUDA device's, if any), numpy, python `random`;
  - `frames`: how many trajectory frames the run had written at that step;
  - the trajectory format version, and the caller's `context`: JSON-able fingerprints
    (scenario, corpus, tokenizer...) that a resume must match, compared key by key.

Writes are atomic: a temporary file beside the target, fsync, os.replace, fsync of the
folder. A failed write (a full disk, say) removes the temporary file and leaves the
previous checkpoint as it was.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.format import FORMAT_VERSION
from core.train import Training

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
SUFFIX = ".ckpt"
CHECKPOINT_KEYS = ("checkpoint_version", "format_version", "steps_done", "frames", "context", "model", "optimizer",
                   "data_order", "rng")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message names the file."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint belongs to a different run than the one asked to resume."""


@dataclass
class Checkpoint:
    path: Path
    steps_done: int
    frames: int  # trajectory frames written when the checkpoint was taken
    format_version: int  # trajectory format the run writes
    context: dict[str, Any]  # the caller's fingerprints
    state: dict[str, Any]  # model, optimizer, data_order, rng


def checkpoint_path(trajectory: str | os.PathLike) -> Path:
    """Where a trajectory's checkpoint lives: beside it, `<name>.ckpt`."""
    return Path(trajectory).with_suffix(SUFFIX)


# ------------------------------------------------------------------ state
def data_order(training: Training) -> dict[str, Any]:
    order = training.batches.order
    return {"n_windows": order.n_windows, "batch_size": order.batch_size, "seed": order.seed,
            "drop_last": order.drop_last}


def capture_rng() -> dict[str, Any]:
    np_state = np.random.get_state()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _payload(training: Training, frames: int, context: dict[str, Any]) -> dict[str, Any]:
    return {
        "checkpoint_version": CHECKPOINT_VERSION,
        "format_version": FORMAT_VERSION,
        "steps_done": training.steps_done,
        "frames": frames,
        "context": json.dumps(context, sort_keys=True),
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "data_order": data_order(training),
        "rng": capture_rng(),
    }


def checkpoint_bytes(training: Training) -> int:
    """About how large a checkpoint of `training` is once its optimizer has state (the disk check)."""
    params = sum(p.numel() * p.element_size() for p in training.model.parameters())
    return 3 * params + (1 << 20)  # parameters and Adam's two moments; RNG states and the rest


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 64


# ------------------------------------------------------------------ writing
def save_checkpoint(path: str | os.PathLike, training: Training, frames: int, context: dict[str, Any],
                    reserve_bytes: int = 0) -> Path:
    """Atomically replace `path` with a checkpoint of `training` now, `frames` frames on disk.

    Raises CheckpointError (naming the file and the step) if the disk lacks room for it
    plus `reserve_bytes`, or if writing fails; the previous checkpoint is then intact.
    """
    path = Path(path)
    payload = _payload(training, frames, context)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    previous = "the previous checkpoint is intact" if path.exists() else "there is no earlier checkpoint"
    need = _nbytes(payload) + reserve_bytes
    try:
        free = shutil.disk_usage(path.parent).free
        if free < need:
            raise OSError(f"the disk is full: {free / 2**20:.1f} MiB free in {path.parent}, the checkpoint "
                          f"needs about {need / 2**20:.1f} MiB")
        with tmp.open("wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"Writing checkpoint {path} at step {training.steps_done} failed: {exc}; {previous}."
        ) from exc
    log.debug("checkpoint %s: step %d, %d frames", path, training.steps_done, frames)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some filesystems cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ reading
def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint; an empty, truncated, foreign or damaged file raises CheckpointError naming
    it and what is wrong (before: torch's bare messages, "pop from empty list" or nothing at all)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint {path}.")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"Cannot read checkpoint {path}: the file is empty (0 bytes).")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its directory is at the end
        raise CheckpointError(f"Cannot read checkpoint {path}: not a checkpoint this harness wrote ({size:,} bytes, "
                              f"no torch archive: truncated, or another kind of file).")
    try:  # torch.load does not check the archive's CRCs: damaged tensor bytes would load as weights
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: a damaged archive ({exc}).") from exc
    if bad is not None:
        raise CheckpointError(f"Cannot read checkpoint {path}: damaged: its entry {bad!r} fails its CRC check.")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged archive, or a pickle that is not ours
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"Cannot read checkpoint {path}: damaged or not a checkpoint ({first}).") from exc
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise CheckpointError(f"Cannot read checkpoint {path}: not a checkpoint this harness wrote (no "
                              f"{', '.join(missing)}).")
    version = raw["checkpoint_version"]
    if version != CHECKPOINT_VERSION:
        raise CheckpointMismatch(f"Checkpoint {path} has checkpoint_version {version}; this harness reads "
                                 f"{CHECKPOINT_VERSION}.")
    try:
        return Checkpoint(
            path=path,
            steps_done=int(raw["steps_done"]),
            frames=int(raw["frames"]),
            format_version=int(raw["format_version"]),
            context=json.loads(raw["context"]),
            state={k: raw[k] for k in ("model", "optimizer", "data_order", "rng")},
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: a damaged entry ({exc}).") from exc


def differences(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON-like values differ, each as 'key: saved -> now'."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(saved) | set(now), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved:
                out.append(f"{name}: (absent) -> {now[key]!r}")
            elif key not in now:
                out.append(f"{name}: {saved[key]!r} -> (absent)")
            else:
                out.extend(differences(saved[key], now[key], name))
        return out
    return [] if saved == now else [f"{prefix or 'value'}: {saved!r} -> {now!r}"]


def check_compatible(ckpt: Checkpoint, context: dict[str, Any]) -> None:
    """Raise CheckpointMismatch naming the file and every difference (checkpoint -> now)."""
    if ckpt.format_version != FORMAT_VERSION:
        raise CheckpointMismatch(f"Checkpoint {ckpt.path} was taken for trajectory format_version "
                                 f"{ckpt.format_version}; this harness writes {FORMAT_VERSION}.")
    diffs = differences(ckpt.context, json.loads(json.dumps(context, sort_keys=True)))
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise CheckpointMismatch(f"Checkpoint {ckpt.path} belongs to a different run (checkpoint -> now): {shown}.")


def restore(training: Training, ckpt: Checkpoint) -> None:
    """Put `training` (freshly built from the same configs) in the checkpoint's state."""
    if ckpt.state["data_order"] != data_order(training):
        raise CheckpointMismatch(f"Checkpoint {ckpt.path} has batch order {ckpt.state['data_order']}; "
                                 f"this run has {data_order(training)}.")
    if not 0 <= ckpt.steps_done <= training.train_cfg.steps:
        raise CheckpointMismatch(f"Checkpoint {ckpt.path} is at step {ckpt.steps_done}, outside this run's "
                                 f"{training.train_cfg.steps} steps.")
    try:
        training.model.load_state_dict(ckpt.state["model"])
        training.optimizer.load_state_dict(ckpt.state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointMismatch(f"Checkpoint {ckpt.path} does not fit this model: {exc}") from exc
    training.steps_done = ckpt.steps_done
    training.last = None
    restore_rng(ckpt.state["rng"])
