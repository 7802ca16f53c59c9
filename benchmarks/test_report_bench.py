"""`python -m harness report` on a Thimble-size file: 6,001 frames of W, 10,000 x 64 bf16
(7.7 GB), against a 1,001-frame file of the same shape. Peak RSS must not grow with length.

The 1,001-frame file, not a tiny one, is the baseline: glibc's allocator settles after a
few hundred 16-frame chunks (measured: peak RSS rises from ~980 to ~1,090 MiB over the
first ~300 frames, then stays flat), so a tiny file would measure that ramp, not growth.
Each file's report runs twice and the lower peak counts: one run's peak landed ~250 MiB
above another's for the same file (measured 2026-12-02: 1,423 vs 1,161 MiB for 6,001
frames, whose pass stays flat: 1,116 / 1,102 / 1,119 MiB peaks in its thirds), while memory
that grew with the file would show in both runs. Those peaks were read with ru_maxrss,
which a child inherits from its pytest parent; they are now the child's own VmHWM
(conftest.peak_rss_kib): 1,126 vs 1,214 MiB for 1,001 vs 6,001 frames, 2026-12-02.

    nox -s benchmarks -- -k report

Frames are synthetic (a lattice random walk: each frame moves a rotating tenth of the
tokens by one bf16 ULP in every coordinate) so the file is written at disk speed.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from conftest import child_rss_and_seconds
from core.recorder import RecordConfig, TrajectoryWriter
from core.token_tables import TokenTables

VOCAB, DIM = 10_000, 64
DEAD = np.arange(VOCAB) >= 6300


def write_walk(path: Path, frames: int) -> None:
    x = (torch.randn(VOCAB, DIM, generator=torch.Generator().manual_seed(0)) * 0.02).to(torch.bfloat16)
    bits = x.view(torch.int16)
    tokens = TokenTables(DEAD, np.where(DEAD, 0, 1), [str(i) for i in range(VOCAB)])
    config = RecordConfig(tensors=["W"], flush_every_frames=100)
    with TrajectoryWriter(path, vocab_size=VOCAB, dim=DIM, tied=True, config=config, tokens=tokens,
                          overwrite=True) as writer:
        for step in range(frames):
            if step:
                bits[step % 10 :: 10] += 1
            writer.append(step, {"W": x}, loss=1.0)


@contextmanager
def short_and_long_walks(folder: Path, short: int, long: int) -> Iterator[tuple[Path, Path]]:
    """Two walk files of `short` and `long` frames in `folder` (walk_<frames>.h5), deleted afterwards."""
    files = folder / f"walk_{short}.h5", folder / f"walk_{long}.h5"
    try:
        for path, frames in zip(files, (short, long)):
            write_walk(path, frames)
        yield files
    finally:
        for path in files:
            path.unlink(missing_ok=True)


RUNS_PER_FILE = 2


def report_rss_and_seconds(path: Path, out: Path, function: str = "harness.report.write:write_report"
                           ) -> tuple[float, float]:
    """The lower peak RSS (MiB) of RUNS_PER_FILE reports of `path` into `out` (or of another
    `function(path, out)`, "module:function"), each in its own process, and their mean seconds."""
    runs = [child_rss_and_seconds(function, path, out) for _ in range(RUNS_PER_FILE)]
    return min(rss for rss, _ in runs), sum(s for _, s in runs) / len(runs)


def test_report_memory_is_flat_in_file_length(benchmark, bench_dir):
    benchmark.group = "report-thimble-size"
    with short_and_long_walks(bench_dir, 1001, 6001) as (short_file, long_file):
        short_rss, short_s = report_rss_and_seconds(short_file, bench_dir / "short_report")
        long_rss, long_s = benchmark.pedantic(report_rss_and_seconds, args=(long_file, bench_dir / "long_report"),
                                              rounds=1, iterations=1)
        benchmark.extra_info.update(frames=6001, vocab=VOCAB, dim=DIM, file_gb=round(long_file.stat().st_size / 1e9, 2),
                                    peak_rss_mib_1001_frames=round(short_rss), peak_rss_mib_6001_frames=round(long_rss),
                                    seconds_1001_frames=short_s, seconds_6001_frames=long_s)
        print(f"\nreport peak RSS: 1,001 frames {short_rss:.0f} MiB in {short_s:.1f} s; "
              f"6,001 frames ({long_file.stat().st_size / 1e9:.1f} GB) {long_rss:.0f} MiB in {long_s:.1f} s")
        assert (bench_dir / "long_report" / "lattice.png").stat().st_size > 0
        assert long_rss - short_rss < 200, "report memory grows with the file's length"
