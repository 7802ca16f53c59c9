"""Shared helpers for the benchmark suites (run with `nox -s benchmarks`)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

# The seeds' Trainer (tests/seed_trainer.py) is a test oracle, not part of the installed package:
# the benchmarks, and the child processes that import this file, find it in the tests folder.
TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.append(str(TESTS_DIR))


def corpus_ids() -> torch.Tensor:
    """400k ids over the first 6,300 of 10,000: the dead share of the default bundle."""
    return torch.tensor(np.random.default_rng(0).integers(0, 6300, size=400_000))


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB: the high-water mark of its own address space.

    Not `getrusage().ru_maxrss` on Linux: a child started by `subprocess` inherits its
    parent's peak there (the kernel keeps the larger across exec), so a small child of a
    large pytest process reports the parent's figure (measured: a 14 MiB child of an 800 MiB
    parent reads 813 MiB). /proc/self/status's VmHWM starts afresh at exec.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


def child_rss_and_seconds(function: str, *args: str | Path) -> tuple[float, float]:
    """Peak RSS (MiB) and seconds of one call `function(*args)` ("module:function", string
    arguments) in a process of its own: measure_child.py beside this file."""
    child = Path(__file__).with_name("measure_child.py")
    peak_kib, seconds = subprocess.run([sys.executable, str(child), function, *map(str, args)], capture_output=True,
                                       text=True, check=True).stdout.split()
    return int(peak_kib) / 1024, float(seconds)


def available_devices() -> list[str]:
    """cpu always; cuda and mps where present."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def raw_write_seconds(path: Path, chunk: bytes, n_chunks: int) -> float:
    """Sequential write of n_chunks x chunk to a new file, then fsync: the disk's own speed."""
    start = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        for _ in range(n_chunks):
            f.write(chunk)
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


@pytest.fixture()
def bench_dir(tmp_path_factory) -> Path:
    """A directory on the disk under test (BENCH_DIR, else the pytest tmp dir)."""
    root = os.environ.get("BENCH_DIR")
    if root:
        d = Path(root)
        d.mkdir(parents=True, exist_ok=True)
        return d
    return tmp_path_factory.mktemp("bench")
