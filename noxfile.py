"""Developer sessions. `nox -s tests` is what CI runs (.ci/run) and the README's test command."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", "constraints.txt")


def machine_name() -> str:
    """System, architecture, cores and a hash of the CPU's model and feature flags: machines that
    share a name but not their CPU kernels (AVX2 vs AVX-512: 10x apart here) never compare."""
    spec = importlib.util.spec_from_file_location("cpu_info", Path(__file__).parent / "core" / "fast" / "cpu_info.py")
    cpu_info = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cpu_info)  # standard library only: no torch in nox's own environment
    digest = hashlib.sha256(cpu_info.cpu_description().encode()).hexdigest()[:8]
    return f"{platform.system()}-{platform.machine()}-{os.cpu_count()}cpu-{digest}"


def install_project(session: nox.Session, extras: str = "test") -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests of core and harness (pass pytest args after --)."""
    install_project(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(default=False)
def faults(session: nox.Session) -> None:
    """The fault suite alone (tests marked `faults`: real processes, files and signals; also part of
    `tests`). Its disk-full cases mount a small tmpfs, which needs root: elsewhere they are skipped,
    and pytest's summary says so (-ra)."""
    install_project(session)
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        session.warn("not root: the disk-full cases (a small tmpfs) will be skipped, not run")
    session.run("python", "-m", "pytest", "tests", "-m", "faults", "-ra", *session.posargs)


@nox.session(default=False)
def benchmarks(session: nox.Session) -> None:
    """Benchmarks: saves each run per machine and fails on a mean regression over 10 %
    against the last saved run of the same machine (first run: nothing to compare)."""
    install_project(session)
    machine = machine_name()
    storage = f"file://.benchmarks/{machine}"
    args = ["--benchmark-autosave", f"--benchmark-storage={storage}", "--benchmark-columns=mean,stddev,rounds"]
    if list(Path(".benchmarks", machine).glob("*/*.json")):
        args += ["--benchmark-compare", "--benchmark-compare-fail=mean:10%"]
    session.run("python", "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", *args, *session.posargs)


@nox.session(default=False)
def scenarios(session: nox.Session) -> None:
    """Every scenario at full scale: runs/<name>.h5 with a report (runs/<name>_report/), a verdict
    per expectation, runs/summary.json.

    Long: the seed scenarios are minutes on a GPU or an AVX-512 CPU, hours on a 2-core AVX2-only
    CPU. Pass pytest args after --, e.g. `nox -s scenarios -- -k flannel_7 --device cuda`; on an
    AVX2-only CPU, `-- --set train.matmul=fp32` (float32 GEMMs, opt-in, not bit-identical) is
    ~1.5x faster (docs/performance.md).
    """
    install_project(session)
    session.run("python", "-m", "pytest", "scenarios", "--scale", "full", "--runs-dir", "runs", "--report", "-p",
                "no:cacheprovider", "-rA", *session.posargs)
