"""Every study under sweeps/ runs at its smoke size ([sizes.smoke]: 2 runs of 3 steps): the
runs finish and every cross-run expectation is evaluated on them, with a verdict and a message
that names how many runs it read. Pass or fail at 3 steps is not the point (the answers need
the full studies, docs/findings.md); a study file that no longer loads, runs or checks is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.sweep.run import load_sweep, run_sweep
from harness.sweep.spec import SweepError

ROOT = Path(__file__).resolve().parent.parent
STUDIES = sorted((ROOT / "sweeps").glob("*.toml"))


def test_there_are_studies():
    assert {p.stem for p in STUDIES} >= {"flannel_1_seeds", "flannel_2_untied_seeds", "init_std", "lr_decay"}


@pytest.mark.slow
@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_runs_at_smoke_size_and_every_expectation_gets_a_verdict(path, tmp_path):
    full, smoke = load_sweep(path), load_sweep(path, size="smoke")
    assert len(smoke.runs) <= 2 < len(full.runs) or len(full.runs) <= 2
    assert all(r.scenario.train.steps <= 3 for r in smoke.runs)
    result = run_sweep(smoke, tmp_path, workers=2, progress=False)
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
