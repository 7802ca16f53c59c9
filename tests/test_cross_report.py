"""`python -m harness report SWEEP_DIR`: the cross-run report of a real sweep (2 seeds x tied and
untied, tiny scenario, 5 steps): runs grouped by the non-seed axis, means and bands that are
the per-run values' statistics, figures whose legends name the axis values, bad folders."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from conftest import TINY_SCENARIO
from harness.checks.measures import cloud_radius
from core.trajectory import Trajectory
from harness.cli import main
from harness.report.cross import JSON_NAME, cross_report, write_cross_report
from harness.report.cross_figures import quantity_figure
from harness.report.series import SERIES, _analysis, register_series
from harness.sweep.index import read_index, write_index
from harness.sweep.run import load_sweep, run_sweep

STEPS = 5
SWEEP = f"""\
name = "cross"
scenario = "tiny.toml"
set = {{"train.steps" = {STEPS}}}

[axes]
"init.seed" = [0, 1]
"model.tied" = [true, false]
"""
QUANTITIES = {"dead_displacement", "live_displacement", "dead_radius", "live_radius", "dead_step", "live_step",
              "dead_outward_share", "live_outward_share", "loss"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_data):
    """The finished sweep folder and its written report (default place)."""
    d = tmp_path_factory.mktemp("sweep")
    (d / "tiny.toml").write_text(TINY_SCENARIO.format(name="tiny", tied="false", tokenizer=tiny_data[0],
                                                      corpus=tiny_data[1], steps=4, smoke_steps=3,
                                                      tensors='["E", "W", "loss"]'), encoding="utf-8")
    (d / "cross.toml").write_text(SWEEP, encoding="utf-8")
    result = run_sweep(load_sweep(d / "cross.toml"), d / "out", workers=2, progress=False)
    assert not result.failed_runs
    return result.folder, write_cross_report(result.folder)


def report_json(sweep) -> dict:
    return json.loads(sweep[1][JSON_NAME].read_text(encoding="utf-8"))


def test_runs_are_grouped_by_the_non_seed_axis(sweep):
    folder, _ = sweep
    report = report_json(sweep)
    index = read_index(folder)
    assert report["seed_axes"] == ["init.seed"] and report["group_axes"] == ["model.tied"]
    assert set(report["runs"]) == set(index["runs"]) and report["unfinished_runs"] == {}
    groups = {g["label"]: g for g in report["groups"]}
    assert list(groups) == ["model.tied=false", "model.tied=true"]
    for label, tied in (("model.tied=false", False), ("model.tied=true", True)):
        runs = groups[label]["runs"]
        assert len(runs) == 2 and groups[label]["axes"] == {"model.tied": tied}
        assert sorted(index["runs"][r]["axes"]["init.seed"] for r in runs) == [0, 1]
        assert all(index["runs"][r]["axes"]["model.tied"] is tied for r in runs)
        for r in runs:  # what the run really was, read from its file
            with h5py.File(folder / index["runs"][r]["file"], "r") as f:
                assert bool(f.attrs["tied"]) is tied


def test_each_group_line_is_the_mean_and_band_of_its_runs_values(sweep):
    folder, _ = sweep
    report = report_json(sweep)
    assert set(report["quantities"]) == QUANTITIES
    per_run = {rid: {name: SERIES[name].fn(folder / run["file"]) for name in QUANTITIES}  # each run's own values
               for rid, run in report["runs"].items()}
    for name, q in report["quantities"].items():
        assert q["missing"] == {}, name
        for label, g in q["groups"].items():
            steps = [per_run[r][name][0] for r in g["runs"]]
            values = np.stack([per_run[r][name][1] for r in g["runs"]])  # (2 runs, T)
            assert g["n_runs"] == 2 and g["steps"] == steps[0].tolist() == steps[1].tolist()
            got = {k: np.array([np.nan if v is None else v for v in g[k]]) for k in ("mean", "min", "max", "std")}
            assert np.isnan(got["mean"]).tolist() == np.isnan(values).all(0).tolist()  # NaN only where every run is
            have = ~np.isnan(values).all(0)
            with np.errstate(all="ignore"):
                for k, fn in (("mean", np.nanmean), ("min", np.nanmin), ("max", np.nanmax), ("std", np.nanstd)):
                    np.testing.assert_allclose(got[k][have], fn(values[:, have], 0), rtol=1e-12,
                                               err_msg=f"{name} {label} {k}")
            assert (got["min"][have] <= got["mean"][have] + 1e-15).all()
            assert (got["mean"][have] <= got["max"][have] + 1e-15).all()


def test_loss_and_radius_means_match_the_files_read_directly(sweep):
    folder, _ = sweep
    report = report_json(sweep)
    for label, g in report["quantities"]["loss"]["groups"].items():
        files = [folder / report["runs"][r]["file"] for r in g["runs"]]
        losses = []
        for path in files:
            with h5py.File(path, "r") as f:
                assert f["step"][1:].tolist() == g["steps"] == list(range(1, STEPS + 1))
                losses.append(f["loss"][1:].astype(np.float64))
        np.testing.assert_allclose(g["mean"], np.mean(losses, 0), rtol=1e-12)
        radii = []
        for path in files:
            with Trajectory(path) as traj:
                radii.append(cloud_radius(traj, "W", traj.dead))
        np.testing.assert_allclose(report["quantities"]["dead_radius"]["groups"][label]["mean"], np.mean(radii, 0),
                                   rtol=1e-6)


def test_figures_exist_and_their_legends_name_the_axis_values(sweep):
    _, written = sweep
    report = report_json(sweep)
    md = written["report.md"].read_text(encoding="utf-8")
    for name in QUANTITIES:
        assert written[name].stat().st_size > 10_000 and f"({name}.png)" in md
        fig = quantity_figure(name, report["quantities"][name], report)
        legend = fig.axes[0].get_legend()
        assert [t.get_text() for t in legend.get_texts()] == ["model.tied=false (2 runs)", "model.tied=true (2 runs)"]
        assert legend.get_title().get_text() == "model.tied"
        assert len(fig.axes[0].collections) == 2  # a band per group
    assert "| model.tied=false | 2 |" in md and "min-max" in md


def test_the_report_command_takes_a_sweep_folder_and_reports_unfinished_runs(sweep, tmp_path, capsys):
    folder, _ = sweep
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("cross_report"))
    index = read_index(copy)
    failed = sorted(index["runs"])[0]
    index["runs"][failed]["status"] = "failed"
    write_index(copy, index)
    assert main(["report", str(copy), "--out", str(tmp_path / "rep")]) == 0
    assert f"cross-run report: {tmp_path / 'rep' / 'report.md'}  (9 figures)" in capsys.readouterr().out
    report = json.loads((tmp_path / "rep" / JSON_NAME).read_text(encoding="utf-8"))
    assert report["unfinished_runs"] == {failed: "failed"} and failed not in report["runs"]
    assert sorted(g["n_runs"] for g in report["quantities"]["loss"]["groups"].values()) == [1, 2]
    assert "1 not finished, not read" in (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")


def last_step(path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return np.array([0]), np.array([float(f["step"][-1])])


def test_each_run_is_analysed_once_for_all_quantities(sweep):
    folder, _ = sweep
    _analysis.cache_clear()
    report = cross_report(folder)
    assert len(report["quantities"]) == len(QUANTITIES)
    assert _analysis.cache_info().misses == len(report["runs"]) == 4


def test_a_series_joins_with_one_line(sweep):
    folder, _ = sweep
    register_series("final_step", last_step, "last recorded step")
    try:
        report = cross_report(folder, ["final_step"])
    finally:
        SERIES.pop("final_step")
    assert {label: g["mean"] for label, g in report["quantities"]["final_step"]["groups"].items()} == {
        "model.tied=false": [STEPS], "model.tied=true": [STEPS]}


@pytest.mark.parametrize("case", ["no_index", "no_finished_run"])
def test_a_folder_that_is_not_a_finished_sweep_is_a_clear_error(sweep, tmp_path, capsys, case):
    target = tmp_path / "folder"
    target.mkdir()
    if case == "no_finished_run":
        write_index(target, {"sweep": "x", "runs": {"a": {"status": "pending", "file": "a.h5", "axes": {}}}})
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert str(target) in err and "Traceback" not in err
    assert ("not a sweep folder" if case == "no_index" else "no finished run") in err
