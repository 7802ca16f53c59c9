"""A damaged, truncated or foreign trajectory is a clear error naming the file, within seconds,
in `report`, `compress` and `run --resume`: never a hang, never a traceback, never frames of zeros.

Real runs (in this process), real files, damaged on disk: cut short at several offsets, an
object header overwritten (HDF5's SWMR reader retried such a file for minutes), the token
strings' heap overwritten, zero bytes, random bytes, and an HDF5 file another program wrote.
Both kinds of file: one closed cleanly (read plainly) and one whose writer was killed (its
consistency flags set: read in SWMR mode, where HDF5 skips the end-of-file check).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from core.checkpoint import checkpoint_path
from core.h5read import TrajectoryFileError
from core.trajectory import Trajectory
from harness.cli import main
from conftest import write_resumable_scenario
from h5util import differing_attributes
from harness.resume import FAULT_ENV

SECONDS = 10


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def first(path: Path, signature: bytes) -> int:
    offset = path.read_bytes().find(signature)
    assert offset > 0, f"{signature!r} not in {path}"
    return offset


DAMAGES = {
    "cut-to-25%": lambda p: os.truncate(p, p.stat().st_size // 4),
    "cut-to-half": lambda p: os.truncate(p, p.stat().st_size // 2),
    "cut-to-90%": lambda p: os.truncate(p, p.stat().st_size * 9 // 10),
    "cut-last-kB": lambda p: os.truncate(p, p.stat().st_size - 1000),
    "object-header-overwritten": lambda p: overwrite(p, first(p, b"OHDR") + 8, b"\xff" * 64),
    "strings-heap-overwritten": lambda p: overwrite(p, first(p, b"GCOL") + 16, b"\xff" * 256),
    "zero-length": lambda p: os.truncate(p, 0),
    "random-bytes": lambda p: p.write_bytes(np.random.default_rng(0).bytes(50_000)),
}


def foreign(path: Path) -> None:
    """An HDF5 file another program wrote: a dataset, an attribute, nothing of ours."""
    path.unlink()
    with h5py.File(path, "w") as f:
        f["W"] = np.zeros((3, 4), dtype=np.float32)
        f.attrs["format_version"] = 1


DAMAGES["foreign-hdf5"] = foreign


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, tiny_data) -> Path:
    return write_resumable_scenario(tmp_path_factory.mktemp("fragile"), *tiny_data, name="fragile", steps=8, every=1,
                                    ckpt_every=2, tensors='["E", "W", "grad_W", "loss"]')


@pytest.fixture(scope="module")
def runs(tmp_path_factory, scenario) -> dict[str, Path]:
    """A finished run (closed cleanly), and one killed after step 5 (flags set, checkpoint at step 4)."""
    finished, killed = tmp_path_factory.mktemp("finished"), tmp_path_factory.mktemp("killed")
    assert main(["run", str(scenario), "--out", str(finished), "--no-check", "-q"]) == 0
    argv = [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(killed), "--no-check", "-q"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, FAULT_ENV: "5:SIGKILL"})  # the child kills itself after step 5
    assert done.returncode == -9, done.stderr[-2000:]
    return {"finished": finished / "fragile.h5", "killed": killed / "fragile.h5"}


def damaged_copy(runs, kind: str, damage: str, tmp_path: Path) -> Path:
    out = tmp_path / kind
    out.mkdir()
    path = out / "fragile.h5"
    shutil.copy(runs[kind], path)
    if checkpoint_path(runs[kind]).exists():
        shutil.copy(checkpoint_path(runs[kind]), checkpoint_path(path))
    DAMAGES[damage](path)
    return path


MILD = ("cut-to-90%", "cut-last-kB")  # in a killed run's file, a cut may fall past every complete frame


def same_frames(path: Path, original: Path) -> bool:
    """Every complete frame of `path` equals the original file's (bf16 bits)."""
    with Trajectory(path) as traj, Trajectory(original) as want:
        assert len(traj) >= 1 and traj.names == want.names
        return all(torch.equal(traj[name][:].view(torch.int16), want[name][: len(traj)].view(torch.int16))
                   if traj[name].is_bf16 else np.array_equal(traj[name][:], want[name][: len(traj)], equal_nan=True)
                   for name in traj.names)


def command(argv: list[str], path: Path, capsys) -> int:
    """Run a CLI command; it answers within seconds, and any error names the file, no traceback."""
    start = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - start
    err = capsys.readouterr().err
    assert seconds < SECONDS, f"{argv[0]} took {seconds:.1f} s"
    assert "Traceback" not in err
    if code != 0:
        assert str(path) in err, err[-1000:]
    return code


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("kind", ["finished", "killed"])
def test_report_and_compress_name_the_damaged_file(runs, kind, damage, tmp_path, capsys):
    path = damaged_copy(runs, kind, damage, tmp_path)
    report = command(["report", str(path), "--out", str(tmp_path / "report"), "-q"], path, capsys)
    compress = command(["compress", str(path), "--out", str(tmp_path / "c.h5"), "-q"], path, capsys)
    if kind == "killed" and damage in MILD and report == compress == 0:
        assert same_frames(path, runs[kind]) and same_frames(tmp_path / "c.h5", runs[kind])  # the cut spared them
    else:
        assert report != 0 and compress != 0, f"a damaged file was accepted ({kind}, {damage})"
        assert not (tmp_path / "c.h5").exists()


@pytest.mark.faults
@pytest.mark.parametrize("damage", [d for d in DAMAGES if d != "foreign-hdf5"])
def test_resume_refuses_a_damaged_file_or_finishes_the_true_run(runs, scenario, damage, tmp_path, capsys):
    path = damaged_copy(runs, "killed", damage, tmp_path)
    before = path.read_bytes()
    code = command(["run", str(scenario), "--out", str(path.parent), "--resume", "--no-check", "-q"], path, capsys)
    if code == 0:  # only where the cut spared the frames the checkpoint keeps: the uninterrupted run's file
        assert damage in MILD
        assert differing_attributes(path, runs["finished"]) <= {"resumed_at_steps"}
    else:
        assert path.read_bytes() == before, "the refused resume changed the file"


def test_a_truncated_file_never_reads_as_zeros(runs, tmp_path):
    """The killed run's file cut inside its frames: SWMR would open it and read zeros."""
    path = damaged_copy(runs, "killed", "cut-to-half", tmp_path)
    with pytest.raises(TrajectoryFileError, match=r"killed/fragile.h5"):
        Trajectory(path)


def test_an_intact_killed_run_still_opens_and_resumes(runs, scenario, tmp_path):
    path = damaged_copy(runs, "killed", "cut-last-kB", tmp_path)
    shutil.copy(runs["killed"], path)  # undamaged after all
    with Trajectory(path) as traj:
        assert traj.swmr and len(traj) >= 5  # frames 0..4 at least: the checkpoint after step 4 names them
    assert main(["run", str(scenario), "--out", str(path.parent), "--resume", "--no-check", "-q"]) == 0
    with Trajectory(path) as traj:
        assert not traj.swmr and len(traj) == 9
    assert differing_attributes(path, runs["finished"]) <= {"resumed_at_steps"}


def _zip_of_junk(path: Path) -> None:
    """A zip archive, as torch.save writes, holding no checkpoint."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02junk")


CHECKPOINT_DAMAGES = {
    "empty": lambda p: os.truncate(p, 0),
    "cut-to-half": lambda p: os.truncate(p, p.stat().st_size // 2),
    "random-bytes": lambda p: p.write_bytes(np.random.default_rng(1).bytes(20_000)),
    "another-torch-file": lambda p: torch.save({"weights": torch.zeros(3)}, p),
    "zip-of-junk": _zip_of_junk,
    "inside-overwritten": lambda p: overwrite(p, p.stat().st_size // 3, b"\xff" * 4096),
}


@pytest.mark.faults
@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGES))
def test_resume_from_a_bad_checkpoint_is_a_clear_error_and_touches_nothing(runs, scenario, damage, tmp_path, capsys):
    """Before: "pop from empty list", an empty message, or torch's multi-line weights_only text."""
    path = damaged_copy(runs, "killed", "cut-last-kB", tmp_path)
    shutil.copy(runs["killed"], path)  # the trajectory whole: only the checkpoint is bad
    ckpt = checkpoint_path(path)
    CHECKPOINT_DAMAGES[damage](ckpt)
    before = path.read_bytes(), ckpt.read_bytes()
    code = main(["run", str(scenario), "--out", str(path.parent), "--no-check", "-q", "--resume"])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and "pop from empty list" not in err
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert line.startswith(f"error: Cannot read checkpoint {ckpt}: ") and len(line) > len(f"error: Cannot read "
                                                                                         f"checkpoint {ckpt}: ") + 10
    assert (path.read_bytes(), ckpt.read_bytes()) == before  # the trajectory and the checkpoint untouched
