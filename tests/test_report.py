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


SHORT = ["train.steps=3", "record.every=2"]  # tiny_short: frames at steps 0, 2 and 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data):
    """A tied and an untied tiny run, 6 steps each, E and W recorded; and tiny_short, untied,
    3 steps recorded every 2 (`--set` overrides)."""
    from conftest import TINY_SCENARIO

    out = tmp_path_factory.mktemp("runs")
    paths = {}
    for name, tied, overrides in (("tiny_tied", True, []), ("tiny_untied", False, []), ("tiny_short", False, SHORT)):
        scenario_path = out / "scenarios" / f"{name}.toml"
        scenario_path.parent.mkdir(exist_ok=True)
        scenario_path.write_text(TINY_SCENARIO.format(name=name, tied=str(tied).lower(), tokenizer=tiny_data[0],
                                                      corpus=tiny_data[1], steps=6, smoke_steps=6,
                                                      tensors='["E", "W", "loss"]'), encoding="utf-8")
        paths[name] = run_scenario(load_scenario(scenario_path, overrides=overrides), out, progress=False).path
    return paths


@pytest.mark.parametrize("name, extra", [("tiny_tied", set()), ("tiny_untied", {"e_minus_w"})])
def test_every_figure_has_a_title_labelled_axes_and_data(runs, name, extra):
    figures = make_figures(analyse(runs[name]))
    assert set(figures) == {"training", "displacement", "cloud", "comoving", "radial", "lattice", "indicator"} | extra
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
    assert pngs == sorted(f"{s}.png" for s in ("training", "displacement", "cloud", "comoving", "radial", "lattice",
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


def drawn(figures: dict) -> dict:
    for fig in figures.values():
        FigureCanvasAgg(fig).draw()  # ticks and legends as savefig makes them
    return figures


def test_training_curves_plot_the_recorded_loss_lr_and_grad_norm(runs):
    fig = make_figures(analyse(runs["tiny_untied"]))["training"]
    with Trajectory(runs["tiny_untied"]) as traj:
        recorded = {name: traj[name][:] for name in ("loss", "lr", "grad_norm")}
        steps = traj.steps
    assert [ax.get_ylabel() for ax in fig.axes] == ["training loss (nats)", "learning rate", "gradient norm"]
    for ax, name in zip(fig.axes, ("loss", "lr", "grad_norm")):
        (line,) = ax.lines
        finite = np.isfinite(recorded[name])
        assert finite.sum() >= 6, name
        assert np.array_equal(line.get_xdata(), steps[finite]), name
        assert np.allclose(line.get_ydata(), recorded[name][finite].astype(np.float64)), name


@pytest.mark.parametrize("name", ["tiny_untied", "tiny_short"])
def test_every_figure_names_the_run_and_ticks_whole_steps(runs, name):
    figures = drawn(make_figures(analyse(runs[name])))
    for stem, fig in figures.items():
        title = fig._suptitle.get_text()
        assert f"run {name}" in title, stem
        if name == "tiny_short":
            assert "--set record.every=2; --set train.steps=3" in title, stem
        for ax in fig.axes:
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if low <= t <= high]
            assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), f"{stem}: ticks {ticks}"


def test_changes_between_frames_say_per_frame_when_frames_are_steps_apart(runs):
    for name, per in (("tiny_untied", "per step"), ("tiny_short", "per frame")):
        figures = make_figures(analyse(runs[name]))
        labels = {stem: [ax.get_ylabel().replace("\n", " ") for ax in fig.axes] for stem, fig in figures.items()}
        assert labels["displacement"][1].endswith(per) and per in labels["lattice"][0], labels
        assert all(per in label for label in labels["radial"]), labels["radial"]
        steps_apart = "optimizer step (a frame every 2 steps)"
        assert (figures["displacement"].axes[1].get_xlabel() == steps_apart) == (name == "tiny_short")


def test_a_log_scale_legend_lists_only_visible_series(runs):
    """Untied: the dead rows of E never move, so their step-to-step change is 0 at every frame."""
    for fig in drawn(make_figures(analyse(runs["tiny_untied"]))).values():
        for ax in fig.axes:
            if ax.get_yscale() != "log" or ax.get_legend() is None:
                continue
            shown = {text.get_text() for text in ax.get_legend().get_texts()}
            for line in ax.lines:
                if line.get_label() in shown:
                    y = np.asarray(line.get_ydata(), dtype=float)
                    assert (np.isfinite(y) & (y > 0)).any(), f"invisible on a log scale: {line.get_label()}"
    bottom = make_figures(analyse(runs["tiny_untied"]))["displacement"].axes[1]
    assert {t.get_text() for t in bottom.get_legend().get_texts()} == {"E live", "W dead", "W live"}
    assert any("not drawn, 0 at every frame: E dead" in t.get_text() for t in bottom.texts)


def test_report_md_names_the_run_and_says_when_no_token_ever_moved(runs, tmp_path):
    assert main(["report", str(runs["tiny_short"]), "--out", str(tmp_path), "-q"]) == 0
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# Report: tiny_short (scale full; --set record.every=2; --set train.steps=3)\n")
    assert "3 frames up to step 3 (a frame every 2 steps: changes are per frame)" in md
    assert "- dead: none of its " in md and "tokens ever moved." in md  # E's dead rows: untied, never fed in
    assert "the last move of a dead token was at step 0" not in md
    assert "- live: " in md and "the last move of a live token was at step 3" in md
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["record_every"] == 2 and summary["run"].startswith("tiny_short")
    assert summary["training"]["loss"]["last"] > 0
