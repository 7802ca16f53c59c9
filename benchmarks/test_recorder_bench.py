"""Recorder benchmarks: write throughput against the raw disk, compression, flat memory.

    nox -s benchmarks -- -k recorder
    BENCH_TRAJECTORY=runs/flannel_1.h5 nox -s benchmarks -- -k compression   # on real weights
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import raw_write_seconds
from core.recorder import RecordConfig, TrajectoryWriter
from core.trajectory import Trajectory

V, D = 10_000, 64  # Flannel shape
FRAMES = 200
COMPRESS_FRAMES = 128  # two keyframe intervals
TENSOR_SETS = {"W": ["W"], "W+grads+moments": ["W", "grad_W", "exp_avg_W", "exp_avg_sq_W"]}


def write_trajectory(path: Path, tensors: list[str], frames: list[dict]) -> int:
    """Create, fill and close (flush + fsync) one trajectory: what the raw write is compared with."""
    config = RecordConfig(tensors=tensors, flush_every_frames=FRAMES + 1, fsync=True, queue_frames=4)
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, config=config) as writer:
        for step, frame in enumerate(frames):
            writer.append(step, frame)
    return writer.bytes_written


@pytest.mark.parametrize("tensor_set", list(TENSOR_SETS))
def test_recorder_write_throughput(benchmark, bench_dir, tensor_set):
    tensors = TENSOR_SETS[tensor_set]
    gen = torch.Generator().manual_seed(0)
    # Eight distinct frames reused round-robin: real bits, no generation inside the timing.
    pool = [{n: torch.randn(V, D, generator=gen).to(torch.bfloat16) for n in tensors} for _ in range(8)]
    frames = [pool[i % 8] for i in range(FRAMES)]
    path = bench_dir / "throughput.h5"
    benchmark.group = "recorder-throughput"
    def fresh_file():  # removing the last round's file is not part of the timing (nor of the raw write's)
        path.unlink(missing_ok=True)
        return (path, tensors, frames), {}

    written = benchmark.pedantic(write_trajectory, setup=fresh_file, rounds=3, warmup_rounds=1)
    path.unlink()
    # Best of 3 on both sides: the disk's speed varies from round to round (page-cache writeback).
    recorder_mb_s = written / benchmark.stats.stats.min / 1e6
    raw_s = min(raw_write_seconds(bench_dir / "raw.bin", bytes(V * D * 2), written // (V * D * 2)) for _ in range(3))
    raw_mb_s = written / raw_s / 1e6
    benchmark.extra_info.update(
        shape=[FRAMES, V, D], dtype="bfloat16", tensors=tensors, bytes=written,
        recorder_MB_s=round(recorder_mb_s, 1), raw_disk_MB_s=round(raw_mb_s, 1),
        ratio_to_raw_disk=round(recorder_mb_s / raw_mb_s, 3),
    )
    print(f"\n{tensor_set}: recorder {recorder_mb_s:.0f} MB/s, raw disk {raw_mb_s:.0f} MB/s, "
          f"ratio {recorder_mb_s / raw_mb_s:.2f}")
    assert written == FRAMES * len(tensors) * V * D * 2


def w_sequence(frames: int) -> tuple[str, list[torch.Tensor]]:
    """W frames to compress: the first ones of a real trajectory (BENCH_TRAJECTORY=run.h5), else
    a synthetic Adam-like walk (every live coordinate moves ~8 bf16 ULPs a step: harsher than training)."""
    real = os.environ.get("BENCH_TRAJECTORY")
    if real:
        with Trajectory(real) as traj:
            return f"{real} frames 0..{frames - 1}", list(traj["W"][:frames])
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(V, D, generator=gen) * 0.02).to(torch.bfloat16)
    live = torch.rand(V, 1, generator=gen) < 0.68
    out = [w]
    for _ in range(frames - 1):
        w = (w.float() - 1e-3 * torch.sign(torch.randn(V, D, generator=gen)) * live).to(torch.bfloat16)
        out.append(w)
    return "synthetic Adam-like walk", out


@pytest.mark.parametrize("compression", ["none", "zstd", "delta-zstd"])
def test_recorder_compression(benchmark, bench_dir, compression):
    """File size and writer speed of each encoding of W (keyframes every 64 frames)."""
    source, frames = w_sequence(COMPRESS_FRAMES)
    path = bench_dir / f"{compression}.h5"
    config = RecordConfig(tensors=["W"], compression=compression, keyframe_every=64, fsync=True)
    benchmark.group = "recorder-compression"

    def write():
        with TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, config=config, overwrite=True) as writer:
            for step, frame in enumerate(frames):
                writer.append(step, {"W": frame})

    benchmark.pedantic(write, rounds=2, warmup_rounds=1)
    size = path.stat().st_size
    with Trajectory(path) as traj:  # lossless, or the figure means nothing
        assert torch.equal(traj["W"][len(frames) - 1], frames[-1])
    path.unlink()
    raw = len(frames) * V * D * 2
    seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(source=source, frames=len(frames), file_bytes=size, ratio=round(raw / size, 2),
                                input_MB_s=round(raw / seconds / 1e6, 1), ms_per_frame=round(seconds / len(frames) * 1e3, 2))
    print(f"\n{compression}: {raw / size:.2f}x smaller than the raw frames, {raw / seconds / 1e6:.0f} MB/s in, "
          f"{seconds / len(frames) * 1e3:.1f} ms per frame ({source})")


def peak_rss_mib(path: Path, steps: int) -> float:
    child = Path(__file__).with_name("rss_child.py")
    out = subprocess.run([sys.executable, str(child), str(path), str(steps)], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]) / 1024


def test_recorder_memory_is_flat_in_run_length(benchmark, bench_dir):
    """Peak RSS of a 1,000-step recording (every tensor, every step) vs a 100-step one."""
    benchmark.group = "recorder-memory"
    short = peak_rss_mib(bench_dir / "short.h5", 100)
    long = benchmark.pedantic(peak_rss_mib, args=(bench_dir / "long.h5", 1000), rounds=1, iterations=1)
    benchmark.extra_info.update(peak_rss_mib_100_steps=round(short), peak_rss_mib_1000_steps=round(long),
                                recorded_mib_1000_steps=round((bench_dir / "long.h5").stat().st_size / 2**20))
    print(f"\npeak RSS: 100 steps {short:.0f} MiB, 1,000 steps {long:.0f} MiB")
    assert long - short < 100, "memory grows with the run's length"
