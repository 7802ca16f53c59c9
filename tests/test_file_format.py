"""Trajectory files any HDF5 reader opens: a distro h5dump/h5ls (HDF5 1.10) reads every object of a
real run, and xarray (h5netcdf) sees named axes with the recorded steps as the frame coordinate."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from core.trajectory import Trajectory
from harness.cli import main

REPO = Path(__file__).resolve().parent.parent
H5TOOLS = shutil.which("h5dump") and shutil.which("h5ls")
needs_h5tools = pytest.mark.skipif(not H5TOOLS, reason="h5dump/h5ls (Debian hdf5-tools) not installed: the test of "
                                   "what a non-Python HDF5 reader sees did NOT run (.ci/run installs them as root)")


@pytest.fixture(scope="module", params=["flannel_1", "flannel_2"], ids=["tied", "untied"])
def smoke_run(request, tmp_path_factory) -> Path:
    """A real seed scenario at smoke scale, every parameter-shaped tensor and the logits recorded."""
    out = tmp_path_factory.mktemp(request.param)
    tensors = '["E","W","grad_E","exp_avg_sq_W","logits","loss","lr","grad_norm"]'
    code = main(["run", str(REPO / "scenarios" / f"{request.param}.toml"), "--scale", "smoke", "--out", str(out),
                 "--no-check", "-q", "--set", f"record.tensors={tensors}"])
    assert code == 0
    return out / f"{request.param}.h5"


@needs_h5tools
def test_h5dump_and_h5ls_read_every_object(smoke_run):
    header = subprocess.run(["h5dump", "-H", str(smoke_run)], capture_output=True, text=True, timeout=60)
    assert header.returncode == 0, header.stderr[-1000:]
    assert "error" not in (header.stdout + header.stderr).lower()
    assert 'DATASET "dead_mask"' in header.stdout and 'DATASET "W"' in header.stdout
    listing = subprocess.run(["h5ls", "-r", str(smoke_run)], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "*ERROR*" not in listing.stdout, listing.stdout
    for name in ("/tokens/dead_mask", "/tokens/strings", "/W", "/step", "/token", "/dim"):
        assert re.search(rf"^{re.escape(name)}\s+Dataset", listing.stdout, flags=re.MULTILINE), name


@needs_h5tools
def test_h5dump_prints_the_exact_bf16_values_of_w(smoke_run):
    frame, row, count = 2, 123, 8
    dumped = subprocess.run(["h5dump", "-d", "/W", "-s", f"{frame},{row},0", "-c", f"1,1,{count}", "-m", "%.25g",
                             str(smoke_run)], capture_output=True, text=True, timeout=60, check=True).stdout
    values = re.findall(rf"\({frame},{row},\d+\): ([-+.0-9e]+)", dumped)
    assert len(values) == count, dumped
    got = np.array([float(v) for v in values], dtype=np.float64)
    with Trajectory(smoke_run) as traj:
        want = traj["W"][frame][row, :count].double().numpy()
    assert np.array_equal(got, want), (got, want)
    assert np.array_equal(got.astype(np.float32), torch.tensor(got).bfloat16().float().numpy())  # bf16 values


def test_xarray_sees_named_axes_and_the_recorded_steps(smoke_run):
    xarray = pytest.importorskip("xarray", reason="the optional extra `xarray` (xarray, h5netcdf) is not installed")
    with xarray.open_dataset(smoke_run, engine="h5netcdf") as ds, Trajectory(smoke_run) as traj:
        assert ds["W"].dims == ("step", "token", "dim") and ds["logits"].dims == ("step", "token")
        assert ds["loss"].dims == ("step",)
        assert ds["step"].values.tolist() == traj.steps.tolist() == [0, 1, 2, 3]
        assert "unembedding W" in ds["W"].attrs["long_name"] and ds["loss"].attrs["units"] == "nats"
        last = int(traj.steps[-1])
        assert np.array_equal(ds["W"].sel(step=last).values, traj["W"][-1].float().numpy())
        assert np.array_equal(ds["exp_avg_sq_W"].values, traj["exp_avg_sq_W"][:].float().numpy())
        assert np.isnan(ds["loss"].values[0]) and np.array_equal(ds["loss"].values[1:], traj["loss"][1:])
    with xarray.open_dataset(smoke_run, engine="h5netcdf", group="tokens") as tokens, Trajectory(smoke_run) as traj:
        assert tokens["dead_mask"].dims == ("token",)
        assert tokens["strings"].values.tolist() == traj.strings  # str, not bytes


def test_to_xarray_adds_token_coordinates(smoke_run):
    pytest.importorskip("xarray", reason="the optional extra `xarray` (xarray, h5netcdf) is not installed")
    with Trajectory(smoke_run) as traj:
        ds = traj.to_xarray()
        dead_mean = ds["W"].isel(step=-1).where(ds["dead"]).mean().item()
        want = traj["W"][-1][torch.as_tensor(traj.dead)].double().mean().item()
        assert dead_mean == pytest.approx(want, rel=1e-6)
        assert ds["token_string"].values.tolist() == traj.strings
        assert "token" not in traj.names and "dim" not in traj.names  # coordinates, not recorded quantities
