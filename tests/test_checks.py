"""Checks on real recorded runs of tiny scenarios, the registry, and the pytest plugin."""

from __future__ import annotations

import shlex
import shutil
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from core.trajectory import Trajectory
from harness.checks import REGISTRY, CheckContext, check, get_check, run_check
from harness.runner import evaluate, run_scenario
from harness.scenario.load import load_scenario

ALL_TENSORS = '["E", "W", "grad_E", "grad_W", "exp_avg_E", "exp_avg_sq_E", "logits", "loss"]'
# The scenario plugin is loaded by this project's pytest options (pyproject.toml), not by a global
# entry point: the pytest runs these tests start in a temporary folder get the same options.
PYTEST_OPTIONS = shlex.split(tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(
    encoding="utf-8"))["tool"]["pytest"]["ini_options"]["addopts"])


@pytest.fixture()
def untied_run(write_scenario, tmp_path):
    scenario = load_scenario(write_scenario(tensors=ALL_TENSORS, steps=4))
    return scenario, run_scenario(scenario, tmp_path / "runs", progress=False).path


def verdict(scenario, path, name, **args):
    with Trajectory(path) as traj:
        return run_check(name, CheckContext(traj, scenario), args)


def test_untied_invariants_hold_on_a_recorded_run(untied_run):
    scenario, path = untied_run
    assert verdict(scenario, path, "equal", a="E", b="W", step=0).passed
    assert verdict(scenario, path, "zero_displacement", tensor="E", tokens="dead").passed
    assert verdict(scenario, path, "zero_gradient", tensor="grad_E", tokens="dead").passed
    assert verdict(scenario, path, "nonzero_displacement", tensor="W", tokens="dead").passed
    assert verdict(scenario, path, "finite", tensor="logits").passed
    assert verdict(scenario, path, "finite", tensor="loss").passed


def test_wrong_expectation_names_the_tokens_and_steps_that_moved(untied_run):
    scenario, path = untied_run
    result = verdict(scenario, path, "zero_displacement", tensor="W", tokens="dead")  # dead rows of W DO move
    assert not result.passed
    with Trajectory(path) as traj:
        n_dead = len(traj.dead)
        moved_at_1 = (traj["W"][1, traj.dead].view(torch.int16) != traj["W"][0, traj.dead].view(torch.int16))
    assert f"{moved_at_1.any(dim=1).sum().item()} of {n_dead} moved, first at step 1" in result.message
    assert "tokens that moved most: [" in result.message and "steps of first moves: [1" in result.message
    assert set(result.worst["tokens"]) <= set(range(800)) and result.worst["first_steps"][0] == 1


def test_other_wrong_expectations_fail_with_numbers(untied_run):
    scenario, path = untied_run
    e_w = verdict(scenario, path, "equal", a="E", b="W", step=-1)
    assert not e_w.passed and "rows differ, largest |E - W|" in e_w.message
    grad = verdict(scenario, path, "zero_gradient", tensor="grad_E", tokens="live")
    assert not grad.passed and "tokens had nonzero gradient" in grad.message and "at steps [1, 2, 3, 4]" in grad.message
    stuck = verdict(scenario, path, "nonzero_displacement", tensor="E", tokens="dead")
    assert not stuck.passed and "0 of" in stuck.message and "unmoved:" in stuck.message
    tied = verdict(scenario, path, "tied_identity")
    assert not tied.passed and "E and W were separate parameters (attribute embeddings_shared = False)" in tied.message


def test_explicit_token_ids_and_all(untied_run):
    scenario, path = untied_run
    with Trajectory(path) as traj:
        dead = traj.dead[:3].tolist()
    assert verdict(scenario, path, "zero_displacement", tensor="E", tokens=dead).passed
    assert not verdict(scenario, path, "zero_displacement", tensor="E", tokens="all").passed


def test_loss_decreases_reads_the_recorded_loss(write_scenario, tmp_path):
    scenario = load_scenario(write_scenario(steps=30), overrides=["optimizer.lr=0.01", "optimizer.schedule=constant"])
    path = run_scenario(scenario, tmp_path / "runs", progress=False).path
    assert verdict(scenario, path, "loss_decreases", window=5, min_drop=0.1).passed
    too_much = verdict(scenario, path, "loss_decreases", window=5, min_drop=100.0)
    assert not too_much.passed and "expected the loss to drop by more than 100.0" in too_much.message


def test_deterministic_reruns_and_compares_every_dataset(write_scenario, tmp_path):
    scenario = load_scenario(write_scenario(tensors=ALL_TENSORS, steps=5))
    path = run_scenario(scenario, tmp_path / "runs", progress=False).path
    (expectation_verdict,) = [v for e, v in evaluate(scenario, path) if e.check == "deterministic"] or [None]
    assert expectation_verdict is None  # not declared in this scenario: evaluate runs only declared ones
    from harness.runner import rerun

    with Trajectory(path) as traj:
        result = get_check("deterministic")(CheckContext(traj, scenario, rerun=lambda n: rerun(scenario, n)), steps=3)
    assert result.passed and "reproduced all" in result.message
    # A different data seed is a different run: the same check on it must fail.
    other = load_scenario(write_scenario(tensors=ALL_TENSORS, steps=5), overrides=["data.seed=7"])
    with Trajectory(path) as traj:
        failed = get_check("deterministic")(CheckContext(traj, scenario, rerun=lambda n: rerun(other, n)), steps=3)
    assert not failed.passed and "it differs first at step" in failed.message


def test_decay_below_ulp_noop_checks_its_precondition(write_scenario, tmp_path):
    below = load_scenario(write_scenario(), overrides=["optimizer.lr=3e-4", "optimizer.weight_decay=0.1"])
    path = run_scenario(below, tmp_path / "below", progress=False).path
    result = verdict(below, path, "decay_below_ulp_noop", tensor="E", tokens="dead")
    assert result.passed and "largest recorded lr 0.0003 * weight decay 0.1" in result.message
    assert "= 3e-05 < 2^-9" in result.message
    above = load_scenario(write_scenario(), overrides=["optimizer.lr=0.05", "optimizer.weight_decay=0.5"])
    path = run_scenario(above, tmp_path / "above", progress=False).path
    refused = verdict(above, path, "decay_below_ulp_noop", tensor="E", tokens="dead")
    assert not refused.passed and "= 0.025: not below 2^-9" in refused.message
    moved = verdict(above, path, "zero_displacement", tensor="E", tokens="dead")
    assert not moved.passed, "decay above half an ULP does shrink the dead rows"


def test_tied_run_identity_and_file_layout(write_scenario, tmp_path):
    scenario = load_scenario(write_scenario(tied=True, tensors='["W", "loss"]'))
    path = run_scenario(scenario, tmp_path / "runs", progress=False).path
    assert verdict(scenario, path, "tied_identity").passed
    with Trajectory(path) as traj:
        assert traj.meta["scenario"]["model"]["tied"] is True
        assert traj.meta["corpus_fingerprint"].startswith("sha256:")
        assert traj.meta["seeds"] == {"init": 42, "data": 42}
        assert len(traj) == 5 and np.isnan(traj["loss"][0])


def test_registry_rejects_duplicates_and_names_the_available_checks():
    with pytest.raises(ValueError, match="Check 'finite' is already registered"):
        check("finite")(lambda ctx: None)
    with pytest.raises(KeyError, match="Unknown check 'x'. Available: .*decay_below_ulp_noop, deterministic, displacement_exceeds, equal"):
        get_check("x")
    assert {"equal", "zero_displacement", "zero_gradient", "nonzero_displacement", "tied_identity", "finite",
            "loss_decreases", "deterministic", "decay_below_ulp_noop", "displacement_exceeds",
            "radius_dips_before_growing"} <= set(REGISTRY)


def test_displacement_exceeds_compares_token_sets_on_the_recorded_run(untied_run):
    scenario, path = untied_run
    live_e = verdict(scenario, path, "displacement_exceeds", tensor="E", tokens="live", than="dead")
    assert live_e.passed and live_e.message.endswith("dead 0")  # dead rows of E never move
    dead_e = verdict(scenario, path, "displacement_exceeds", tensor="E", tokens="dead", than="live")
    assert not dead_e.passed and dead_e.message.startswith("expected dead to move further than live")


def test_exploratory_expectation_is_reported_but_never_fails(pytester, write_scenario, capsys):
    from harness.cli import main

    path = write_scenario(
        '\n[[expect]]\ncheck = "displacement_exceeds"\ntensor = "E"\ntokens = "dead"\n'  # false: dead E is frozen
        'exploratory = "do dead rows outrun live ones?"\n'
        '\n[[expect]]\ncheck = "displacement_exceeds"\ntensor = "E"\ntokens = "live"\nthan = "dead"\n'
        'exploratory = "the converse"\n'
    )
    result = pytester.runpytest(*PYTEST_OPTIONS, str(path), "-p", "no:cacheprovider", "-rxX")
    result.assert_outcomes(xfailed=1, xpassed=1)
    assert result.ret == 0
    assert main(["run", str(path), "--out", str(pytester.path / "cli"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "NO    tiny-dead-E-displacement_exceeds" in out and "YES   tiny-live-E-displacement_exceeds" in out


pytest_plugins = ["pytester"]


def test_plugin_turns_expectations_into_tests_with_readable_failures(pytester, write_scenario):
    path = write_scenario(
        '\n[[expect]]\ncheck = "zero_displacement"\ntensor = "E"\ntokens = "dead"\n'
        '\n[[expect]]\ncheck = "zero_displacement"\ntensor = "W"\ntokens = "dead"\n'  # wrong on purpose
        '\n[[expect]]\ncheck = "equal"\na = "E"\nb = "W"\nstep = -1\nxfail = "E and W diverge once trained"\n',
        folder="scenarios",
    )
    result = pytester.runpytest(*PYTEST_OPTIONS, str(path), "-p", "no:cacheprovider", "--scale", "smoke", "-rA")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    result.stdout.fnmatch_lines([
        "*scenario tiny (smoke scale, 3 steps)*",
        "*check    zero_displacement(tensor='W', tokens='dead')*",
        "*failed   expected W rows of dead tokens never to move;*first at step 1*tokens that moved most: [[]*",
        "*scenario runs*",
        "tiny *smoke * 3 steps*1 passed 1 failed 1 xfailed",
        "PASSED *tiny.toml::test_expect?tiny-dead-E-zero_displacement?",
        "XFAIL *tiny.toml::test_expect?tiny-E-W-equal? - E and W diverge once trained",
    ])


def test_plugin_set_overrides_every_scenario_and_rejects_unknown_keys(pytester, write_scenario):
    path = write_scenario('\n[[expect]]\ncheck = "finite"\ntensor = "W"\n', folder="scenarios")
    result = pytester.runpytest(*PYTEST_OPTIONS, str(path), "-p", "no:cacheprovider", "--set", "train.steps=2",
                                "--set", "record.tensors=[\"W\"]")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["tiny *smoke * 2 steps*1 passed"])
    bad = pytester.runpytest(*PYTEST_OPTIONS, str(path), "-p", "no:cacheprovider", "--set", "train.stepz=2")
    assert bad.ret != 0
    bad.stdout.fnmatch_lines(["*ERROR collecting*scenarios/tiny.toml*",
                              "--set train.stepz=2: unknown key train.stepz. Allowed in [[]train[]]: steps*"])


def test_e_rows_stay_put_until_the_first_batch_that_feeds_the_token_in(untied_run):
    """The run's recorded input tables against its recorded E: an untied run without weight
    decay moves a row of E only from the step whose batch first holds the token as input."""
    scenario, path = untied_run
    with Trajectory(path) as traj:
        first, counts = traj.first_input_step, traj.input_counts
        assert first.shape == counts.shape == (scenario.model.vocab_size,)
        assert ((first > 0) == (counts > 0)).all() and set(traj.dead) <= set(traj.never_input)
        assert 0 < len(traj.never_input) < scenario.model.vocab_size
        e = traj["E"][:].view(torch.int16).numpy()  # (frames, V, D): the raw bf16 bits
        steps = traj["step"][:]
        for frame, step in enumerate(steps):
            unfed = (first < 0) | (first > step)  # no batch up to this step held the token as input
            assert (e[frame][unfed] == e[0][unfed]).all(), f"a row of E moved before its token was an input (step {step})"
        assert list(steps) == list(range(len(steps)))  # a frame per step
        fed = np.flatnonzero(first > 0)
        moved_at_first_step = (e[first[fed], fed] != e[0][fed]).any(axis=-1)  # row of each fed token at its first step
        assert moved_at_first_step.mean() > 0.9, "rows of E do not move at the step that first feeds their token"
    assert verdict(scenario, path, "zero_displacement", tensor="E", tokens="never_input").passed
    assert not verdict(scenario, path, "zero_displacement", tensor="W", tokens="never_input").passed


def test_never_input_on_a_file_without_input_tables_names_the_missing_table(untied_run, tmp_path):
    scenario, path = untied_run
    old = tmp_path / "old.h5"  # as files recorded before the input tables existed
    shutil.copy(path, old)
    with h5py.File(old, "a") as f:
        del f["tokens/input_counts"], f["tokens/first_input_step"]
    with Trajectory(old) as traj:
        tables = traj.token_tables()
        assert tables.input_counts is None and tables.first_input_step is None
        assert np.array_equal(tables.dead_mask, traj.dead_mask) and len(tables.strings) == scenario.model.vocab_size
    with pytest.raises(KeyError, match=r"old\.h5 has no token table tokens/first_input_step \(recorded before"):
        verdict(scenario, old, "zero_displacement", tensor="E", tokens="never_input")
    assert verdict(scenario, old, "zero_displacement", tensor="E", tokens="dead").passed


def test_checks_that_read_live_facts_fail_on_a_file_without_them(write_scenario, tmp_path):
    """tied_identity and decay_below_ulp_noop read what the run recorded from its live objects
    (embeddings_shared, optimizer_groups, the lr dataset), never the scenario: a file without those
    records fails, naming the attribute."""
    decay = ["optimizer.lr=3e-4", "optimizer.weight_decay=0.1"]
    tied, untied = (load_scenario(write_scenario(tied=t, name=f"tied{t}"), overrides=decay) for t in (True, False))
    tied_path = run_scenario(tied, tmp_path / "tied", progress=False).path
    untied_path = run_scenario(untied, tmp_path / "untied", progress=False).path
    assert verdict(tied, tied_path, "tied_identity").passed
    assert verdict(untied, untied_path, "decay_below_ulp_noop", tensor="E", tokens="dead").passed
    for path in (tied_path, untied_path):
        with h5py.File(path, "r+") as f:
            del f.attrs["embeddings_shared"], f.attrs["optimizer_groups"]
    result = verdict(tied, tied_path, "tied_identity")
    assert not result.passed and "attribute embeddings_shared" in result.message
    result = verdict(untied, untied_path, "decay_below_ulp_noop", tensor="E", tokens="dead")
    assert not result.passed and "attribute optimizer_groups" in result.message


def test_token_set_checks_refuse_an_empty_set(untied_run):
    scenario, path = untied_run
    for name in ("zero_gradient", "zero_displacement", "nonzero_displacement"):
        result = verdict(scenario, path, name, tensor="grad_E" if name == "zero_gradient" else "E", tokens=[])
        assert not result.passed and "is empty" in result.message, (name, result.message)
