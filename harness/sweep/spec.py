"""A sweep once loaded: its runs, each resolved and validated, and its cross-run expectations.

These types are shared by the sweep file's loader (harness.sweep.file), which makes them,
and the cross-run expectations (harness.sweep.expect), which the loader calls to validate
the `[[expect_all]]` tables against the resolved runs; keeping them here lets both import
them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.scenario.schema import Scenario


class SweepError(ValueError):
    """A sweep file is malformed; the message names the file and the key."""


@dataclass
class RunSpec:
    """One run of a sweep: its overrides, resolved and validated."""

    id: str  # e.g. "seed=3-tied=false-1a2b3c4d"
    axes: dict[str, Any]  # dotted key -> this run's value, axes only
    overrides: list[str]  # "section.key=value" (TOML values), `set` then axes
    config_hash: str  # sha256 of the resolved config (hex)
    scenario: Scenario


@dataclass
class ExpectAll:
    """One `[[expect_all]]` table, checked by harness.sweep.expect."""

    check: str
    args: dict[str, Any]  # the check's own arguments
    id: str
    min_fraction: float = 1.0  # per-run checks: hold in at least this fraction of the selected runs
    where: dict[str, Any] = field(default_factory=dict)  # dotted key -> value: only runs whose config matches
    exploratory: str = ""  # non-empty (the reason): an open question, reported either way, never fails the sweep


@dataclass
class Sweep:
    name: str
    path: Path
    scenario_path: Path
    scale: str
    mode: str
    threads: int  # torch intra-op threads per run
    run_expectations: bool  # check each run's own scenario [[expect]] tables
    axes: dict[str, list[Any]]
    fixed: dict[str, Any]
    runs: list[RunSpec]
    expect_all: list[ExpectAll]


# ------------------------------------------------------------------ helpers
def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"init": {"seed": 1}} and {"init.seed": 1} both become {"init.seed": 1}."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def value_at(scenario: Scenario, dotted: str) -> Any:
    """A scenario knob by its dotted key, e.g. "model.tied"."""
    section, _, key = dotted.partition(".")
    return scenario.resolved()[section][key]
