"""Developer sessions. `nox -s tests` is what CI runs (.ci/run) and the README's test command."""

from __future__ import annotations

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
