"""The fault suite's run cases (issue 24): ordinary mistakes on a shared workstation, each a clear
error naming the file and the key, an exit code, no traceback, nothing half-written, nothing lost.

Real runs and real files; a batch too large for memory in a child whose address space is
limited (RLIMIT_AS), so no test can exhaust the machine's memory; Ctrl-C pressed twice as real
signals to a real run. The sweep's signals, disk-full, second writers and damaged files have
their tests beside the code they test (test_sweep, test_recorder, test_resume, test_lock,
test_damaged_files), marked `faults` too: `nox -s faults` runs them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_resumable_scenario
from core.trajectory import Trajectory
from harness.cli import main

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parent.parent
ADDRESS_SPACE = 6 * 2**30  # the children's RLIMIT_AS: room for torch and a tiny run, never the machine's RAM


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def limit_address_space() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


# ------------------------------------------------------------------ a batch too large for memory
def test_a_batch_too_large_for_memory_is_refused_up_front_naming_data_batch_size(tmp_path, tiny_data):
    """100,000 windows of 32 tokens x 800 logits: tens of GiB. Refused by the estimate before a file
    exists (before: died in the first step with torch's allocator message naming no key, and left
    a half-made .h5 and .ckpt; without a limit the kernel's OOM killer ended it)."""
    scenario = write_resumable_scenario(tmp_path / "sc", *tiny_data, steps=5, every=1, ckpt_every=2)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(scenario), "--out", str(out), "--no-check", "-q",
                           "--set", "data.batch_size=100000"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit_address_space)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"error: {scenario}: data.batch_size = 100000: one step needs more than" in proc.stderr, proc.stderr[-2000:]
    assert leftovers(out) == []


OOM_CHILD = """
import resource, sys
from pathlib import Path
from core.memory import step_bytes_estimate
from harness.runner import run_scenario
from harness.scenario.load import load_scenario
from harness.scenario.schema import ScenarioError

scenario = load_scenario(sys.argv[1], overrides=["data.batch_size=2048"])
m = scenario.model
need = step_bytes_estimate(2048, scenario.data.seq_len, m.vocab_size, m.n_embd, m.n_layer, m.n_head)

def only_the_estimate(training):
    # the headroom the estimate asks for, and a little for the recorder's thread and buffers
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    limit = used + need + 48 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

try:
    run_scenario(scenario, sys.argv[2], progress=False, prepare=only_the_estimate)
except ScenarioError as exc:
    print(exc)
    sys.exit(2)
print("the step fitted")
"""


def test_a_step_that_outgrows_the_estimate_fails_for_real_and_is_reported_the_same_way(tmp_path, tiny_data):
    """The estimate is a floor, checked against a real allocation: with only the memory it asks for
    (RLIMIT_AS set to what the process uses now plus the estimate), a real step of that batch fails.
    That failure is translated too: an error naming data.batch_size, the run's new .h5 and .ckpt removed."""
    scenario = write_resumable_scenario(tmp_path / "sc", *tiny_data, steps=3, every=1, ckpt_every=1)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", OOM_CHILD, str(scenario), str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert f"{scenario}: data.batch_size = 2048: step 1 ran out of memory on cpu" in proc.stdout, proc.stdout
    assert "lower data.batch_size" in proc.stdout and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert leftovers(out) == []  # no .h5, .ckpt, .lock, reserve or .creating left behind


# ------------------------------------------------------------------ files that cannot be read
def test_a_scenario_file_that_is_not_utf8_is_named_and_validate_reports_every_file(tmp_path, write_scenario, capsys):
    good = write_scenario(name="a_good")
    bad = good.parent / "b_latin1.toml"
    bad.write_bytes('name = "café"\n'.encode("latin-1"))  # before: the codec's message, no file; validate stopped
    later = write_scenario(name="c_good")
    assert main(["validate", str(good.parent)]) == 1
    out, err = capsys.readouterr()
    assert f"ok    {good}" in out and f"ok    {later}" in out
    assert f"error {bad}: not UTF-8 text (byte 0xe9 at offset 11)" in out
    assert "Traceback" not in out + err
    assert main(["run", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert f"error: {bad}: not UTF-8 text" in capsys.readouterr().err


def test_a_corpus_too_short_for_one_window_names_the_corpus_and_the_key(tmp_path, tiny_data, capsys):
    corpus = tmp_path / "two_bytes.txt"
    corpus.write_bytes(b"ab")
    scenario = write_resumable_scenario(tmp_path / "sc", tiny_data[0], corpus, steps=3, every=1, ckpt_every=1)
    assert main(["run", str(scenario), "--out", str(tmp_path / "out"), "--no-check", "-q"]) == 2
    err = capsys.readouterr().err
    assert (f"error: {scenario}: data.corpus = '{corpus}' has 2 tokens, fewer than one window of "
            f"data.seq_len + 1 = 33 tokens") in err, err[-2000:]
    assert "Traceback" not in err and leftovers(tmp_path / "out") == []


# ------------------------------------------------------------------ places that cannot be written
@pytest.fixture()
def read_only_folder(tmp_path):
    """A folder no run can write in: a read-only tmpfs as root (root ignores permission bits), else mode 0555."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root, but cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("where", ["the folder", "a folder to make inside it"])
def test_a_read_only_output_folder_is_a_clear_error_naming_the_path(read_only_folder, where, tiny_data, tmp_path,
                                                                     capsys):
    scenario = write_resumable_scenario(tmp_path / "sc", *tiny_data, steps=3, every=1, ckpt_every=1)
    out = read_only_folder if where == "the folder" else read_only_folder / "runs"
    assert main(["run", str(scenario), "--out", str(out), "--no-check", "-q"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "OSError" not in err, err[-2000:]  # before: an OSError traceback
    named = out / "resumable.h5" if where == "the folder" else out
    assert f"error: Cannot " in err and str(named) in err, err[-2000:]
    assert leftovers(read_only_folder) == []


def test_force_where_a_directory_stands_at_the_trajectory_path_names_it(tmp_path, tiny_data, capsys):
    scenario = write_resumable_scenario(tmp_path / "sc", *tiny_data, steps=3, every=1, ckpt_every=1)
    (tmp_path / "out" / "resumable.h5").mkdir(parents=True)
    assert main(["run", str(scenario), "--out", str(tmp_path / "out"), "--no-check", "-q", "--force"]) == 2
    err = capsys.readouterr().err
    assert f"error: Cannot write trajectory {tmp_path / 'out' / 'resumable.h5'}: a directory stands there" in err
    assert "Traceback" not in err and (tmp_path / "out" / "resumable.h5").is_dir()


# ------------------------------------------------------------------ Ctrl-C, twice
@pytest.mark.parametrize("gap_s", [0.05, 0.5])
def test_ctrl_c_twice_stops_without_a_traceback_and_keeps_every_complete_frame(gap_s, tmp_path, tiny_data):
    """SIGINT, then SIGINT again `gap_s` later, to a real run: the first asks for a stop after the
    step with a checkpoint, the second lands during that step, the checkpoint's write or the file's
    close (before: a KeyboardInterrupt traceback, the file's close interrupted)."""
    scenario = write_resumable_scenario(tmp_path / "sc", *tiny_data, steps=20_000, every=50, ckpt_every=1000,
                                        tensors='["E", "W", "loss"]')
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(scenario), "--out", str(out), "--no-check",
                             "-q"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "resumable.ckpt").exists():  # the step-0 checkpoint: the run is training
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        time.sleep(gap_s)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "interrupted: " in err and "resume with: " in err, err[-3000:]
    with Trajectory(out / "resumable.h5") as traj:
        n = len(traj)
        assert n >= 1 and traj.steps.tolist() == [50 * k for k in range(n)]
        for name in ("E", "W"):
            assert traj[name][n - 1].shape == (800, 64)
