"""A progress bar only on a terminal (harness/progress.py): each command that can draw one,
its stdout and stderr piped as in CI, prints its own fixed-format lines and never a bar frame
or a carriage return; on a pseudo-terminal the same command does draw its bar."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_SCENARIO
from harness.data.bundle import default_bundle
from harness.data.sources import PYDOC, BuildParams

REPO = Path(__file__).resolve().parent.parent
BLOCKS = "▏▎▍▌▋▊▉█"  # tqdm's bar cells
COUNTER = re.compile(r"\d+/\d+ \[\d\d:\d\d")  # tqdm's "3/4 [00:01<..."

SWEEP = """\
name = "bars"
scenario = "scenarios/tiny.toml"
scale = "smoke"

[axes]
"init.seed" = [0]
"""


def bar_frames(text: str) -> list[str]:
    """What of a progress bar `text` holds: carriage returns, bar cells, tqdm's counter."""
    found = ["\\r"] if "\r" in text else []
    found += sorted({c for c in text if c in BLOCKS})
    return found + COUNTER.findall(text)


def harness(*args: str | Path) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` with stdout and stderr piped (not a terminal)."""
    proc = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_data) -> Path:
    """A tiny scenario (4 steps) in `folder/scenarios/tiny.toml`, a one-run sweep over it in `folder/bars.toml`."""
    folder = tmp_path_factory.mktemp("bars")
    (folder / "scenarios").mkdir()
    (folder / "scenarios" / "tiny.toml").write_text(
        TINY_SCENARIO.format(name="tiny", tied="false", tokenizer=tiny_data[0], corpus=tiny_data[1], steps=4,
                             smoke_steps=3, tensors='["E", "W", "loss"]'), encoding="utf-8")
    (folder / "bars.toml").write_text(SWEEP, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def recorded(folder) -> tuple[Path, subprocess.CompletedProcess]:
    """`harness run` of the tiny scenario, piped: its trajectory and the finished process."""
    proc = harness("run", folder / "scenarios" / "tiny.toml", "--out", folder / "runs")
    return folder / "runs" / "tiny.h5", proc


def test_run_piped_prints_its_step_lines_and_no_bar(recorded):
    path, proc = recorded
    assert re.search(r"step +4/4 \| loss [\d.]+ \|", proc.stderr), proc.stderr  # one line per interval
    assert str(path) in proc.stdout
    assert bar_frames(proc.stdout + proc.stderr) == []


@pytest.mark.parametrize("command, line", [
    pytest.param(["compress", "{run}", "--out", "{out}/c.h5"], r"c\.h5: 5 frames, ", id="compress"),
    pytest.param(["report", "{run}", "--out", "{out}/report"], r"report: .*report\.md", id="report"),
    pytest.param(["animate", "{run}", "--out", "{out}/movie.gif"], r"movie: .*movie\.gif  \(5 frames", id="animate"),
])
def test_commands_on_a_file_piped_print_their_lines_and_no_bar(recorded, tmp_path, command, line):
    proc = harness(*(a.format(run=recorded[0], out=tmp_path) for a in command))
    assert re.search(line, proc.stdout), proc.stdout
    assert bar_frames(proc.stdout + proc.stderr) == []


def test_a_sweep_piped_prints_its_run_lines_and_summary_and_no_bar(folder, tmp_path):
    proc = harness("sweep", folder / "bars.toml", "--out", tmp_path, "--workers", "1")
    assert "sweep bars: 1 runs (1 ran, 0 already done)" in proc.stdout
    assert re.search(r"run 1/1 \S+: done", proc.stderr), proc.stderr
    assert bar_frames(proc.stdout + proc.stderr) == []


def test_a_quiet_sweep_prints_no_info_line(folder, tmp_path):
    """-q: no bar and no INFO lines on the console. Before, the sweep redirected its log lines
    through tqdm even without a bar, and that handler printed INFO regardless of -q."""
    proc = harness("sweep", folder / "bars.toml", "--out", tmp_path, "--workers", "1", "-q")
    assert "sweep bars: 1 runs (1 ran, 0 already done)" in proc.stdout
    assert " INFO " not in proc.stderr and "run 1/1" not in proc.stderr, proc.stderr


def test_a_data_build_into_a_file_draws_no_bar(tmp_path, capfd):
    """The real build (a small one: few sources, a 300-token BPE) with its bars asked for, as
    `harness data build` and a run's first use ask, while stderr is a file, not a terminal."""
    params = BuildParams(vocab_size=300, corpus_sources=(PYDOC,), mix_sources=("networkx",))
    bundle = default_bundle(cache_dir=tmp_path, params=params, progress=True)
    assert bundle.vocab_size == 300 and bundle.manifest["stats"]["corpus_tokens"] > 0
    out, err = capfd.readouterr()
    assert bar_frames(out + err) == []


def test_on_a_terminal_the_bar_is_drawn(recorded, tmp_path):
    """The same command as above with stderr on a pseudo-terminal: the bar's frames are there."""
    termios = pytest.importorskip("termios", reason="pseudo-terminals are POSIX")
    import pty

    leader, follower = pty.openpty()
    termios.tcsetwinsize(follower, (24, 100))  # rows, columns: a pty starts 0 wide, where tqdm draws nothing
    try:
        proc = subprocess.Popen([sys.executable, "-m", "harness", "compress", str(recorded[0]), "--out",
                                 str(tmp_path / "c.h5")], cwd=REPO, stdout=subprocess.PIPE, stderr=follower)
    finally:
        os.close(follower)
    drawn = b""
    try:
        while chunk := os.read(leader, 4096):
            drawn += chunk
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(leader)
    assert proc.wait(timeout=600) == 0
    text = drawn.decode(errors="replace")
    assert "compress tiny.h5" in text and "\\r" in bar_frames(text) and COUNTER.search(text), text
