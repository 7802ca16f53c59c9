"""Resumable runs: checkpoints, --resume, SIGKILL / SIGTERM / SIGINT, refusals, a full disk.

Every run here is real: `python -m harness run` in a subprocess (or `harness.cli.main` in
this process), real HDF5 files in tmp folders. Crashes are deterministic: the test-only
variable DEAD_TOKEN_HARNESS_FAULT="STEP:SIGNAL" makes the run raise SIGNAL in its own
process right after STEP (harness/resume.py).

"Identical" means dataset by dataset: the same names (tied aliases included), shapes,
HDF5 types and raw bytes of every value (bf16 as raw bits), and every attribute equal
except `resumed_at_steps`, which only a resumed file has (the steps it resumed from).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch

from core.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, restore, save_checkpoint
from core.data import DataConfig
from core.disk import check_destination
from core.h5clear import clear_status_flags, lookup3
from core.model import ModelConfig
from core.recorder import RecordConfig, TrajectoryWriter
from core.reopen import resume_trajectory
from core.run import train_and_record
from core.train import TrainConfig, Training
from core.trajectory import Trajectory
from harness.cli import main
from conftest import write_resumable_scenario
from h5util import differing_attributes
from harness.resume import FAULT_ENV

REPO = Path(__file__).resolve().parent.parent
STEPS, EVERY, CKPT_EVERY = 10, 2, 3  # a step takes ~0.1 s on a busy 2-core machine
RESUME_ONLY_ATTRS = {"resumed_at_steps"}

# ------------------------------------------------------------------ helpers
def write_scenario(folder: Path, tokenizer: Path, corpus: Path) -> Path:
    return write_resumable_scenario(folder, tokenizer, corpus, steps=STEPS, every=EVERY, ckpt_every=CKPT_EVERY)


def cli(scenario: Path, out: Path, *extra: str, fault: str | None = None) -> subprocess.CompletedProcess:
    """`python -m harness run` in a child process, optionally crashing itself after a step."""
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    argv = [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(out), "--no-check", "-q", *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def run(scenario: Path, out: Path, *extra: str, fault: str | None = None) -> int:
    """`python -m harness run` in this process (a real run, real signals); the exit code."""
    if fault:
        os.environ[FAULT_ENV] = fault
    try:
        return main(["run", str(scenario), "--out", str(out), "--no-check", "-q", *extra])
    finally:
        os.environ.pop(FAULT_ENV, None)


def last_checkpoint_before(step: int) -> int:
    """The step of the last periodic checkpoint a run killed right after `step` left."""
    return (step - 1) // CKPT_EVERY * CKPT_EVERY


def assert_identical(got: Path, want: Path) -> None:
    """Bit-identical datasets; attributes equal but for those a resume adds."""
    differing = differing_attributes(got, want)
    assert differing <= RESUME_ONLY_ATTRS, f"attributes differ: {sorted(differing - RESUME_ONLY_ATTRS)}"


def resumed_at(path: Path) -> list[int]:
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["resumed_at_steps"])


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def scenario(tmp_path_factory, tiny_data) -> Path:
    return write_scenario(tmp_path_factory.mktemp("resume_scenario"), *tiny_data)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scenario):
    """Uninterrupted runs (in this process), untied and tied, by their --set arguments."""
    cache: dict[tuple[str, ...], Path] = {}

    def get(*sets: str) -> Path:
        if sets not in cache:
            out = tmp_path_factory.mktemp("reference")
            assert main(["run", str(scenario), "--out", str(out), "--no-check", "-q", *sets]) == 0
            cache[sets] = out / "resumable.h5"
            assert not checkpoint_path(cache[sets]).exists()  # a finished run removes its checkpoint
        return cache[sets]

    return get


@pytest.fixture()
def interrupted(tmp_path, scenario):
    """A run stopped by SIGINT (Ctrl-C) after step 7, in this process: exit 130, file and checkpoint kept."""
    out = tmp_path / "out"
    assert run(scenario, out, fault="7:SIGINT") == 130
    path = out / "resumable.h5"
    assert path.is_file() and checkpoint_path(path).is_file()
    return out, path


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


# ------------------------------------------------------------------ crashes and stops
@pytest.mark.faults
def test_sigkill_at_a_random_step_then_resume_gives_the_identical_file(tmp_path, scenario, reference, capsys):
    kill_after = random.Random(8).randint(2, STEPS - 1)
    out = tmp_path / "out"
    killed = cli(scenario, out, fault=f"{kill_after}:SIGKILL")
    assert killed.returncode == -9, killed.stderr
    path = out / "resumable.h5"
    assert load_checkpoint(checkpoint_path(path)).steps_done == last_checkpoint_before(kill_after)
    with Trajectory(path) as traj:
        assert traj.meta["closed_cleanly"] is False

    capsys.readouterr()
    assert run(scenario, out, "--resume") == 0
    resumed = last_checkpoint_before(kill_after)
    assert f"({STEPS} steps; resumed at step {resumed}, {STEPS - resumed} steps in " in capsys.readouterr().out
    assert_identical(path, reference())
    assert resumed_at(path) == [resumed]
    assert not checkpoint_path(path).exists()


@pytest.mark.faults
def test_sigterm_stops_cleanly_and_prints_the_command_that_resumes(tmp_path, scenario, reference):
    stop_after = 5
    out = tmp_path / "out"
    stopped = cli(scenario, out, fault=f"{stop_after}:SIGTERM")
    assert stopped.returncode == 143, stopped.stderr
    path = out / "resumable.h5"
    assert f"SIGTERM stopped the run after step {stop_after} of {STEPS}" in stopped.stderr
    command = shlex.join(["python", "-m", "harness", "run", str(scenario), "--out", str(out), "--no-check", "-q",
                          "--resume"])
    assert f"resume with: {command}" in stopped.stderr
    ckpt = load_checkpoint(checkpoint_path(path))
    assert ckpt.steps_done == stop_after  # the stop checkpoints the step it stopped at
    with Trajectory(path) as traj:  # closed, every frame up to the stop complete
        assert traj.steps.tolist() == list(range(0, stop_after + 1, EVERY))
        assert ckpt.frames == len(traj)

    argv = shlex.split(command)  # run exactly that command (in this process, to save a start-up)
    assert argv[:3] == ["python", "-m", "harness"]
    assert main(argv[3:]) == 0
    assert_identical(path, reference())
    assert resumed_at(path) == [stop_after]


def test_two_interruptions_in_one_tied_run(tmp_path, scenario, reference):
    tied = ("--set", "model.tied=true")
    first, second = sorted(random.Random(88).sample(range(2, STEPS), 2))
    out = tmp_path / "out"
    assert cli(scenario, out, *tied, fault=f"{first}:SIGKILL").returncode == -9
    assert run(scenario, out, *tied, "--resume", fault=f"{second}:SIGTERM") == 143
    assert run(scenario, out, *tied, "--resume") == 0
    path = out / "resumable.h5"
    assert_identical(path, reference(*tied))
    assert resumed_at(path) == [last_checkpoint_before(first), second]
    with Trajectory(path) as traj:
        assert traj.tied and torch.equal(traj["E"][-1], traj["W"][-1])


def test_writer_resume_drops_frames_after_the_checkpoint(tmp_path, random_ids):
    """Core only: frames recorded past the checkpoint are discarded and rewritten exactly."""
    def training() -> Training:
        return Training(random_ids, ModelConfig(vocab_size=1000, tied=False), data_cfg=DataConfig(seq_len=32, batch_size=4),
                        train_cfg=TrainConfig(steps=7, device="cpu"))

    config = RecordConfig(tensors=["E", "W", "grad_E", "exp_avg_sq_W", "logits", "loss"], every=1)
    kw = dict(vocab_size=1000, dim=64, tied=False, config=config)
    with TrajectoryWriter(tmp_path / "ref.h5", **kw) as writer:
        train_and_record(training(), writer)

    path, ckpt = tmp_path / "run.h5", tmp_path / "run.ckpt"
    first = training()
    with TrajectoryWriter(path, **kw) as writer:
        train_and_record(first, writer, until=3)
        save_checkpoint(ckpt, first, writer.sync(), {"run": "a"})
        train_and_record(first, writer, until=6)  # frames 4..6 recorded, then "lost"
    with Trajectory(path) as traj:
        assert len(traj) == 7

    second = training()
    checkpoint = load_checkpoint(ckpt)
    assert (checkpoint.steps_done, checkpoint.frames, checkpoint.context) == (3, 4, {"run": "a"})
    restore(second, checkpoint)
    with resume_trajectory(path, frames=checkpoint.frames, config=config) as writer:
        assert writer.frames_complete == 4
        train_and_record(second, writer)
    assert_identical(path, tmp_path / "ref.h5")


# ------------------------------------------------------------------ refusals
def test_a_resume_with_another_scenario_is_refused(interrupted, scenario, capsys):
    out, path = interrupted
    before = snapshot(path, checkpoint_path(path))
    assert main(["run", str(scenario), "--out", str(out), "--resume", "--set", "optimizer.lr=0.002", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"Cannot resume {path}: Checkpoint {checkpoint_path(path)} belongs to a different run" in err
    assert "scenario.optimizer.lr: 0.001 -> 0.002" in err
    assert snapshot(path, checkpoint_path(path)) == before


def drop_keys_from_checkpoint(path: Path, *dotted: str) -> None:
    """Rewrite a checkpoint as a harness from before these scenario keys existed wrote it."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    context = json.loads(raw["context"])
    for key in dotted:
        section, name = key.split(".")
        del context["scenario"][section][name]
    raw["context"] = json.dumps(context, sort_keys=True)
    torch.save(raw, path)


def test_keys_added_since_the_checkpoint_count_as_their_defaults(interrupted, scenario, reference, capsys):
    out, path = interrupted
    drop_keys_from_checkpoint(checkpoint_path(path), "train.matmul", "record.keyframe_every")
    assert main(["run", str(scenario), "--out", str(out), "--resume", "-q"]) == 0, capsys.readouterr().err
    assert_identical(path, reference())


def test_a_key_added_since_the_checkpoint_set_to_another_value_is_refused(interrupted, scenario, capsys):
    out, path = interrupted
    drop_keys_from_checkpoint(checkpoint_path(path), "train.matmul")
    before = snapshot(path, checkpoint_path(path))
    assert main(["run", str(scenario), "--out", str(out), "--resume", "--set", "train.matmul=fp32", "-q"]) == 2
    assert "scenario.train.matmul: 'bf16' -> 'fp32'" in capsys.readouterr().err
    assert snapshot(path, checkpoint_path(path)) == before


def test_a_resume_with_another_scale_or_device_type_is_refused(interrupted, scenario, capsys):
    out, path = interrupted
    before = snapshot(path, checkpoint_path(path))
    assert main(["run", str(scenario), "--out", str(out), "--resume", "--set", "train.steps=30", "-q"]) == 2
    assert "scenario.train.steps: 10 -> 30" in capsys.readouterr().err
    assert snapshot(path, checkpoint_path(path)) == before


@pytest.mark.parametrize("which", ["corpus", "tokenizer"])
def test_a_resume_with_another_corpus_or_tokenizer_is_refused(tmp_path, tiny_data, which, capsys):
    tokenizer, corpus = tmp_path / "tokenizer.json", tmp_path / "corpus.txt"
    tokenizer.write_bytes(tiny_data[0].read_bytes())
    corpus.write_bytes(tiny_data[1].read_bytes())
    scenario, out = write_scenario(tmp_path / "scenarios", tokenizer, corpus), tmp_path / "out"
    assert run(scenario, out, fault="4:SIGTERM") == 143
    if which == "corpus":  # same path, other content
        corpus.write_text(corpus.read_text(encoding="utf-8") + "\nOne more line of English.\n", encoding="utf-8")
    else:  # the same tokenizer, saved differently: another file, another fingerprint
        tokenizer.write_text(json.dumps(json.loads(tokenizer.read_text(encoding="utf-8")), indent=1), encoding="utf-8")
    path = out / "resumable.h5"
    before = snapshot(path, checkpoint_path(path))
    capsys.readouterr()
    assert run(scenario, out, "--resume") == 2
    err = capsys.readouterr().err
    assert f"error: Cannot resume {path}: Checkpoint {checkpoint_path(path)} belongs to a different run" in err
    assert f"{which}_fingerprint: '" in err
    assert "scenario." not in err  # only the fingerprint differs
    assert snapshot(path, checkpoint_path(path)) == before


def test_a_resume_of_another_format_version_is_refused(interrupted, scenario, capsys):
    out, path = interrupted
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    before = snapshot(path, checkpoint_path(path))
    assert main(["run", str(scenario), "--out", str(out), "--resume", "-q"]) == 2
    assert f"Cannot resume {path}: the trajectory has format_version 99; this harness writes 1." in capsys.readouterr().err
    assert snapshot(path, checkpoint_path(path)) == before

    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 1
    raw = torch.load(checkpoint_path(path), weights_only=True)
    raw["format_version"] = 0
    torch.save(raw, checkpoint_path(path))
    assert main(["run", str(scenario), "--out", str(out), "--resume", "-q"]) == 2
    assert (f"Checkpoint {checkpoint_path(path)} was taken for trajectory format_version 0; this harness writes 1"
            in capsys.readouterr().err)


def test_an_interrupted_run_is_never_overwritten_without_force(interrupted, scenario, capsys):
    out, path = interrupted
    before = snapshot(path, checkpoint_path(path))
    assert main(["run", str(scenario), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"Trajectory {path} already exists; refusing to overwrite it. Resume it from its checkpoint" in err
    assert "with --resume, or start over with --force." in err
    assert main(["run", str(scenario), "--out", str(out), "-q", "--resume", "--force"]) == 2
    assert "pass one of them" in capsys.readouterr().err
    assert snapshot(path, checkpoint_path(path)) == before
    # --force starts over: a complete file, and the stale checkpoint is gone.
    assert main(["run", str(scenario), "--out", str(out), "-q", "--force", "--no-check"]) == 0
    assert not checkpoint_path(path).exists()
    with Trajectory(path) as traj:
        assert traj.steps[-1] == STEPS and "resumed_at_steps" not in traj.meta


def test_resume_without_a_trajectory_or_checkpoint_is_a_clear_error(tmp_path, scenario, capsys):
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out), "--resume", "-q"]) == 2
    assert f"Cannot resume {out / 'resumable.h5'}: no such trajectory" in capsys.readouterr().err
    assert main(["run", str(scenario), "--out", str(out), "-q", "--no-check"]) == 0  # finished: no checkpoint
    assert main(["run", str(scenario), "--out", str(out), "--resume", "-q"]) == 2
    assert f"it has no checkpoint {out / 'resumable.ckpt'}" in capsys.readouterr().err


def test_an_interrupted_run_resumes_in_process_too(interrupted, scenario, reference):
    out, path = interrupted
    assert main(["run", str(scenario), "--out", str(out), "--resume", "-q", "--no-check"]) == 0
    assert_identical(path, reference())
    assert resumed_at(path) == [7]


def test_a_resume_on_a_cpu_with_other_gemm_kernels_warns(interrupted, scenario, caplog):
    """The file says its first steps ran on the other kind of CPU kernels: the continuation's bits
    may differ from an uninterrupted run, so the resume says so, naming what changed."""
    out, path = interrupted
    with h5py.File(path, "a") as f:
        environment = json.loads(f.attrs["environment"])
        now = environment["cpu_bf16_gemm"]
        environment["cpu_bf16_gemm"] = then = {"onednn": "fallback", "fallback": "onednn"}[now]
        f.attrs["environment"] = json.dumps(environment)
    with caplog.at_level("WARNING", logger="harness.resume"):
        assert main(["run", str(scenario), "--out", str(out), "--resume", "-q", "--no-check"]) == 0
    assert f"another environment than it began in (cpu_bf16_gemm {then} -> {now})" in caplog.text


# ------------------------------------------------------------------ full disk
@pytest.fixture()
def file_size_limit():
    """Make writes past N bytes fail with EFBIG in this process (a disk that fills mid-write)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process

    def limit(n: int | None) -> None:  # None: back to the limit there was
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft if n is None else n, hard))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, previous)


def small_training(random_ids, steps: int = 3) -> Training:
    return Training(random_ids, ModelConfig(vocab_size=1000), data_cfg=DataConfig(seq_len=32, batch_size=4),
                    train_cfg=TrainConfig(steps=steps, device="cpu"))


@pytest.mark.faults
def test_a_checkpoint_write_that_fails_keeps_the_previous_one(tmp_path, random_ids, file_size_limit):
    training, path = small_training(random_ids), tmp_path / "run.ckpt"
    training.step()
    save_checkpoint(path, training, 2, {})
    training.step()
    file_size_limit(path.stat().st_size // 3)
    with pytest.raises(CheckpointError) as failure:
        save_checkpoint(path, training, 3, {})
    file_size_limit(None)
    assert f"Writing checkpoint {path} at step 2 failed:" in str(failure.value)
    assert "the previous checkpoint is intact" in str(failure.value)
    assert load_checkpoint(path).steps_done == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]  # no temporary file left


@pytest.mark.faults
def test_a_full_disk_is_refused_before_the_checkpoint_is_written(tmp_path, random_ids):
    training = small_training(random_ids)
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, training, 1, {})
    training.step()
    with pytest.raises(CheckpointError, match=r"at step 1 failed: the disk is full: .* MiB free in .*"
                                              r"the previous checkpoint is intact"):
        save_checkpoint(path, training, 2, {}, reserve_bytes=2**62)
    assert load_checkpoint(path).steps_done == 0


# ------------------------------------------------------------------ h5clear
def test_lookup3_matches_the_published_test_vectors():
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def test_clearing_flags_refuses_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "not.h5"
    path.write_bytes(b"plain text, not a superblock")
    with pytest.raises(ValueError, match=f"{path} is not an HDF5 file"):
        clear_status_flags(path)
    assert path.read_bytes() == b"plain text, not a superblock"


@pytest.mark.faults
def test_a_run_that_cannot_fit_is_refused_up_front_with_exit_code_1(scenario, tmp_path, capsys):
    """On a 3 MiB filesystem: the frames, the reserve and the checkpoint cannot fit. Refused in
    seconds, before anything is written, naming the file and 'disk full'; no traceback."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        assert main(["run", str(scenario), "--out", str(mount), "--no-check", "-q"]) == 1
        err = capsys.readouterr().err
        assert "disk full:" in err and str(mount / "resumable.h5") in err and "needs about" in err
        assert "Traceback" not in err and "resume with" not in err
        assert sorted(p.name for p in mount.iterdir()) == []  # nothing half-made: no .h5, .ckpt, lock or reserve
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.faults
def test_a_second_writer_on_a_live_runs_file_is_refused(scenario, tmp_path):
    """While a run writes (held at a step by the fault hook's SIGSTOP), `--force` and `--resume`
    on its file are refused at once naming the holder; the first run then finishes its file."""
    out = tmp_path / "runs"
    first = subprocess.Popen([sys.executable, "-m", "harness", "run", str(scenario), "--out", str(out), "--no-check",
                              "-q"], cwd=REPO, env={**os.environ, FAULT_ENV: "3:SIGSTOP"}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while Path(f"/proc/{first.pid}/stat").read_text().split(")")[-1].split()[0] != "T":  # stopped after step 3
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read()[-2000:]
            time.sleep(0.05)
        assert (out / "resumable.h5.lock").exists()
        for extra in ("--force", "--resume"):
            start = time.monotonic()
            second = cli(scenario, out, extra)
            assert second.returncode == 2 and time.monotonic() - start < 30, second.stderr[-2000:]
            assert f"is being written by another run (pid {first.pid}" in second.stderr
            assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    with Trajectory(out / "resumable.h5") as traj:
        assert len(traj) == STEPS // EVERY + 1 and not traj.swmr


def test_a_run_checks_once_that_its_file_fits(scenario, tmp_path):
    """The up-front disk check (core.disk.check_destination) runs once per run, in the writer,
    before the token tables' pass (the test below: refused in seconds). Before, the runner ran it
    and then the writer again."""
    checked = []

    def watch(frame, event, arg) -> None:
        if event == "call" and frame.f_code is check_destination.__code__:
            checked.append(frame.f_locals["path"])

    sys.setprofile(watch)
    try:
        assert run(scenario, tmp_path) == 0
    finally:
        sys.setprofile(None)
    assert checked == [tmp_path / "resumable.h5"]


@pytest.mark.faults
@pytest.mark.parametrize("steps", ["1000000000000", "100000000000000000000000"])
def test_a_run_of_impossible_length_is_refused_in_seconds(scenario, tmp_path, capsys, steps):
    """Before: 10**12 steps hung before the disk check (the token tables' pass over every planned
    batch), 10**23 ended in an OverflowError traceback."""
    start = time.monotonic()
    code = main(["run", str(scenario), "--out", str(tmp_path / "runs"), "--no-check", "-q", "--set",
                 f"train.steps={steps}"])
    assert code == 1 and time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert "disk full:" in err and "needs about" in err and "Traceback" not in err
    assert not list((tmp_path / "runs").iterdir())
