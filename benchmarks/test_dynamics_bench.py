"""harness.dynamics.dynamics_summary (all six definitions) on Flannel-size files, 10,000 x 64
bf16 W: peak RSS must not grow with the file's length, since each definition streams 16
frames at a time. The files are the report benchmark's lattice random walk (each frame moves
a rotating tenth of the tokens by one ULP in every coordinate), written at disk speed.

    nox -s benchmarks -- -k dynamics

Measured 2026-12-03 on the shared 2-core machine (nice 15, other jobs running): peak RSS
579 MiB for 201 frames in 69.5 s, 622 MiB for 1,001 frames (1.28 GB) in 127.8 s.
"""

from __future__ import annotations

from pathlib import Path

from conftest import child_rss_and_seconds
from test_report_bench import short_and_long_walks

SHORT, LONG = 201, 1001  # frames; LONG is Flannel 1 at full scale (1,000 steps, every step)


def summary_rss_and_seconds(path: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and seconds of dynamics_summary(path) in its own process."""
    return child_rss_and_seconds("harness.dynamics:dynamics_summary", path)


def test_dynamics_summary_memory_is_flat_in_file_length(benchmark, bench_dir):
    benchmark.group = "dynamics-flannel-size"
    with short_and_long_walks(bench_dir, SHORT, LONG) as (short_file, long_file):
        short_rss, short_s = summary_rss_and_seconds(short_file)
        long_rss, long_s = benchmark.pedantic(summary_rss_and_seconds, args=(long_file,), rounds=1, iterations=1)
        benchmark.extra_info.update(peak_rss_mib_short=round(short_rss), peak_rss_mib_long=round(long_rss),
                                    seconds_short=short_s, seconds_long=long_s, frames=(SHORT, LONG))
        print(f"\ndynamics_summary peak RSS: {SHORT} frames {short_rss:.0f} MiB in {short_s:.1f} s; "
              f"{LONG} frames ({long_file.stat().st_size / 1e9:.2f} GB) {long_rss:.0f} MiB in {long_s:.1f} s")
        assert long_rss - short_rss < 200, "dynamics_summary memory grows with the file's length"
