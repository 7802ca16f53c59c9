"""`python -m harness animate`: a movie of the token cloud from a real tiny run, read back with
Pillow (frame count, size, colours, frames that differ), its projection, and bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_SCENARIO
from core.trajectory import Trajectory
from harness.animate.movie import MovieConfig, animate, corner_text, shown_frames
from harness.animate.projection import frame_rows
from harness.cli import main
from harness.runner import run_scenario
from harness.scenario.load import load_scenario

STEPS = 8  # frames: steps 0..8


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data):
    """An untied tiny run, 8 steps, E, W and loss recorded every step."""
    out = tmp_path_factory.mktemp("run")
    scenario = out / "tiny_movie.toml"
    scenario.write_text(TINY_SCENARIO.format(name="tiny_movie", tied="false", tokenizer=tiny_data[0],
                                             corpus=tiny_data[1], steps=STEPS, smoke_steps=STEPS,
                                             tensors='["E", "W", "loss"]'), encoding="utf-8")
    return run_scenario(load_scenario(scenario), out, progress=False).path


@pytest.fixture(scope="module")
def gif(run, tmp_path_factory):
    return animate(run, tmp_path_factory.mktemp("movie") / "cloud.gif", MovieConfig(size_px=320))


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
        return out


def reddish(rgb: np.ndarray) -> int:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(((r > 150) & (g < 120) & (b < 120)).sum())


def bluish(rgb: np.ndarray) -> int:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(((b > 130) & (r < 120) & (b - r > 60)).sum())


def test_the_gif_has_one_frame_per_recorded_step_of_the_set_size(gif):
    assert gif.frames == list(range(STEPS + 1))
    frames = gif_frames(gif.path)
    assert len(frames) == STEPS + 1
    assert all(f.shape == (320, 320, 3) for f in frames)
    with Image.open(gif.path) as im:
        assert im.info.get("loop") == 0 and im.info.get("duration") == 100  # 10 fps, looping
    assert not list(gif.path.parent.glob(".*partial*")), "no temporary movie left behind"


def test_frames_differ_and_show_dead_and_live_tokens_in_their_colours(gif):
    frames = gif_frames(gif.path)
    assert not np.array_equal(frames[0], frames[-1])
    assert sum(not np.array_equal(a, b) for a, b in zip(frames, frames[1:])) == STEPS  # at least the step counter
    for f in frames:
        assert reddish(f) > 20 and bluish(f) > 20


def test_projection_is_the_pca_of_frame_0_and_limits_hold_every_token(run, gif):
    p = gif.projection
    assert np.allclose(p.axes.T @ p.axes, np.eye(2), atol=1e-9)
    assert "PCA of frame 0" in p.description and "W" in p.description
    with Trajectory(run) as traj:
        view = traj["W"]
        xy0 = p.apply(frame_rows(view, 0))
        assert np.allclose(xy0.mean(0), 0, atol=1e-9)  # centred on frame 0's mean
        var = xy0.var(0)
        total = (frame_rows(view, 0) - frame_rows(view, 0).mean(0)).var(0).sum()
        assert var[0] >= var[1] > 0 and np.allclose(var / total, p.explained, rtol=1e-6)
        (x0, x1), (y0, y1) = gif.limits
        for f in gif.frames:
            xy = p.apply(frame_rows(view, f))
            assert (xy[:, 0] > x0).all() and (xy[:, 0] < x1).all() and (xy[:, 1] > y0).all() and (xy[:, 1] < y1).all()


def test_stride_and_all_frames_projection_through_the_cli(run, tmp_path, capsys):
    out = tmp_path / "strided.gif"
    code = main(["animate", str(run), "--out", str(out), "--stride", "3", "--projection", "all", "--tensor", "E",
                 "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"movie: {out}" in printed and "4 frames" in printed
    assert "PCA of all 4 frames shown (steps 0-8), E" in printed
    assert shown_frames(STEPS + 1, 3) == [0, 3, 6, 8]
    assert len(gif_frames(out)) == 4


def test_an_mp4_where_imageio_ffmpeg_is_installed(run, tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    movie = animate(run, tmp_path / "cloud.mp4", MovieConfig(stride=2, size_px=320))
    assert movie.path.read_bytes()[4:8] == b"ftyp" and movie.frames == [0, 2, 4, 6, 8]
    reader = imageio_ffmpeg.read_frames(str(movie.path))
    meta = next(reader)
    decoded = [np.frombuffer(f, np.uint8).reshape(320, 320, 3) for f in reader]
    assert meta["size"] == (320, 320) and len(decoded) == 5 and not np.array_equal(decoded[0], decoded[-1])


@pytest.mark.parametrize("case", ["not_hdf5", "empty", "missing", "bad_suffix"])
def test_bad_input_is_a_clear_error_naming_the_file(run, tmp_path, capsys, case):
    target, out = run, tmp_path / "m.gif"
    if case == "not_hdf5":
        target = tmp_path / "notes.h5"
        target.write_text("not a trajectory", encoding="utf-8")
    elif case == "missing":
        target = tmp_path / "absent.h5"
    elif case == "bad_suffix":
        out = tmp_path / "m.avi"
    else:
        target = tmp_path / "empty.h5"
        target.write_bytes(b"")
    code = main(["animate", str(target), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(out if case == "bad_suffix" else target) in err, err
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_a_matrix_the_file_lacks_is_named_with_what_it_records(run, tmp_path):
    with pytest.raises(KeyError, match=f"{run} has no 'grad_W'. Recorded: .*W"):
        animate(run, tmp_path / "m.gif", MovieConfig(tensor="grad_W"))
    assert not (tmp_path / "m.gif").exists()


def test_the_corner_says_the_step_and_the_recorded_loss(run):
    with Trajectory(run) as traj:
        loss = traj["loss"][:]
    assert corner_text(0, float(loss[0])) == "step 0\nloss –"  # frame 0: before any step (NaN)
    assert corner_text(STEPS, float(loss[-1])) == f"step {STEPS}\nloss {loss[-1]:.4f}"
    assert corner_text(3, None) == "step 3\nloss not recorded"


def test_a_stride_below_one_is_refused(run, tmp_path, capsys):
    assert main(["animate", str(run), "--out", str(tmp_path / "m.gif"), "--stride", "0"]) == 2
    assert "--stride 0: must be >= 1" in capsys.readouterr().err and not (tmp_path / "m.gif").exists()


def test_the_command_is_listed_and_documents_its_options():
    proc = subprocess.run([sys.executable, "-m", "harness", "animate", "--help"], capture_output=True, text=True,
                          check=True, timeout=120)
    for option in ("--out", "--stride", "--tensor", "--projection", "--fps"):
        assert option in proc.stdout
