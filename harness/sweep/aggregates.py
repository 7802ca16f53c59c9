"""The registry of cross-run aggregates for `[[expect_all]]`: a finished run as an aggregate
sees it (`RunFile`) and `@aggregate` to register one. Apart from harness.sweep.expect (which
parses and checks the tables, and registers `mean_radius_dips_before_growing`) so that the
modules registering more (harness.sweep.dynamics) need not import it, and it can import them:
importing harness.sweep.expect then registers every aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.checks.registry import REGISTRY
from harness.scenario.schema import Scenario


@dataclass
class RunFile:
    """A finished run as an aggregate sees it."""

    id: str
    path: Path
    scenario: Scenario
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # cached per-run expect_all verdicts


AggregateFn = Callable[..., tuple[bool, dict[str, bool], str]]  # (runs, **args) -> (passed, per-run ok, text)
AGGREGATES: dict[str, AggregateFn] = {}


def aggregate(name: str) -> Callable[[AggregateFn], AggregateFn]:
    """Register a cross-run aggregate `(runs: list[RunFile], **args) -> (passed, {run id: ok}, message)`."""

    def register(fn: AggregateFn) -> AggregateFn:
        if name in AGGREGATES or name in REGISTRY:
            raise ValueError(f"Check {name!r} is already registered.")
        AGGREGATES[name] = fn
        return fn

    return register
