"""`python -m harness report`: figures (checked as figure objects), report.json and report.md,
on a real recorded run of a tiny scenario."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from core.trajectory import Trajectory
from harness.report.analysis import analyse
from harness.cli import main
from harness.report.figures import make_figures
from harness.runner import run_scenario
from harness.scenario.load import load_scenario


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data):
    """A tied and an untied tiny run, 6 steps each, E and W recorded."""
    from conftest import TINY_SCENARIO

    out = tmp_path_factory.mktemp("runs")
    paths = {}
    for tied in (True, False):
        name = "tiny_tied" if tied else "tiny_untied"
        scenario_path = out / f"{name}.toml"
        scenario_path.write_text(TINY_SCENARIO.format(name=name, tied=str(tied).lower(), tokenizer=tiny_data[0],
                                                      corpus=tiny_data[1], steps=6, smoke_steps=6,
                                                      tensors='["E", "W", "loss"]'), encoding="utf-8")
        paths[name] = run_scenario(load_scenario(scenario_path), out, progress=False).path
    return paths


@pytest.mark.parametrize("name, extra", [("tiny_tied", set()), ("tiny_untied", {"e_minus_w"})])
def test_every_figure_has_a_title_labelled_axes_and_data(runs, name, extra):
    figures = make_figures(analyse(runs[name]))
    assert set(figures) == {"displacement", "cloud", "comoving", "radial", "lattice", "indicator"} | extra
    for stem, fig in figures.items():
        assert fig._suptitle is not None and fig._suptitle.get_text(), stem
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), f"{stem}: an axis without labels"
            assert ax.lines or ax.patches, f"{stem}: an empty panel"
        if stem in ("displacement", "cloud"):
            labels = {line.get_label() for ax in fig.axes for line in ax.lines}
            expected = {"W dead", "W live"} | ({"E dead", "E live"} if name == "tiny_untied" else set())
            assert expected <= labels, f"{stem}: {labels}"
            assert all(len(line.get_xdata()) == 7 for line in fig.axes[0].lines)  # 7 frames: steps 0..6
        FigureCanvasAgg(fig).draw()  # lay out as savefig would: every label must fit inside the figure
        inside = fig.bbox.expanded(1.001, 1.001)
        for ax in fig.axes:
            for label in (ax.xaxis.label, ax.yaxis.label):
                box = label.get_window_extent()
                assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), \
                    f"{stem}: axis label {label.get_text()!r} is cut off"


def test_report_command_writes_figures_json_and_markdown(runs, tmp_path, capsys):
    assert main(["report", str(runs["tiny_untied"]), "--out", str(tmp_path / "rep"), "-q"]) == 0
    assert "report: " in capsys.readouterr().out
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs == sorted(f"{s}.png" for s in ("displacement", "cloud", "comoving", "radial", "lattice",
                                               "indicator", "e_minus_w"))
    for png in pngs:
        data = (tmp_path / "rep" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png
    summary = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert summary["frames"] == 7 and summary["last_step"] == 6 and not summary["tied"]
    assert summary["tensors"]["E"]["dead"]["final_displacement_mean"] == 0.0  # untied: dead rows of E are frozen
    assert summary["tensors"]["E"]["live"]["final_displacement_mean"] > 0
    assert summary["tensors"]["E"]["last_moved_step"]["dead"]["never_moved"] == summary["dead_tokens"]
    assert summary["E_minus_W"]["all"] > 0
    with Trajectory(runs["tiny_untied"]) as traj:  # 6 small batches leave live tokens out
        unfed = np.setdiff1d(traj.never_input, traj.dead)
    assert summary["live_never_input_tokens"] == len(unfed) > 0
    # an untied run: E rows of tokens never fed in stay put, their W rows move (softmax gradient)
    assert summary["tensors"]["E"]["last_moved_step"]["live_never_input"]["never_moved"] == len(unfed)
    assert summary["tensors"]["W"]["last_moved_step"]["live_never_input"]["never_moved"] < len(unfed)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"{len(unfed):,} of them never an input in the run's batches" in md
    assert "- live-but-never-input: " in md
    assert "| mean displacement from step 0 (final) | 0 |" in md and "![e_minus_w.png](e_minus_w.png)" in md


def test_report_defaults_beside_the_run_and_names_a_missing_file(runs, tmp_path, capsys):
    assert main(["report", str(runs["tiny_tied"]), "-q"]) == 0
    assert (runs["tiny_tied"].parent / "tiny_tied_report" / "report.md").is_file()
    assert main(["report", str(tmp_path / "nope.h5")]) == 2
    assert "nope.h5" in capsys.readouterr().err
