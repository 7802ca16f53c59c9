"""Every study under sweeps/ runs at its smoke size ([sizes.smoke]: 2 runs of 3 steps): the
runs finish and every cross-run expectation is evaluated on them, with a verdict and a message
that names how many runs it read. Pass or fail at 3 steps is not the point (the answers need
the full studies, docs/findings.md); a study file that no longer loads, runs or checks is.
The findings' figure script (docs/figures/make_figures.py) then runs on those smoke studies.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from harness.sweep.run import load_sweep, run_sweep
from harness.sweep.spec import SweepError

ROOT = Path(__file__).resolve().parent.parent
STUDIES = sorted((ROOT / "sweeps").glob("*.toml"))


@pytest.fixture(scope="module")
def smoke_studies(tmp_path_factory) -> tuple[Path, dict]:
    """Every study run at its smoke size into one --out folder: (folder, {study path: result})."""
    out = tmp_path_factory.mktemp("studies")
    return out, {path: run_sweep(load_sweep(path, size="smoke"), out, workers=2, progress=False) for path in STUDIES}


def test_there_are_studies():
    assert {p.stem for p in STUDIES} >= {"flannel_1_seeds", "flannel_2_untied_seeds", "init_std", "lr_decay"}


@pytest.mark.slow
@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_runs_at_smoke_size_and_every_expectation_gets_a_verdict(path, smoke_studies):
    full, smoke = load_sweep(path), load_sweep(path, size="smoke")
    assert len(smoke.runs) <= 2 < len(full.runs) or len(full.runs) <= 2
    assert all(r.scenario.train.steps <= 3 for r in smoke.runs)
    result = smoke_studies[1][path]
    assert result.failed_runs == []
    assert sorted(result.index["runs"]) == sorted(r.id for r in smoke.runs)
    assert [v.id for v in result.cross] == [e.id for e in smoke.expect_all]
    for verdict in result.cross:
        assert verdict.n_runs >= 1 and verdict.message, verdict
        assert verdict.n_passed == verdict.n_runs - len(verdict.broken)


def test_sizes_are_checked_naming_the_file_and_key(tmp_path):
    study = tmp_path / "study.toml"
    scenario = (ROOT / "scenarios" / "flannel_1.toml").as_posix()
    head = f'scenario = "{scenario}"\n[axes]\n"init.seed" = [1, 2]\n'
    study.write_text(head + '[sizes.smoke]\naxes = {"init.std" = [0.1]}\n', encoding="utf-8")
    with pytest.raises(SweepError, match=r"study.toml: sizes.smoke.axes.init.std: not an axis of this sweep"):
        load_sweep(study, size="smoke")
    with pytest.raises(SweepError, match=r"study.toml: no \[sizes.tiny\] table. Sizes: smoke"):
        load_sweep(study, size="tiny")
    study.write_text(head + '[sizes.smoke]\nsteps = 3\n', encoding="utf-8")
    with pytest.raises(SweepError, match=r"study.toml: sizes.smoke must be a table of set and axes"):
        load_sweep(study, size="smoke")
    study.write_text(head + '[sizes.smoke]\nset = {"train.steps" = 3}\naxes = {"init.seed" = [5]}\n', encoding="utf-8")
    (run,) = load_sweep(study, size="smoke").runs
    assert (run.scenario.train.steps, run.scenario.init.seed) == (3, 5)
    assert [r.scenario.train.steps for r in load_sweep(study).runs] == [1000, 1000]


@pytest.mark.slow
def test_the_findings_figures_are_made_from_the_studies(smoke_studies, tmp_path):
    """make_figures.py measures every finished run of the four studies and writes the findings'
    PNGs and numbers, the inhale and outward share from the origin beside the centroid ones."""
    out, results = smoke_studies
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs" / "figures" / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    make_figures.main(out, tmp_path, size="smoke")
    assert {p.name for p in tmp_path.glob("*.png")} == {p.name for p in (ROOT / "docs" / "figures").glob("*.png")}
    numbers = json.loads((tmp_path / "findings.json").read_text(encoding="utf-8"))
    ran = {path.stem: sorted(result.index["runs"]) for path, result in results.items()}
    assert sorted(r["id"] for r in numbers["flannel_1_seeds"]) == ran["flannel_1_seeds"]
    assert sorted(r["id"] for r in numbers["init_and_lr"]) == sorted(ran["init_std"] + ran["lr_decay"])
    for run in numbers["flannel_1_seeds"]:
        assert run["inhale"]["center"] == "centroid" and run["inhale_origin"]["center"] == "origin"
        assert run["outward_origin"]["center"] == "origin" and run["outward_origin"]["moving_steps"] > 0
        assert run["inhale_origin"]["radius_start"] != run["inhale"]["radius_start"]
        assert {"supernova", "freeze", "flux", "collapse"} <= set(run)
