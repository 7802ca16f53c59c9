"""The trajectory file format (version 1): what a run records, under which names.

One HDF5 file per run:
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
  attributes: format_version, frames_complete, closed_cleanly, record_every, tied, vocab_size,
        dim, tensors, compression, keyframe_every, environment, plus the caller's metadata
        (dicts and lists as JSON strings).
  Opt-in compression (core/encoding.py): `zstd` keeps this layout with compressed chunks;
  `delta-zstd` stores E, W and the moments XOR-coded under /delta/.

Every dataset carries netCDF-4 dimension scales and CF-style attributes (core/netcdf.py):
`/step` is the frame axis' coordinate, `/token` (ids) and `/dim` the others, so
`xarray.open_dataset(path, engine="h5netcdf")` shows W(step, token, dim) and `.sel(step=500)` works.

Frame 0 is the initial state (gradients and moments zero); frame k is the state after the
k-th recorded optimizer step. `frames_complete` only ever names frames that are fully
flushed, so a killed run leaves a file whose first `frames_complete` frames are exact.
core/recorder.py writes it, core/trajectory.py reads it.
"""

from __future__ import annotations

import numpy as np

FORMAT_VERSION = 1
# HDF5 object formats: the oldest that keeps SWMR and the chunk indexes the writer needs (1.10), so
# that every HDF5 >= 1.10 reader opens every object (a bool dataset written as "latest" is not).
LIBVER = ("v110", "latest")
PARAM_TENSORS = ("E", "W", "grad_E", "grad_W", "exp_avg_E", "exp_avg_W", "exp_avg_sq_E", "exp_avg_sq_W")  # (V, D)
SCALARS = {"step": np.int64, "loss": np.float32, "lr": np.float64, "grad_norm": np.float32}  # one per frame
RECORDABLE = PARAM_TENSORS + ("logits",) + tuple(SCALARS)
REQUIRED_ATTRIBUTES = ("frames_complete", "record_every", "tied", "vocab_size", "dim", "tensors")
COORDINATES = ("token", "dim")  # netCDF coordinate variables (dimension scales) beside `step`


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


def frame_bytes(names: list[str], vocab: int, dim: int) -> int:
    """Bytes of one frame of the stored tensors `names` (bf16)."""
    return sum(2 * vocab * (1 if n == "logits" else dim) for n in names)
