"""core.recorder + core.trajectory: round trips, plain-h5py readability, crash safety."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from core.bf16 import from_bits, hdf5_bfloat16, to_bits
from core.data import DataConfig
from core.model import ModelConfig
from core.fast import KernelConfig, choose_kernels
from core.fast.staging import frame_stager
from core.format import PARAM_TENSORS, frame_bytes, tied_name
from core.h5read import TrajectoryFileError
from core.recorder import HostStager, RecordConfig, RecorderError, TrajectoryWriter
from core.reopen import resume_trajectory
from core.run import frame_tensors, train_and_record
from core.token_tables import TokenTables
from core.train import Training, TrainConfig
from core.trajectory import Trajectory

V, D = 1000, 64
ALL = list(PARAM_TENSORS) + ["logits", "loss"]
CHILD = Path(__file__).with_name("record_child.py")


def small_training(random_ids, tied, steps, device="cpu", **train) -> Training:
    return Training(
        random_ids,
        ModelConfig(vocab_size=V, tied=tied),
        data_cfg=DataConfig(seq_len=32, batch_size=4),
        train_cfg=TrainConfig(steps=steps, device=device),
        kernels=choose_kernels(KernelConfig(**train), device),
    )


def expected_frames(random_ids, tied, steps, every, names, **train):
    """Frames recomputed by a second, identical training run, tensors cloned in memory."""
    training = small_training(random_ids, tied, steps, **train)
    frames = {0: frame_tensors(training, names, None)}
    frames[0] = {k: v.clone() for k, v in frames[0].items()}
    capture = tuple(n for n in names if n.startswith("grad_"))
    for step in range(1, steps + 1):
        result = training.step(capture_grads=capture, capture_logits=True)
        if step % every == 0 or step == steps:
            frames[step] = {k: v.to("cpu", copy=True) for k, v in frame_tensors(training, names, result).items()}
            frames[step]["loss"] = result.loss.item()
            frames[step]["grad_norm"] = result.grad_norm.item()
    return frames


def token_tables(random_ids) -> TokenTables:
    counts = np.bincount(random_ids.numpy(), minlength=V)
    return TokenTables(counts == 0, counts, [f"tok{i}" for i in range(V - 1)] + ["สวัสดี"])


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("compression", ["none", "zstd", "delta-zstd"])
def test_round_trip_every_tensor_kind(tmp_path, random_ids, tied, every, compression):
    steps, path = 7, tmp_path / "run.h5"
    # keyframes every 3 frames: a delta-coded read crosses keyframes
    config = RecordConfig(tensors=ALL, every=every, queue_frames=2, compression=compression, keyframe_every=3)
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=tied, config=config, tokens=token_tables(random_ids)) as w:
        train_and_record(small_training(random_ids, tied, steps), w)
        names = w.names
    expected = expected_frames(random_ids, tied, steps, every, names)
    with Trajectory(path) as traj:
        assert traj.steps.tolist() == sorted(expected)  # 0, every, 2*every, ..., last
        assert len(traj) == len(expected)
        for frame, step in enumerate(traj.steps):
            for name in ALL:
                if name == "loss":
                    want = np.float32(expected[step]["loss"]) if step else np.float32("nan")
                    np.testing.assert_array_equal(traj["loss"][frame], want)
                    continue
                stored = name[:-1] + "W" if tied and name.endswith("E") else name
                got = traj[name][frame]
                assert got.dtype == torch.bfloat16
                assert torch.equal(got, expected[step][stored]), f"{name} frame {frame} (step {step})"
        assert torch.equal(traj["grad_E"][0], torch.zeros(V, D, dtype=torch.bfloat16))
        assert traj.tied is tied
        assert traj.strings[-1] == "สวัสดี"
        assert set(traj.dead.tolist()) == set(range(700, V))
        assert traj.meta["closed_cleanly"] is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_cuda_frames_through_the_side_stream_are_exact(tmp_path, random_ids, tied, cuda_graph):
    """Device snapshots + pinned copies on the recorder's stream: every frame as a
    synchronous .cpu() of the same run sees it, with two host buffers recycled many times."""
    steps, path = 9, tmp_path / "cuda.h5"
    config = RecordConfig(tensors=ALL, queue_frames=2)
    training = small_training(random_ids, tied, steps, device="cuda", cuda_graph=cuda_graph)
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=tied, config=config,
                          stager=frame_stager(training.device)) as w:
        train_and_record(training, w)
        names = w.names
    expected = expected_frames(random_ids, tied, steps, 1, names, device="cuda", cuda_graph=cuda_graph)
    with Trajectory(path) as traj:
        assert traj.steps.tolist() == list(range(steps + 1))
        for step in range(1, steps + 1):
            for name in names:
                assert torch.equal(traj[name][step], expected[step][name]), f"{name} step {step}"
            assert traj["loss"][step] == np.float32(expected[step]["loss"])
            assert traj["grad_norm"][step] == np.float32(expected[step]["grad_norm"])


def test_tied_run_stores_the_shared_matrix_once(tmp_path, random_ids):
    path = tmp_path / "tied.h5"
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=True, config=RecordConfig(tensors=["E", "W"])) as w:
        train_and_record(small_training(random_ids, True, 2), w)
    with h5py.File(path, "r") as f:
        assert f["E"].id == f["W"].id  # a hard link: one dataset, two names
    assert path.stat().st_size < 3 * V * D * 2 * 1.5  # 3 frames once, not twice


def write_synthetic(path, frames: list[torch.Tensor], **kw) -> None:
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, config=RecordConfig(tensors=["W"]), **kw) as w:
        for step, frame in enumerate(frames):
            w.append(step, {"W": frame})


def special_values_frame() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(V, D, generator=gen).to(torch.bfloat16)
    specials = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e-40, -1e-40, 3.0e38, 2**-133])
    w[0, : len(specials)] = specials.to(torch.bfloat16)
    return w


def test_bits_survive_nan_inf_signed_zero_and_subnormals(tmp_path):
    frame = special_values_frame()
    write_synthetic(tmp_path / "s.h5", [frame])
    with Trajectory(tmp_path / "s.h5") as traj:
        got = traj["W"][0]
    assert np.array_equal(to_bits(got), to_bits(frame))


def test_plain_h5py_reads_exact_float_values(tmp_path):
    frame = special_values_frame()
    write_synthetic(tmp_path / "p.h5", [frame, frame * 2])
    with h5py.File(tmp_path / "p.h5", "r") as f:  # no project code on this side
        w = f["W"]
        assert w.dtype == np.float32
        np.testing.assert_array_equal(w[1], (frame * 2).float().numpy())
        np.testing.assert_array_equal(w.astype("float32")[0], frame.float().numpy())
        t = w.id.get_type()
        assert (t.get_size(), t.get_fields(), t.get_ebias()) == (2, (15, 7, 8, 0, 7), 127)


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="h5dump (hdf5-tools) not installed")
def test_h5dump_reads_the_values(tmp_path):
    frame = torch.full((V, D), 0.5, dtype=torch.bfloat16)
    frame[0, 0] = -1.25
    write_synthetic(tmp_path / "d.h5", [frame])
    out = subprocess.run(["h5dump", "-d", "/W", "-s", "0,0,0", "-c", "1,1,2", str(tmp_path / "d.h5")],
                         capture_output=True, text=True, check=True).stdout
    assert "-1.25, 0.5" in out.replace("\n", " ")


def test_bf16_type_matches_torch_rounding():
    x = torch.randn(4096)
    bits = to_bits(x.to(torch.bfloat16))
    back = from_bits(bits)
    assert torch.equal(back, x.to(torch.bfloat16))
    assert hdf5_bfloat16().get_size() == 2


def test_metadata_and_token_tables(tmp_path, random_ids):
    path = tmp_path / "m.h5"
    meta = {"scenario": {"name": "x", "train": {"steps": 2}}, "device": "cpu", "seeds": [42, 42], "git_commit": None}
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=True, metadata=meta, tokens=token_tables(random_ids)) as w:
        train_and_record(small_training(random_ids, True, 2), w)
    with Trajectory(path) as traj:
        m = traj.meta
        assert m["format_version"] == 1 and m["frames_complete"] == 3 and m["record_every"] == 1
        assert m["scenario"] == meta["scenario"] and m["seeds"] == [42, 42] and m["git_commit"] is None
        assert m["environment"]["torch"] == torch.__version__
        assert m["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert traj.counts.sum() == len(random_ids)
        assert traj.dead_mask.dtype == bool and traj.dead_mask.sum() == 300
        assert len(traj.live) == 700


def test_slicing_and_streaming_read_only_what_is_asked(tmp_path):
    frames = [torch.full((V, D), float(i), dtype=torch.bfloat16) for i in range(10)]
    write_synthetic(tmp_path / "f.h5", frames)
    with Trajectory(tmp_path / "f.h5") as traj:
        assert traj["W"].shape == (10, V, D)
        assert traj["W"][2:5].shape == (3, V, D) and traj["W"][4, 0, 0] == 4
        assert traj["W"][-1, [3, 5]].shape == (2, D)
        assert traj["W"][::4][:, 0, 0].tolist() == [0.0, 4.0, 8.0]
        blocks = list(traj.iter_frames("W", chunk=4, tokens=[1, 2]))
        assert [s for s, _ in blocks] == [0, 4, 8] and blocks[-1][1].shape == (2, 2, D)
        with pytest.raises(IndexError, match="out of range"):
            traj["W"][10]
        with pytest.raises(KeyError, match="has no 'grad_W'. Recorded: W"):
            traj["grad_W"]


def test_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "x.h5"
    write_synthetic(path, [torch.zeros(V, D, dtype=torch.bfloat16)])
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="x.h5 already exists"):
        write_synthetic(path, [torch.ones(V, D, dtype=torch.bfloat16)])
    assert path.read_bytes() == before


def test_unwritable_destination_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    with pytest.raises(RecorderError, match="is not a directory"):
        write_synthetic(blocker / "run.h5", [])


def test_too_little_free_space_is_refused_before_training(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    frames = free // (V * D * 2) + 10
    with pytest.raises(RecorderError, match="GB free"):
        TrajectoryWriter(tmp_path / "big.h5", vocab_size=V, dim=D, tied=False, expected_frames=frames)
    assert not (tmp_path / "big.h5").exists()


def test_token_tables_made_by_a_function_are_made_after_the_disk_check(tmp_path):
    """A run's token tables take a pass over its batches: the writer refuses a run that cannot
    fit before it makes them, and writes them when it fits."""
    made = []

    def tables() -> TokenTables:
        made.append(True)
        return TokenTables(np.arange(V) >= 700, np.arange(V), [f"t{i}" for i in range(V)])

    frames = shutil.disk_usage(tmp_path).free // (V * D * 2) + 10
    with pytest.raises(RecorderError, match="GB free"):
        TrajectoryWriter(tmp_path / "big.h5", vocab_size=V, dim=D, tied=False, tokens=tables, expected_frames=frames)
    assert made == [] and not (tmp_path / "big.h5").exists()
    write_synthetic(tmp_path / "fits.h5", [torch.zeros(V, D, dtype=torch.bfloat16)], tokens=tables)
    assert made == [True]
    with Trajectory(tmp_path / "fits.h5") as traj:
        assert traj.dead_mask.sum() == 300 and traj.token_tables().strings[-1] == f"t{V - 1}"


def test_unknown_tensor_is_rejected():
    with pytest.raises(ValueError, match="Unknown tensor 'V'. Available: E, W, grad_E"):
        TrajectoryWriter("/tmp/never.h5", vocab_size=V, dim=D, tied=False, config=RecordConfig(tensors=["V"]))


def poll_frames(path: Path, at_least: int, proc: subprocess.Popen, timeout: float = 120.0) -> int:
    """Wait until a live file (read with SWMR) names `at_least` complete frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.returncode} {proc.stderr.read()}")
        try:
            with Trajectory(path) as traj:
                if len(traj) >= at_least:
                    return len(traj)
        except (OSError, KeyError, TrajectoryFileError):
            pass  # not created yet
        time.sleep(0.05)
    raise AssertionError("timed out waiting for frames")


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.parametrize("compression", ["none", "delta-zstd"])
def test_sigkill_mid_run_leaves_every_complete_frame_exact(tmp_path, random_ids, compression):
    sys.path.insert(0, str(CHILD.parent))
    import record_child

    steps = 40
    seed = f"sigkill-{compression}"  # seeded: a failure names a kill step that reproduces
    kill_after = random.Random(seed).randint(3, 25)
    print(f"killing after {kill_after} complete frames (random.Random({seed!r}))")
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, str(CHILD), str(path), str(steps), "--compression", compression],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    poll_frames(path, kill_after, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Trajectory(path) as traj:
        n = len(traj)
        assert kill_after <= n < steps + 1, f"killed after {kill_after} frames, file says {n}"
        assert traj.meta["closed_cleanly"] is False
        training = record_child.make_training(steps)
        names = ["E", "W", "grad_W", "exp_avg_W"]
        for frame in range(n):
            if frame:
                result = training.step(capture_grads=("grad_W",))
                assert traj["loss"][frame] == np.float32(result.loss.item())
            want = frame_tensors(training, names, None)
            for name in names:
                assert torch.equal(traj[name][frame], want[name]), f"{name} frame {frame} of {n}"


@pytest.fixture()
def small_disk(tmp_path):
    """A real 3 MiB filesystem (tmpfs); needs root, as CI and this project's machines have."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def run_child(path: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHILD), str(path), str(steps), *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.faults
@pytest.mark.slow
def test_full_disk_stops_cleanly_and_keeps_every_written_frame(small_disk):
    # 4 tensors of 128 KiB: 0.5 MiB a frame, so about 5 frames fit in 3 MiB beside the reserve.
    path = small_disk / "full.h5"
    proc = run_child(path, 60, "--reserve-mb", "0.25")
    assert proc.returncode == 3, proc.stderr
    assert "DiskFullError: Writing trajectory" in proc.stderr and "full.h5" in proc.stderr
    assert "the disk is full" in proc.stderr and "are complete on disk" in proc.stderr
    with Trajectory(path) as traj:
        n = len(traj)
        assert 3 <= n < 61
        assert traj.steps.tolist() == list(range(n))
        assert torch.isfinite(traj["W"][n - 1].float()).all()
        assert traj.meta["closed_cleanly"] is False


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.parametrize("fill_after", ["the file appears", "step 1"])
def test_a_disk_filled_by_another_process_ends_the_run_cleanly(small_disk, fill_after):
    """Another process takes every free byte once the trajectory exists, or after step 1: the
    run stops with a clear error, the reserve held beside the file lets HDF5 close it, every
    complete frame reads back; a file with no frame is not left behind.
    Before: signal 11 inside HDF5, no message."""
    path = small_disk / "early.h5"
    child = subprocess.Popen([sys.executable, str(CHILD), str(path), "40", "--reserve-mb", "0.25"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    if fill_after == "step 1":
        assert child.stdout.readline().strip() == "step 1"
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:  # until ENOSPC
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 3, (child.returncode, err[-2000:])  # record_child: a RecorderError, reported
    assert "early.h5" in err and ("disk is full" in err or "No space" in err), err[-2000:]
    assert "Traceback" not in err and not list(small_disk.glob(".early.h5.reserve")), err[-2000:]
    if fill_after == "step 1" or path.exists():  # a run that recorded no frame leaves no file
        with Trajectory(path) as traj:
            assert len(traj) >= 1  # frame 0 at least (step 1's frame may still have been queued)
            assert traj.steps.tolist() == list(range(len(traj)))
            for frame in range(len(traj)):
                assert torch.isfinite(traj["W"][frame].float()).all()


@pytest.mark.faults
@pytest.mark.slow
def test_failed_hdf5_write_still_names_the_frames_that_are_safe(tmp_path):
    # A file-size limit makes HDF5's own write fail (EFBIG), past the free-space guard.
    path = tmp_path / "limited.h5"
    proc = run_child(path, 30, "--fsize-limit", str(6 * 4 * V * D * 2), "--reserve-mb", "0")
    assert proc.returncode != 0
    assert "RecorderError: Writing trajectory" in proc.stderr and "limited.h5" in proc.stderr
    assert "File too large" in proc.stderr and "are complete on disk" in proc.stderr
    with Trajectory(path) as traj:
        assert 1 <= len(traj) < 31
        for frame in range(len(traj)):
            assert torch.isfinite(traj["W"][frame].float()).all()
        assert traj.steps.tolist() == list(range(len(traj)))


def test_early_writeback_hands_every_frame_to_the_disk_and_changes_no_bits(tmp_path):
    gen = torch.Generator().manual_seed(3)
    frames = [torch.randn(V, D, generator=gen).to(torch.bfloat16) for _ in range(6)]
    advised = {}
    for mb in (0.0, 0.1):  # off; every 0.1 MB (each 128 kB frame)
        path = tmp_path / f"wb{mb}.h5"
        config = RecordConfig(tensors=["W"], writeback_every_mb=mb)
        with TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, config=config) as w:
            for step, frame in enumerate(frames):
                w.append(step, {"W": frame})
            w.sync()
            advised[mb] = w._writeback.handed_bytes if w._writeback is not None else 0
        with Trajectory(path) as traj:
            assert torch.equal(traj["W"][:], torch.stack(frames))
    assert advised[0.0] == 0
    if hasattr(os, "posix_fadvise"):
        assert advised[0.1] >= len(frames) * V * D * 2  # every frame's bytes were handed to the disk early


@pytest.mark.parametrize(("compression", "tied"), [("none", False), ("delta-zstd", False), ("delta-zstd", True)])
def test_a_resumed_writer_appends_after_the_kept_frames_bit_for_bit(tmp_path, compression, tied):
    """TrajectoryWriter.attach through core.reopen: frames 0-1 kept, frame 2 rewritten, 3 appended.
    Keyframes every 3 frames: the rewritten frame 2 is delta-coded against kept frame 1."""
    gen = torch.Generator().manual_seed(5)
    frames = [torch.randn(V, D, generator=gen).to(torch.bfloat16) for _ in range(5)]
    config = RecordConfig(tensors=["W"], compression=compression, keyframe_every=3)
    path = tmp_path / "r.h5"
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=tied, config=config) as w:
        for step, frame in enumerate(frames[:3]):
            w.append(step, {"W": frame}, loss=float(step), lr=0.5, grad_norm=2.0)
    with resume_trajectory(path, frames=2, config=config, metadata={"resumed": [2]}) as w:
        assert (w.frames_complete, w.vocab, w.dim, w.tied) == (2, V, D, tied)
        for step, frame in enumerate(frames[3:], start=2):
            w.append(step, {"W": frame}, loss=float(step) + 0.25)
    with Trajectory(path) as traj:
        assert traj.meta["frames_complete"] == 4 and traj.meta["closed_cleanly"] and traj.meta["resumed"] == [2]
        assert np.array_equal(to_bits(traj["W"][:]), to_bits(torch.stack(frames[:2] + frames[3:])))
        assert traj["loss"][1:].tolist() == [1.0, 2.25, 3.25] and traj.steps.tolist() == [0, 1, 2, 3]


def test_sync_returns_once_every_appended_frame_is_on_disk(tmp_path):
    gen = torch.Generator().manual_seed(4)
    frames = [torch.randn(V, D, generator=gen).to(torch.bfloat16) for _ in range(4)]
    path = tmp_path / "s.h5"
    config = RecordConfig(tensors=["W"], flush_every_frames=100, fsync=True)
    w = TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, config=config)
    with w:
        for step, frame in enumerate(frames[:3]):
            w.append(step, {"W": frame})
        assert w.sync(fsync=True) == 3 and w.frames_complete == 3
        with Trajectory(path) as live:  # a reader of the live file sees exactly the synced frames
            assert len(live) == 3 and np.array_equal(to_bits(live["W"][:]), to_bits(torch.stack(frames[:3])))
        w.append(3, {"W": frames[3]})  # the writer goes on after a sync
    assert w.bytes_written == 4 * V * D * 2
    with Trajectory(path) as traj:
        assert np.array_equal(to_bits(traj["W"][:]), to_bits(torch.stack(frames)))
    with h5py.File(path, "r") as f:  # what plain h5py (and xarray) see: 4 frames, no padding row
        assert {name: f[name].shape[0] for name in ("W", "step", "loss", "lr", "grad_norm")} == dict.fromkeys(
            ("W", "step", "loss", "lr", "grad_norm"), 4)
    with pytest.raises(RecorderError, match=rf"^Trajectory {re.escape(str(path))} is closed\.$"):
        w.sync()


def test_frame_bytes_and_tied_names():
    assert frame_bytes(["W", "logits", "grad_E"], vocab=10, dim=4) == 2 * 10 * 4 + 2 * 10 + 2 * 10 * 4
    assert [tied_name(n) for n in ("E", "grad_E", "exp_avg_sq_E", "W", "logits")] == [
        "W", "grad_W", "exp_avg_sq_W", "W", "logits"]


def test_a_new_file_says_what_it_holds_before_its_first_frame(tmp_path):
    """Opened with plain h5py while the writer has appended nothing: no frames, not closed cleanly,
    the delta encoding named on each coded dataset; then one frame's bytes counted once."""
    path = tmp_path / "new.h5"
    config = RecordConfig(tensors=["W", "loss"], compression="delta-zstd", keyframe_every=5)
    w = TrajectoryWriter(path, vocab_size=V, dim=D, tied=True, config=config)
    try:
        assert w.sync() == 0 and w.bytes_written == 0
        with h5py.File(path, "r", swmr=True) as f:
            attrs = dict(f.attrs)
            assert (attrs["frames_complete"], attrs["closed_cleanly"], attrs["keyframe_every"]) == (0, False, 5)
            datasets = []
            f.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
            per_frame = [d for d in datasets if d.maxshape[0] is None]  # the growing (frames, ...) datasets
            names = {d.name.rsplit("/", 1)[-1] for d in per_frame}  # a hard-linked dataset is visited once
            assert names >= {"loss", "step"} and len(names & {"E", "W"}) == 1, names
            assert all(d.shape[0] == 0 for d in per_frame), {d.name: d.shape for d in per_frame}
            delta = [d for d in per_frame if "keyframe_every" in d.attrs]
            assert len(delta) == 1 and delta[0].name.rsplit("/", 1)[-1] in ("E", "W")  # tied: one dataset
            assert f["delta/E"] == f["delta/W"]  # ... under both names, where a plain h5py user looks for them
            assert delta[0].attrs["encoding"] == "bfloat16 bits, XOR the previous frame's bits except at keyframes"
        w.append(0, {"W": torch.ones(V, D, dtype=torch.bfloat16)})
        assert w.sync() == 1 and w.bytes_written == V * D * 2
    finally:
        w.close()


def test_a_bad_frame_is_refused_naming_the_step_and_tensor_and_a_closed_writer_says_so(tmp_path):
    path = tmp_path / "bad.h5"
    w = TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, config=RecordConfig(tensors=["E", "W"]))
    with w:
        with pytest.raises(KeyError, match=r"Frame for step 3 lacks E, W\."):
            w.append(3, {})
        with pytest.raises(TypeError, match=r"^E must be bfloat16, got torch\.float32\.$"):
            w.append(3, {"E": torch.zeros(V, D), "W": torch.zeros(V, D, dtype=torch.bfloat16)})
        assert w.frames_written == 0
    with pytest.raises(RecorderError, match=rf"^Trajectory {re.escape(str(path))} is closed\.$"):
        w.append(4, {"E": torch.zeros(V, D, dtype=torch.bfloat16), "W": torch.zeros(V, D, dtype=torch.bfloat16)})


# ---------------------------------------------------------------- settings, the up-front check, cadence


def test_record_config_errors_name_the_key_its_value_and_the_choices():
    for key in ("every", "queue_frames", "keyframe_every"):
        with pytest.raises(ValueError, match=rf"^record {key} must be >= 1, got 0\.$"):
            RecordConfig(**{key: 0}).validate()
    with pytest.raises(ValueError, match=r"^compression must be one of none, zstd, delta-zstd, got 'lz4'\.$"):
        RecordConfig(compression="lz4").validate()


def test_the_up_front_check_counts_stored_frames_the_reserve_and_what_lies_beside(tmp_path):
    """Tied: E is stored as W, so a frame of E and W is one matrix (1 MiB at V 8192, D 64). Beside
    the frames: the 3 MiB reserve plus the caller's 5 MiB (a checkpoint)."""
    path, frames = tmp_path / "big.h5", 10**9
    beside = rf"\({frames} frames of 1\.0 MiB and 8\.0 MiB beside: reserve, checkpoint\)"
    with pytest.raises(RecorderError, match=beside):
        TrajectoryWriter(path, vocab_size=8192, dim=64, tied=True, expected_frames=frames, other_bytes=5 * 2**20,
                         config=RecordConfig(tensors=["E", "W"], disk_reserve_mb=3.0))
    assert list(tmp_path.iterdir()) == []  # refused before anything was written, the reserve included


def test_overwrite_replaces_an_existing_file_only_when_asked(tmp_path):
    path = tmp_path / "x.h5"
    write_synthetic(path, [torch.zeros(V, D, dtype=torch.bfloat16)] * 2)
    write_synthetic(path, [torch.ones(V, D, dtype=torch.bfloat16)], overwrite=True)
    with Trajectory(path) as traj:
        assert len(traj) == 1 and torch.equal(traj["W"][0], torch.ones(V, D, dtype=torch.bfloat16))


def test_frames_are_flushed_every_n_frames_or_every_t_seconds(tmp_path):
    """One host buffer: append(k) returns only once frame k-1 is written (and flushed, if due), so
    frames_complete after each append shows exactly when the writer flushed. A sync flushes too,
    and the count of frames to the next flush starts again after it."""
    frame = torch.zeros(V, D, dtype=torch.bfloat16)
    for seconds, expected in ((3600.0, [0, 0, 0, 3, 3, 3, 6, 7, 7, 7, 10]), (0.0, list(range(7)) + [7, 8, 9, 10])):
        config = RecordConfig(tensors=["W"], queue_frames=1, flush_every_frames=3, flush_every_seconds=seconds)
        with TrajectoryWriter(tmp_path / f"c{seconds}.h5", vocab_size=V, dim=D, tied=False, config=config) as w:
            seen = []
            for step in range(11):
                if step == 7:
                    assert w.sync() == 7
                w.append(step, {"W": frame})
                seen.append(w.frames_complete)
        assert seen == expected, (seconds, seen)


class SlowStager(HostStager):
    """The CPU stager, with a device copy that takes 0.7 s (longer than sync's 0.5 s poll)."""

    def wait(self, slot):
        time.sleep(0.7)


def test_sync_waits_for_a_slow_copy(tmp_path):
    with TrajectoryWriter(tmp_path / "slow.h5", vocab_size=V, dim=D, tied=False, stager=SlowStager()) as w:
        w.append(0, {"W": torch.zeros(V, D, dtype=torch.bfloat16)})
        assert w.sync() == 1


def test_a_file_closed_with_no_frame_stays_and_says_so(tmp_path):
    path = tmp_path / "empty.h5"
    TrajectoryWriter(path, vocab_size=V, dim=D, tied=False).close()
    with h5py.File(path, "r") as f:
        assert f.attrs["frames_complete"] == 0 and f.attrs["closed_cleanly"]


def test_bad_token_tables_leave_no_file_and_give_the_reserve_back(tmp_path):
    short = TokenTables(np.zeros(V - 1, bool), np.zeros(V - 1, np.int64), [f"t{i}" for i in range(V - 1)])
    with pytest.raises(ValueError, match=f"must have {V} entries"):
        TrajectoryWriter(tmp_path / "t.h5", vocab_size=V, dim=D, tied=False, tokens=short)
    assert list(tmp_path.iterdir()) == []  # no file, no half-made copy, no reserve


# ---------------------------------------------------------------- a stager that fails, as a device copy can


class FailingStager(HostStager):
    """The CPU stager, except that the copy of frame `fail_at` (counted from 0) fails when the writer
    thread waits for it, or that its host buffers cannot be made (pinned memory can run out)."""

    def __init__(self, fail_at: int | None = None, no_buffers: bool = False):
        self.fail_at, self.no_buffers, self.waited = fail_at, no_buffers, 0

    def new_slot(self, shapes):
        if self.no_buffers:
            raise RuntimeError("cannot pin host memory")
        return super().new_slot(shapes)

    def wait(self, slot):
        if self.waited == self.fail_at:
            raise RuntimeError(f"copy {self.waited} failed")
        self.waited += 1


def open_hdf5_files(folder: Path) -> list[str]:
    """Files in `folder` that HDF5 holds open in this process. Checked while the caught exception
    is alive: its traceback keeps the failed writer's frames (and any file they opened) from
    garbage collection, as a caller that logs or stores the exception would."""
    names = [h5py.h5f.FileID(i).name.decode() for i in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)]
    return [name for name in names if Path(name).parent == folder]


def test_a_run_that_fails_before_its_first_frame_leaves_nothing_and_logs_why(tmp_path, caplog):
    path = tmp_path / "f.h5"
    w = TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, stager=FailingStager(fail_at=0))
    w.append(0, {"W": torch.zeros(V, D, dtype=torch.bfloat16)})
    message = rf"^Writing trajectory {re.escape(str(path))} failed after 0 frames: copy 0 failed\. No frame is complete"
    with caplog.at_level("ERROR", logger="core.recorder"), pytest.raises(RecorderError, match=message):
        w.close()
    assert [r.getMessage() for r in caplog.records] == [f"Writing {path} failed: copy 0 failed"]
    assert list(tmp_path.iterdir()) == [] and open_hdf5_files(tmp_path) == []


def test_a_failed_run_keeps_the_frames_it_completed(tmp_path):
    path = tmp_path / "f.h5"
    w = TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, stager=FailingStager(fail_at=2))
    for step in range(2):
        w.append(step, {"W": torch.full((V, D), step, dtype=torch.bfloat16)})
    assert w.sync() == 2
    w.append(2, {"W": torch.ones(V, D, dtype=torch.bfloat16)})
    with pytest.raises(RecorderError, match=r"failed after 2 frames: copy 2 failed\. Frames 0\.\.1 are complete"):
        w.close()
    with Trajectory(path) as traj:
        assert len(traj) == 2 and traj["W"][1, 0, 0] == 1 and not traj.meta["closed_cleanly"]


def test_a_failed_run_whose_file_was_deleted_still_says_what_failed(tmp_path):
    """`rm -rf` of the output folder mid-run: close reports the write failure, not the missing file."""
    path = tmp_path / "f.h5"
    w = TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, stager=FailingStager(fail_at=0))
    w.append(0, {"W": torch.zeros(V, D, dtype=torch.bfloat16)})
    path.unlink()
    with pytest.raises(RecorderError, match="copy 0 failed"):
        w.close()


def test_a_writer_without_host_buffers_closes_and_removes_its_new_file(tmp_path):
    path = tmp_path / "f.h5"
    with pytest.raises(RuntimeError, match="cannot pin host memory") as failure:
        TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, stager=FailingStager(no_buffers=True))
    assert list(tmp_path.iterdir()) == [] and open_hdf5_files(tmp_path) == [], failure


def test_a_resumed_file_is_never_removed_by_a_failure(tmp_path):
    """Resumed at frame 0 (no frame kept), then failing: the file is the user's, so it stays; a
    resume without host buffers closes the file again."""
    path = tmp_path / "r.h5"
    write_synthetic(path, [torch.zeros(V, D, dtype=torch.bfloat16)])
    config = RecordConfig(tensors=["W"])
    with pytest.raises(RuntimeError, match="cannot pin host memory") as failure:
        resume_trajectory(path, frames=1, config=config, stager=FailingStager(no_buffers=True))
    assert open_hdf5_files(tmp_path) == [], failure
    w = resume_trajectory(path, frames=0, config=config, stager=FailingStager(fail_at=0))
    w.append(0, {"W": torch.ones(V, D, dtype=torch.bfloat16)})
    with pytest.raises(RecorderError, match="copy 0 failed"):
        w.close()
    assert path.is_file() and open_hdf5_files(tmp_path) == []
