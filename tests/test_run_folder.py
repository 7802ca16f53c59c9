"""A run folder explains itself: OUT/<name>.toml (the resolved scenario, overrides marked) re-runs
the same trajectory bit for bit, OUT/<name>.log holds the console's lines without progress-bar
fragments, -q quiets the console, --no-check does not ask for what its checks would need."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest
from h5util import differing_attributes

from core.trajectory import Trajectory
from harness.cli import main
from harness.run_folder import scenario_toml, toml_value
from harness.scenario.cli import PROJECT_SCENARIOS
from harness.scenario.load import load_scenario

EXPECT_E = '\n[[expect]]\ncheck = "zero_displacement"\ntensor = "E"\ntokens = "dead"\n'


def test_the_run_folders_toml_reruns_a_bit_identical_trajectory(write_scenario, tmp_path, capsys):
    path = write_scenario(EXPECT_E)
    first, second = tmp_path / "first", tmp_path / "second"
    sets = ["--set", "record.every=2", "--set", "optimizer.lr=0.003"]
    assert main(["run", str(path), "--scale", "smoke", "--out", str(first), *sets, "-q"]) == 0
    toml = (first / "tiny.toml").read_text()
    assert "# command:  " in toml and "# overrides: --set optimizer.lr=0.003, --set record.every=2" in toml
    resolved = tomllib.loads(toml)
    assert resolved["record"]["every"] == 2 and resolved["optimizer"]["lr"] == 0.003
    assert resolved["train"]["steps"] == 3 and "scale" not in resolved  # the smoke scale, applied
    lines = toml.splitlines()
    assert "every = 2  # --set record.every=2" in lines and "lr = 0.003  # --set optimizer.lr=0.003" in lines
    assert "steps = 3  # scale smoke" in lines and "seq_len = 32" in lines  # unmarked: the file's own
    capsys.readouterr()
    assert main(["run", str(first / "tiny.toml"), "--out", str(second), "-q"]) == 0
    assert "PASS  tiny-dead-E-zero_displacement" in capsys.readouterr().out  # the expectation travels too
    # every dataset bit for bit (bf16 as raw bits); only what names the scenario file and scale differs
    assert differing_attributes(first / "tiny.h5", second / "tiny.h5") <= {"scenario", "scale", "overrides"}
    with Trajectory(second / "tiny.h5") as traj:
        assert traj.steps.tolist() == [0, 2, 3] and {"E", "W", "loss"} <= set(traj.names)
        assert traj.meta["scenario"]["optimizer"]["lr"] == 0.003

def test_the_log_file_has_the_console_lines_and_no_progress_bar(write_scenario, tmp_path):
    """In a subprocess (not a terminal): no bar anywhere; -q leaves warnings and results only."""
    path = write_scenario(EXPECT_E)
    command = [sys.executable, "-m", "harness", "run", str(path), "--scale", "smoke", "--set", "train.steps=2"]
    loud = subprocess.run(command + ["--out", str(tmp_path / "loud")], capture_output=True, text=True, timeout=600)
    quiet = subprocess.run(command + ["--out", str(tmp_path / "quiet"), "-q"], capture_output=True, text=True,
                           timeout=600)
    assert loud.returncode == quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "\r" not in loud.stderr and "it/s" not in loud.stderr and "step/s]" not in loud.stderr
    header = "tiny [smoke; --set train.steps=2]: 2 steps on cpu"
    assert header in loud.stderr and "step      2/2 | loss" in loud.stderr
    assert " INFO " not in quiet.stderr and quiet.stdout == quiet.stdout.replace("\r", "")
    for folder, proc in (("loud", loud), ("quiet", quiet)):
        log = (tmp_path / folder / "tiny.log").read_text()
        assert "\r" not in log and header in log and "step      2/2 | loss" in log  # -q quiets the console only
        assert log.index("are <unk>, characters tokenizer") < log.index(header)  # the data's warning, before
        assert f"trajectory: {tmp_path / folder / 'tiny.h5'}" in log and "PASS  tiny-dead-E-zero_displacement" in log
        assert "PASS  tiny-dead-E-zero_displacement" in proc.stdout


def test_no_check_does_not_ask_for_what_a_check_needs(write_scenario, tmp_path, capsys):
    path = write_scenario(EXPECT_E)
    without_e = ["--set", 'record.tensors=["W"]', "--scale", "smoke", "-q"]
    assert main(["run", str(path), "--out", str(tmp_path / "a"), *without_e]) == 2
    assert "E" in capsys.readouterr().err
    assert main(["run", str(path), "--out", str(tmp_path / "b"), *without_e, "--no-check"]) == 0
    assert "PASS" not in capsys.readouterr().out
    toml = (tmp_path / "b" / "tiny.toml").read_text()
    assert "expect" not in tomllib.loads(toml) and "or the run was started with --no-check" in toml


def test_a_scenario_file_in_the_output_folder_is_not_overwritten(write_scenario, tmp_path, caplog):
    path = write_scenario(folder="out")
    before = path.read_text()
    assert main(["run", str(path), "--out", str(path.parent), "--scale", "smoke", "-q"]) == 0
    assert path.read_text() == before
    assert "is not a run's resolved scenario: left as it is" in caplog.text


@pytest.mark.parametrize("path", sorted(PROJECT_SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_project_scenario_at_every_scale_reloads_from_its_resolved_toml(path, tmp_path):
    for scale in load_scenario(path).scales:
        scenario = load_scenario(path, scale=scale, overrides=["train.steps=7"])
        written = tmp_path / f"{scale}.toml"
        written.write_text(scenario_toml(scenario, "harness run test"), encoding="utf-8")
        again = load_scenario(written)
        want, got = scenario.resolved(), again.resolved()
        for key in ("file", "scale"):
            want.pop(key), got.pop(key)
        want["expect"] = [e for e, x in zip(want["expect"], scenario.expect) if x.scales is None or scale in x.scales]
        assert got == want, scale


@pytest.mark.parametrize("value", ['quote " backslash \\ newline \n DEL \x7f ctrl \x01', "ไทย 😀", 1e-05, 2.5e20, 3,
                                   True, ["E", "W"], [0.5, 1]])
def test_toml_values_read_back_as_written(value):
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_each_run_of_a_sweep_gets_its_toml_and_log(write_scenario, tmp_path):
    from harness.sweep.run import load_sweep, run_sweep

    scenario = write_scenario()
    sweep = tmp_path / "pair.toml"
    sweep.write_text(f'name = "pair"\nscenario = "{scenario}"\nscale = "smoke"\nset = {{"train.steps" = 2}}\n\n'
                     '[axes]\n"init.seed" = [0, 1]\n', encoding="utf-8")
    result = run_sweep(load_sweep(sweep), tmp_path / "out", workers=1, progress=False)
    runs = sorted(result.folder.glob("*.h5"))
    assert len(runs) == 2
    for run in runs:
        toml = tomllib.loads(run.with_suffix(".toml").read_text())
        assert toml["train"]["steps"] == 2 and toml["init"]["seed"] in (0, 1)
        assert "step      2/2 | loss" in run.with_suffix(".log").read_text()
