"""The trajectory file as netCDF-4 readers see it: axis names, attributes, an xarray view.

`label_axes` makes `/step` (the frame axis), `/token` and `/dim` HDF5 dimension scales and
attaches them to every dataset, with `long_name`, `units` and `description` attributes, the
netCDF-4 convention that h5netcdf, xarray and netCDF tools read. `to_xarray` opens a file so.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from core.format import PARAM_TENSORS
from core.h5read import TrajectoryFileError
from core.token_tables import TokenTables


_MOMENT = "Adam {} moment of {} (bf16 optimizer state; zero in frame 0)"
DESCRIPTIONS = {  # dataset: (long_name, units or "", description)
    "E": ("input embedding E", "", "transformer.wte.weight after the frame's step; frame 0 = the initial state"),
    "W": ("unembedding W", "", "lm_head.weight after the frame's step (in a tied run the same dataset as E)"),
    "grad_E": ("gradient of E", "", "pre-clip gradient of the frame's step (zero in frame 0)"),
    "grad_W": ("gradient of W", "", "pre-clip gradient of the frame's step (zero in frame 0)"),
    "exp_avg_E": ("Adam first moment of E", "", _MOMENT.format("first", "E")),
    "exp_avg_W": ("Adam first moment of W", "", _MOMENT.format("first", "W")),
    "exp_avg_sq_E": ("Adam second moment of E", "", _MOMENT.format("second", "E")),
    "exp_avg_sq_W": ("Adam second moment of W", "", _MOMENT.format("second", "W")),
    "logits": ("logits", "", "sequence 0, last position of the step's batch (zero in frame 0)"),
    "step": ("optimizer steps done", "steps", "frame k is the state after this many steps; frame 0 = initial"),
    "loss": ("training loss", "nats", "mean cross-entropy over the step's targets; NaN in frame 0 (no step)"),
    "lr": ("learning rate", "", "the LR the step used; NaN in frame 0"),
    "grad_norm": ("gradient norm", "", "global L2 norm before clipping; NaN in frame 0"),
    "token": ("token id", "", "row of E and W; tokens/strings holds each token's text"),
    "dim": ("embedding coordinate", "", "column of E and W"),
    "dead_mask": ("dead token", "", "true: the token never occurs in the training corpus"),
    "counts": ("corpus count", "tokens", "occurrences of the token in the training corpus"),
    "strings": ("token text", "", "the token's string (UTF-8)"),
    "input_counts": ("input positions", "tokens", "input positions holding the token over the run's batches"),
    "first_input_step": ("first input step", "steps", "first step whose batch holds the token as input; -1 never"),
}


def label_axes(f: h5py.File, vocab: int, dim: int) -> None:
    """Dimension scales (step, token, dim) and long_name / units / description on every dataset of a
    new trajectory file. Before SWMR mode: no attribute can be added after it begins."""
    f["step"].make_scale("step")
    for name, size in (("token", vocab), ("dim", dim)):
        f.create_dataset(name, data=np.arange(size, dtype=np.int64)).make_scale(name)

    def label(path: str, dset: h5py.Dataset) -> None:
        if not isinstance(dset, h5py.Dataset):
            return
        name = path.rsplit("/", 1)[-1]
        long_name, units, description = DESCRIPTIONS.get(name, (name, "", ""))
        partner = path[:-1] + "W"
        if name in PARAM_TENSORS and name.endswith("E") and partner in f and f[partner].id == dset.id:  # tied
            long_name, description = f"{long_name} = {DESCRIPTIONS[name[:-1] + 'W'][0]} (tied)", description
        dset.attrs.update(long_name=long_name, description=description, **({"units": units} if units else {}))
        axes = ("token",) if path.startswith("tokens/") else ("step", "token", "dim")[:dset.ndim]
        if name not in ("step", "token", "dim"):
            for i, axis in enumerate(axes):
                dset.dims[i].attach_scale(f[axis])

    f.visititems(label)  # each dataset once: a tied run's E and W are one


def to_xarray(path: Path, frames: int, tokens: TokenTables | None):
    """The file at `path` as a lazy xarray.Dataset: W(step, token, dim) and the rest, its first `frames`
    frames, bf16 values as float32 (exact), coordinates token_string and dead from `tokens` if given.
    Needs the optional extra `xarray` (xarray, h5netcdf). Delta-coded tensors stay out (their
    /delta/ bits decode only through this reader)."""
    try:
        import xarray  # optional extra: only this function needs it
    except ImportError as exc:
        raise ImportError("Trajectory.to_xarray needs xarray and h5netcdf: pip install -e '.[xarray]'") from exc
    ds = xarray.open_dataset(path, engine="h5netcdf")
    if "step" not in ds.dims:
        raise TrajectoryFileError(f"{path} was written before trajectories carried axis names; "
                                  f"`python -m harness compress` rewrites it with them.")
    ds = ds.isel(step=slice(0, frames))
    if tokens is not None:
        ds = ds.assign_coords(token_string=("token", tokens.strings), dead=("token", tokens.dead_mask))
    return ds
