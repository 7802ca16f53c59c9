"""Developer sessions. `nox -s tests` is what CI runs (.ci/run) and the README's test command."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", "constraints.txt")


def install_project(session: nox.Session, extras: str = "test") -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests of core and harness (pass pytest args after --)."""
    install_project(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(default=False)
def benchmarks(session: nox.Session) -> None:
    """Benchmarks: saves each run per machine and fails on a mean regression over 10 %
    against the last saved run of the same machine (first run: nothing to compare)."""
    import platform

    install_project(session)
    machine = f"{platform.system()}-{platform.machine()}-{os.cpu_count()}cpu"
    storage = f"file://.benchmarks/{machine}"
    args = ["--benchmark-autosave", f"--benchmark-storage={storage}", "--benchmark-columns=mean,stddev,rounds"]
    if list(Path(".benchmarks", machine).glob("*/*.json")):
        args += ["--benchmark-compare", "--benchmark-compare-fail=mean:10%"]
    session.run("python", "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", *args, *session.posargs)


@nox.session(default=False)
def scenarios(session: nox.Session) -> None:
    """Every scenario at full scale: runs/<name>.h5 with a report (runs/<name>_report/), a verdict
    per expectation, runs/summary.json.

    Long: the seed scenarios are minutes on a GPU and hours on a 2-core CPU. Pass pytest
    args after --, e.g. `nox -s scenarios -- -k flannel_7 --device cuda`; on a CPU,
    `-- --set train.matmul=fp32` (float32 GEMMs, opt-in, not bit-identical) is ~7x faster.
    """
    install_project(session)
    session.run("python", "-m", "pytest", "scenarios", "--scale", "full", "--runs-dir", "runs", "--report", "-p",
                "no:cacheprovider", "-rA", *session.posargs)
