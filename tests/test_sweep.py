"""Sweeps (harness/sweep/) on real runs: a local process pool, a local Ray instance, a
killed sweep finished by a second invocation, cross-run expectations, bad sweep files.

One 4-run sweep (2 seeds x tied/untied on the tiny scenario, 5 steps each) runs once per
module on the pool and once on Ray; the tests read those files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from check_files import write as write_checks_file
from conftest import TINY_SCENARIO
from h5util import differing_attributes
from harness.cli import main
from harness.resume import FAULT_ENV
from harness.sweep.run import PAUSE_ENV, load_sweep, run_sweep
from harness.sweep.aggregates import RunFile
from harness.sweep.expect import _cached_or_checked, definition_key, measured_range, radius_series
from harness.sweep.report import summary_table
from harness.sweep.spec import ExpectAll, SweepError
from harness.sweep.index import read_index

ROOT = Path(__file__).resolve().parent.parent

SMOKE_SWEEP = """\
name = "smoke"
scenario = "scenarios/tiny.toml"
scale = "smoke"
set = {{"train.steps" = {steps}}}

[axes]
"init.seed" = [0, 1]
"model.tied" = [true, false]

[[expect_all]]
check = "zero_displacement"   # dead rows of E get no gradient in an untied run: they never move
tensor = "E"
tokens = "dead"
where = {{"model.tied" = false}}

[[expect_all]]
check = "finite"
tensor = "W"
min_fraction = 0.9

[[expect_all]]
check = "nonzero_displacement"   # a check with its own min_fraction: it goes in args
tensor = "W"
tokens = "dead"
args = {{min_fraction = 0.5}}
"""
STEPS = 5


# ------------------------------------------------------------------ helpers
def write_tiny(folder: Path, tiny_data) -> Path:
    """The tiny scenario of conftest (vocab 800, seq 32, batch 4) and a 4-run sweep over it."""
    (folder / "scenarios").mkdir(parents=True, exist_ok=True)
    (folder / "scenarios" / "tiny.toml").write_text(
        TINY_SCENARIO.format(name="tiny", tied="false", tokenizer=tiny_data[0], corpus=tiny_data[1], steps=4,
                             smoke_steps=3, tensors='["E", "W", "loss"]')
        + '\n[[expect]]\ncheck = "finite"\ntensor = "W"\n', encoding="utf-8")
    sweep = folder / "smoke.toml"
    sweep.write_text(SMOKE_SWEEP.format(steps=STEPS), encoding="utf-8")
    return sweep


def trajectories(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.h5"))}


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory, tiny_data) -> Path:
    return write_tiny(tmp_path_factory.mktemp("sweep"), tiny_data)


@pytest.fixture(scope="module")
def pool_run(sweep_file, tmp_path_factory):
    """The smoke sweep on the local process pool, 2 workers."""
    out = tmp_path_factory.mktemp("pool")
    result = run_sweep(load_sweep(sweep_file), out, workers=2, progress=False)
    return result


@pytest.fixture(scope="module")
def ray_run(sweep_file, tmp_path_factory):
    """The same sweep as Ray remote tasks on a local Ray instance (started once, shut down after)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path_factory.mktemp("ray")
        yield run_sweep(load_sweep(sweep_file), out, workers=2, ray="local", progress=False)
    finally:
        ray.shutdown()


# ------------------------------------------------------------------ runs, files, index
def test_pool_sweep_writes_a_file_and_an_index_entry_per_run(pool_run):
    sweep, folder = pool_run.sweep, pool_run.folder
    ids = [r.id for r in sweep.runs]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert [r.axes for r in sweep.runs] == [{"init.seed": s, "model.tied": t} for s in (0, 1) for t in (True, False)]
    assert ids[0].startswith("seed=0-tied=true-") and ids[3].startswith("seed=1-tied=false-")
    assert set(trajectories(folder)) == set(ids)
    index = read_index(folder)
    assert set(index["runs"]) == set(ids)
    for run in sweep.runs:
        entry = index["runs"][run.id]
        assert entry["status"] == "done" and entry["error"] is None
        assert entry["file"] == f"{run.id}.h5" and entry["seconds"] > 0 and entry["threads"] == 1
        assert entry["verdicts"]["W-finite"]["passed"] is True  # the scenario's own [[expect]]
        assert entry["config_hash"].startswith(run.id[-8:])
        assert entry["overrides"] == [f"train.steps={STEPS}", f"init.seed={run.axes['init.seed']}",
                                      f"model.tied={str(run.axes['model.tied']).lower()}"]
        with h5py.File(folder / entry["file"], "r") as f:
            assert f.attrs["closed_cleanly"] and f["step"][-1] == STEPS
            scenario = json.loads(f.attrs["scenario"])
            assert scenario["init"]["seed"] == run.axes["init.seed"]
            assert scenario["model"]["tied"] == run.axes["model.tied"]
    assert not list(folder.glob(".index-*")), "no temporary index left behind"
    assert (folder / "radius.png").stat().st_size > 10_000
    assert pool_run.ok and sorted(pool_run.ran) == sorted(ids) and not pool_run.skipped


def test_run_ids_are_stable_and_depend_on_the_config(sweep_file, pool_run):
    again = load_sweep(sweep_file)
    assert [r.id for r in again.runs] == [r.id for r in pool_run.sweep.runs]
    seeds = {r.axes["init.seed"]: r.config_hash for r in again.runs if r.axes["model.tied"]}
    assert seeds[0] != seeds[1]


def test_ray_sweep_gives_bit_identical_files(pool_run, ray_run):
    pool, ray = trajectories(pool_run.folder), trajectories(ray_run.folder)
    assert set(pool) == set(ray) == {r.id for r in pool_run.sweep.runs}
    for rid in pool:
        # Every dataset bit for bit; and here no attribute differs either (no timestamps or output
        # paths are stored; the scenario file path is the same for both sweeps).
        assert differing_attributes(ray[rid], pool[rid]) == set(), rid
    assert ray_run.ok
    assert [(v.id, v.passed, v.n_passed) for v in ray_run.cross] == [(v.id, v.passed, v.n_passed) for v in pool_run.cross]


# ------------------------------------------------------------------ cross-run expectations
def test_cross_run_expectations_pass_and_say_how_many_runs(pool_run):
    untied = [r.id for r in pool_run.sweep.runs if not r.axes["model.tied"]]
    by_id = {v.id: v for v in pool_run.cross}
    assert set(by_id) == {"dead-E-tied=false-zero_displacement", "W-finite", "dead-W-nonzero_displacement"}
    dead_e = by_id["dead-E-tied=false-zero_displacement"]
    assert dead_e.passed and (dead_e.n_passed, dead_e.n_runs) == (2, 2) and dead_e.broken == []
    assert "zero_displacement held in 2 of 2 runs" in dead_e.message
    assert by_id["W-finite"].n_runs == 4 and by_id["dead-W-nonzero_displacement"].passed
    entry = read_index(pool_run.folder)["runs"][untied[0]]
    assert entry["expect_all"]["dead-E-tied=false-zero_displacement"]["passed"] is True  # computed by the worker


def test_a_wrong_cross_run_expectation_fails_naming_the_runs(sweep_file, pool_run, capsys):
    wrong = sweep_file.parent / "wrong.toml"
    wrong.write_text(SMOKE_SWEEP.format(steps=STEPS) + """
[[expect_all]]
id = "dead-W-still"
check = "zero_displacement"   # wrong: W's dead rows get gradient through the softmax
tensor = "W"
tokens = "dead"
min_fraction = 0.5

[[expect_all]]
check = "mean_radius_dips_before_growing"

[[expect_all]]
id = "outward"
check = "outward_share_between"
low = 0.0
high = 1.0
center = "origin"
""", encoding="utf-8")
    before = {p: p.stat().st_mtime_ns for p in trajectories(pool_run.folder).values()}
    code = main(["sweep", str(wrong), "--out", str(pool_run.folder.parent), "--workers", "2", "-q"])
    printed = capsys.readouterr().out
    assert code == 1
    ids = [r.id for r in pool_run.sweep.runs]
    line = next(line for line in printed.splitlines() if line.startswith("FAIL  dead-W-still:"))
    assert "0/4 runs; zero_displacement held in 0 of 4 runs (need 50%)" in line
    assert "expected W rows of dead tokens never to move" in line
    assert f"broken by: {', '.join(ids)}" in line
    assert "PASS  dead-E-tied=false-zero_displacement: 2/2 runs" in printed
    assert "mean_radius_dips_before_growing: " in printed and "mean dead radius of W over 4 runs" in printed
    assert "4 runs (0 ran, 4 already done)" in printed
    for rid in ids:  # the summary table: one row per run
        assert any(line.startswith(rid) and " done " in line for line in printed.splitlines())
    assert {p: p.stat().st_mtime_ns for p in before} == before, "finished runs are not run again"
    runs = read_index(pool_run.folder)["runs"]
    cached = runs[ids[0]]["expect_all"]["dead-W-still"]
    assert cached["passed"] is False and "zero_displacement" in cached["key"]  # checked by the driver, kept
    # a check that measures a number: the summary gives its range over the runs, as each run measured it
    shares = [runs[rid]["expect_all"]["outward"]["measured"] for rid in ids]
    assert all(0 < share < 1 for share in shares) and len(set(shares)) > 1, shares
    line = next(line for line in printed.splitlines() if line.startswith("PASS  outward:"))
    assert f"held in 4 of 4 runs (need 100%); measured {min(shares):.4g} to {max(shares):.4g}" in line, line
    assert "measured" not in next(line for line in printed.splitlines() if line.startswith("FAIL  dead-W-still:"))


# ------------------------------------------------------------------ killed, then finished
@pytest.mark.faults
def test_a_killed_sweep_finishes_only_what_was_missing(sweep_file, pool_run, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, PAUSE_ENV: "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sweep", str(sweep_file), "--out", str(out),
                             "--workers", "1", "-q"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    index_file, deadline = out / "smoke" / "index.json", time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            # one run done and the next marked running: the driver then pauses (PAUSE_ENV), so this
            # state holds until the kill (waiting for "done" alone raced the next "running" write)
            if index_file.exists() and {"done", "running"} <= {e["status"] for e in read_index(index_file.parent)["runs"].values()}:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its pool worker: their own session
        proc.wait()
    killed = read_index(out / "smoke")["runs"]
    statuses = sorted(e["status"] for e in killed.values())
    assert statuses == ["done", "pending", "pending", "running"]
    (first,) = [rid for rid, e in killed.items() if e["status"] == "done"]
    mtime = (out / "smoke" / f"{first}.h5").stat().st_mtime_ns

    result = run_sweep(load_sweep(sweep_file), out, workers=1, progress=False)
    assert result.skipped == [first]
    assert sorted(result.ran) == sorted(set(killed) - {first})
    assert (out / "smoke" / f"{first}.h5").stat().st_mtime_ns == mtime
    index = read_index(out / "smoke")["runs"]
    assert all(e["status"] == "done" for e in index.values()) and index[first] == killed[first]
    reference = trajectories(pool_run.folder)
    for rid, path in trajectories(out / "smoke").items():  # a run killed midway, run again: the same file
        assert differing_attributes(path, reference[rid]) == set(), rid
    assert result.ok


def test_a_done_run_whose_file_is_incomplete_runs_again(sweep_file, tmp_path, pool_run):
    out = tmp_path / "out"
    folder = out / "smoke"
    folder.mkdir(parents=True)
    for path in trajectories(pool_run.folder).values():
        (folder / path.name).write_bytes(path.read_bytes())
    index = read_index(pool_run.folder)
    broken = pool_run.sweep.runs[2].id
    with h5py.File(folder / f"{broken}.h5", "r+") as f:
        f.attrs["closed_cleanly"] = False  # as a killed writer leaves it
    (folder / "index.json").write_text(json.dumps(index), encoding="utf-8")
    result = run_sweep(load_sweep(sweep_file), out, workers=1, progress=False)
    assert result.ran == [broken] and len(result.skipped) == 3
    assert differing_attributes(folder / f"{broken}.h5", pool_run.folder / f"{broken}.h5") == set()


def test_the_example_sweep_resolves_every_run():
    sweep = load_sweep(ROOT / "sweeps" / "flannel_2_seeds.toml")
    assert len(sweep.runs) == 8 and not sweep.run_expectations
    assert {r.scenario.model.tied for r in sweep.runs} == {True, False}
    assert all(r.scenario.train.steps == 200 and r.scenario.record.every == 5 for r in sweep.runs)
    assert [e.check for e in sweep.expect_all] == ["zero_displacement", "zero_gradient", "radius_dips_before_growing",
                                                   "mean_radius_dips_before_growing"]


# ------------------------------------------------------------------ bad sweep files
BAD = {
    "unknown key": ('scenario = "scenarios/tiny.toml"\naxis = {}\n', "unknown key 'axis'. Allowed: name, scenario"),
    "unknown knob": ('scenario = "scenarios/tiny.toml"\n[axes]\n"init.sed" = [1, 2]\n',
                     "axes.init.sed = 1: unknown key init.sed. Allowed in [init]: seed"),
    "unknown section": ('scenario = "scenarios/tiny.toml"\n[axes]\n"modle.tied" = [true]\n',
                        "axes.modle.tied = True: unknown section 'modle'"),
    "wrong type": ('scenario = "scenarios/tiny.toml"\n[axes]\n"init.seed" = [0, "one"]\n',
                   "axes.init.seed = 'one': init.seed = 'one' has the wrong type: expected int"),
    "impossible value": ('scenario = "scenarios/tiny.toml"\nset = {"train.steps" = 0}\n',
                         "set.train.steps = 0: "),
    "empty axes": ('scenario = "scenarios/tiny.toml"\n[axes]\n', "axes has no knob: give it at least one"),
    "empty nested axes": ('scenario = "scenarios/tiny.toml"\n[axes.init]\n', "axes has no knob"),
    "empty axis values": ('scenario = "scenarios/tiny.toml"\n[axes]\n"init.seed" = []\n',
                          "axes.init.seed must be a non-empty list of values, got []"),
    "not a list": ('scenario = "scenarios/tiny.toml"\n[axes]\n"init.seed" = 3\n',
                   "axes.init.seed must be a non-empty list of values, got 3"),
    "zip lengths": ('scenario = "scenarios/tiny.toml"\nmode = "zip"\n[axes]\n"init.seed" = [0, 1]\n'
                    '"model.tied" = [true, false, true]\n',
                    'mode = "zip" needs axes of one length; init.seed has 2, model.tied has 3 values'),
    "bad mode": ('scenario = "scenarios/tiny.toml"\nmode = "random"\n', "mode = 'random': allowed: grid, zip"),
    "missing scenario": ('scenario = "scenarios/nope.toml"\n', "scenario = 'scenarios/nope.toml': no such file"),
    "no scenario": ('[axes]\n"init.seed" = [1]\n', "missing required key 'scenario'"),
    "duplicate runs": ('scenario = "scenarios/tiny.toml"\n[axes]\n"init.seed" = [1, 1]\n',
                       "two runs resolve to the same config"),
    "unknown check": ('scenario = "scenarios/tiny.toml"\n[[expect_all]]\ncheck = "teleports"\n',
                      "expect_all[0]: unknown check 'teleports'. Per-run checks:"),
    "unrecorded tensor": ('scenario = "scenarios/tiny.toml"\n[[expect_all]]\ncheck = "zero_gradient"\n'
                          'tensor = "grad_E"\n', "expect_all[0] (zero_gradient): tensor = 'grad_E' is not recorded"),
    "bad where": ('scenario = "scenarios/tiny.toml"\n[[expect_all]]\ncheck = "finite"\nwhere = {"model.tide" = 1}\n',
                  "expect_all[0]: where.model.tide: not a scenario knob"),
}


@pytest.mark.faults
@pytest.mark.parametrize("case", list(BAD))
def test_bad_sweep_files_are_clear_errors_naming_file_and_key(case, tmp_path, tiny_data):
    write_tiny(tmp_path, tiny_data)
    path = tmp_path / "bad.toml"
    text, message = BAD[case]
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SweepError) as info:
        load_sweep(path)
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    assert message in str(info.value)


def test_a_dry_run_lists_runs_and_expectations_and_runs_nothing(sweep_file, tmp_path, capsys):
    sweep = load_sweep(sweep_file)
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(sweep.runs)} runs, {len(sweep.expect_all)} cross-run expectations; nothing ran" in out
    for run in sweep.runs:
        assert f"run  {run.id}: {run.scenario.train.steps} steps" in out
    for e in sweep.expect_all:
        assert f"expect_all {e.id}: {e.check}(" in out
    assert not (tmp_path / "out").exists()
    # `harness validate` on a sweep file says what it is and how to check it
    assert main(["validate", str(sweep_file)]) == 1
    assert f"looks like a sweep file: check it with `harness sweep {sweep_file} --dry-run`" in capsys.readouterr().out


@pytest.mark.faults
def test_bad_sweep_file_is_exit_code_2_and_nothing_runs(tmp_path, tiny_data, capsys):
    write_tiny(tmp_path, tiny_data)
    path = tmp_path / "bad.toml"
    path.write_text('scenario = "scenarios/tiny.toml"\n[axes]\n"init.seed" = [0, 1]\n"init.std" = ["wide"]\n',
                    encoding="utf-8")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert main(["sweep", str(path), "--dry-run"]) == 2 and err == capsys.readouterr().err
    assert f"error: {path}: axes.init.std = 'wide': init.std = 'wide' has the wrong type: expected float" in err
    assert not (tmp_path / "out").exists()
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert f"Sweep file not found: {tmp_path / 'missing.toml'}" in capsys.readouterr().err


@pytest.mark.faults
def test_pool_workers_die_with_a_killed_sweep(sweep_file, tmp_path):
    """SIGKILL of the sweep process alone (not its group) while its worker is mid-run (held stopped
    after step 2 by the fault hook, so it cannot notice on its own): the worker, and every other
    process of the sweep's session, is gone within seconds (before: still training 20 s later)."""
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sweep", str(sweep_file), "--out", str(out),
                             "--workers", "1", "-q"], cwd=ROOT, env={**os.environ, FAULT_ENV: "2:SIGSTOP"},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    session = proc.pid
    try:
        _wait_for_a_stopped_worker(psutil, proc, session)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = _left_in_session(psutil, session)
        assert not left, f"processes of the killed sweep still alive: {left}"
    finally:
        _kill_session(session)


def _wait_for_a_stopped_worker(psutil, proc: subprocess.Popen, session: int) -> None:
    """Until a process of the sweep's session is stopped (the fault hook's SIGSTOP, mid-run)."""
    deadline = time.monotonic() + 120
    while not [p for p in psutil.process_iter(["status"]) if p.pid != session and _in_session(p, session)
               and p.info["status"] == psutil.STATUS_STOPPED]:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)


def _left_in_session(psutil, session: int, wait_s: float = 10) -> list[int]:
    """The processes of `session` still alive after up to `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while (left := [p.pid for p in psutil.process_iter() if _in_session(p, session)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _kill_session(session: int) -> None:
    try:
        os.killpg(session, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _in_session(process, session: int) -> bool:
    try:
        return os.getsid(process.pid) == session
    except OSError:  # gone meanwhile
        return False


# ------------------------------------------------------------------ stopped by a signal, then finished
@pytest.mark.faults
@pytest.mark.parametrize("how", ["SIGTERM to the sweep", "SIGINT to its process group"])
def test_a_signal_stops_the_sweep_marks_its_runs_interrupted_and_a_rerun_finishes_them(how, sweep_file, pool_run,
                                                                                        tmp_path):
    """SIGTERM (a batch system's time limit, `timeout`) to the sweep alone, or SIGINT to the whole
    process group (a terminal's Ctrl-C), while its worker is mid-run (held stopped after step 2):
    exit 143 / 130 without a traceback, the run in flight "interrupted" in the index, no process of
    the sweep left; a rerun finishes every run, bit for bit an uninterrupted sweep's files.
    Before: a worker was still training 25 minutes after SIGTERM, the index said "running"."""
    psutil = pytest.importorskip("psutil")
    out, sig = tmp_path / "out", signal.SIGTERM if how.startswith("SIGTERM") else signal.SIGINT
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sweep", str(sweep_file), "--out", str(out),
                             "--workers", "1", "-q"], cwd=ROOT, env={**os.environ, FAULT_ENV: "2:SIGSTOP"},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    session = proc.pid
    try:
        _wait_for_a_stopped_worker(psutil, proc, session)
        if sig == signal.SIGTERM:
            proc.send_signal(sig)
        else:
            os.killpg(session, sig)
            time.sleep(0.3)
            os.killpg(session, sig)  # pressed twice
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert f"interrupted: {sig.name} stopped sweep smoke: 1 run(s) in flight marked interrupted" in err, err[-3000:]
        left = _left_in_session(psutil, session)  # the pool's resource tracker ends once the sweep's pipe closes
        assert not left, f"processes of the stopped sweep still alive: {left}"
    finally:
        _kill_session(session)
    stopped = read_index(out / "smoke")["runs"]
    assert sorted(e["status"] for e in stopped.values()) == ["interrupted", "pending", "pending", "pending"]
    if sig == signal.SIGINT:
        return  # the rerun below is the same for both signals: once is enough for the suite's time
    result = run_sweep(load_sweep(sweep_file), out, workers=1, progress=False)
    assert sorted(result.ran) == sorted(stopped) and result.ok
    assert all(e["status"] == "done" for e in read_index(out / "smoke")["runs"].values())
    reference = trajectories(pool_run.folder)
    for rid, path in trajectories(out / "smoke").items():
        assert differing_attributes(path, reference[rid]) == set(), rid


@pytest.mark.faults
def test_a_sigterm_stops_a_ray_sweep_and_marks_its_run_interrupted(sweep_file, tmp_path):
    """The same on the Ray backend (`--ray local`, a Ray instance of the sweep's own): the task in
    flight is cancelled with force (Ray cannot hand a task a SIGTERM; its file is left as after a
    kill -9, and a rerun starts it over), exit 143 without a traceback, the run "interrupted",
    and Ray's own processes gone with the sweep."""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sweep", str(sweep_file), "--out", str(out),
                             "--workers", "1", "-q", "--ray", "local"], cwd=ROOT, start_new_session=True,
                            env={**os.environ, FAULT_ENV: "2:SIGSTOP"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    session = proc.pid
    try:
        deadline = time.monotonic() + 180
        while not ((out / "smoke" / "index.json").exists()
                   and "running" in {e["status"] for e in read_index(out / "smoke")["runs"].values()}):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err[-3000:]
        assert "Traceback" not in err and "stopped sweep smoke: 1 run(s) in flight marked interrupted" in err, err[-3000:]
        left = _left_in_session(psutil, session, wait_s=20)
        assert not left, f"processes of the stopped Ray sweep still alive: {left}"
    finally:
        _kill_session(session)
    statuses = sorted(e["status"] for e in read_index(out / "smoke")["runs"].values())
    assert statuses == ["interrupted", "pending", "pending", "pending"]


def test_the_summary_counts_only_the_sweep_files_current_cross_run_verdicts():
    """Cached verdicts of [[expect_all]] tables since removed or changed stay in the index, not in the table."""
    kept = ExpectAll(check="zero_gradient", args={"tensor": "grad_E", "tokens": "dead"}, id="grad")
    changed = ExpectAll(check="zero_displacement", args={"tensor": "E", "tokens": "dead"}, id="disp")
    entry = {"status": "done", "seconds": 1.0, "verdicts": {},
             "expect_all": {"grad": {"passed": True, "key": definition_key(kept)},
                            "disp": {"passed": False, "key": "an older definition"},
                            "gone": {"passed": False, "key": "a removed table"}}}
    index = {"runs": {"r": entry}}
    assert summary_table(index, ["r"]).endswith("1/3 pass (fail: disp, gone)")  # without the file: all cached
    assert summary_table(index, ["r"], [kept, changed]).endswith("  1/1 pass")


def test_a_radius_of_a_tensor_the_run_did_not_record_is_an_error_naming_the_file(tmp_path):
    """Before: an untied run without W silently gave E's radius under W's name."""
    path = write_checks_file(tmp_path / "untied.h5", tensors=("E", "grad_E"))
    steps, radius = radius_series(path, "E")
    assert steps.tolist() == [0, 1, 2, 3] and radius.shape == (4,)
    with pytest.raises(KeyError, match=r"untied\.h5 has no 'W'\. Recorded: .*E"):
        radius_series(path, "W")


def test_a_measured_range_names_the_runs_without_a_value():
    assert measured_range([None, None]) == ""  # a check that measures no number (zero_displacement)
    assert measured_range([3.0, 3.0]) == "; measured 3"
    assert measured_range([451.0, None, 152.0]) == "; measured 152 to 451 (1 run without a value)"


def test_a_verdict_cached_without_its_measured_value_is_checked_again(tmp_path):
    """An index written before verdicts kept their measured value: the check runs again (once), so
    the summary can give the range."""
    e = ExpectAll(check="collapse_at_most", args={"count": 100}, id="c")
    old = {"check": e.check, "passed": False, "message": "cached by an older version", "key": definition_key(e)}
    run = RunFile("r", write_checks_file(tmp_path / "r.h5", tensors=("W",)), None, {"c": old})
    v = _cached_or_checked(run, e)
    assert v["passed"] and v["measured"] == 0 and "bit-identical" in v["message"]
    assert run.verdicts["c"] == {**v, "key": definition_key(e)}
    assert _cached_or_checked(run, e) is run.verdicts["c"]  # from now on, cached
