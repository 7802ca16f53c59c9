"""`python -m harness animate` keeps one frame in memory: its peak RSS must not grow with the
number of frames. A 60-frame and a 360-frame movie of the same Flannel-size synthetic file
shape (10,000 x 64 bf16, the lattice random walk of test_report_bench), each drawn in its own
process; the lower peak of two runs counts (see test_report_bench for why). Measured
2026-12-03 on the shared 2-core machine: 60 frames 337 MiB in 63 s, 360 frames 319 MiB in 193 s.

    nox -s benchmarks -- -k animate
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from test_report_bench import DIM, VOCAB, report_rss_and_seconds, short_and_long_walks

SHORT, LONG = 60, 360


def animate_rss_and_seconds(path: Path, movie: Path) -> tuple[float, float]:
    return report_rss_and_seconds(path, movie, function="harness.animate.movie:animate")


def test_animate_memory_is_flat_in_frame_count(benchmark, bench_dir):
    benchmark.group = "animate-flannel-size"
    with short_and_long_walks(bench_dir, SHORT, LONG) as (short_file, long_file):
        short_rss, short_s = animate_rss_and_seconds(short_file, bench_dir / "short.gif")
        long_rss, long_s = benchmark.pedantic(animate_rss_and_seconds, args=(long_file, bench_dir / "long.gif"),
                                              rounds=1, iterations=1)
        benchmark.extra_info.update(vocab=VOCAB, dim=DIM, **{f"peak_rss_mib_{SHORT}_frames": round(short_rss),
                                                             f"peak_rss_mib_{LONG}_frames": round(long_rss),
                                                             f"seconds_{SHORT}_frames": short_s,
                                                             f"seconds_{LONG}_frames": long_s})
        print(f"\nanimate peak RSS: {SHORT} frames {short_rss:.0f} MiB in {short_s:.1f} s; "
              f"{LONG} frames {long_rss:.0f} MiB in {long_s:.1f} s")
        with Image.open(bench_dir / "long.gif") as im:
            assert im.n_frames == LONG
        assert long_rss - short_rss < 50, "animate's memory grows with the number of frames"
