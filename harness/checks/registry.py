"""The check registry: named invariants that read a recorded trajectory file.

A check is a function `(ctx, **args) -> Verdict`, registered with `@check("name")`. Its
keyword arguments (with annotations and defaults) are what a scenario's `[[expect]]`
table may set; anything else is an error naming the file, the expectation and the
allowed arguments (harness.scenario.expectations validates them against this registry).
Checks read the file, never the live model, so a passing check also proves the file is
right; they stream frames, so a 7.7 GB file is fine.

Token sets, the type of a `tokens` argument: "dead" (never in the training corpus), "live",
"all", "never_input" (no batch of the run feeds the token in: the dead ones and live ones
the run never draws), or a list of ids.

The registry knows nothing of scenarios: a CheckContext carries the scenario as an opaque
value that only the checks that need it read.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.trajectory import Trajectory

TokenSet = typing.Union[str, list[int]]
TOKEN_SET_NAMES = ("dead", "live", "all", "never_input")


@dataclass
class Verdict:
    passed: bool
    message: str  # observed vs expected, in words and numbers
    worst: dict[str, Any] = field(default_factory=dict)  # offending token ids / steps, for reports
    measured: float | None = None  # the number held against the threshold (a sweep states its range over runs)


@dataclass
class CheckContext:
    traj: Trajectory
    scenario: Any  # harness.scenario.schema.Scenario
    rerun: Callable[[int], Path] | None = None  # run the first n steps again into a new file


CheckFn = Callable[..., Verdict]
REGISTRY: dict[str, CheckFn] = {}


def check(name: str) -> Callable[[CheckFn], CheckFn]:
    """Register a check under `name`; a second check of the same name is an error."""

    def register(fn: CheckFn) -> CheckFn:
        if name in REGISTRY:
            raise ValueError(f"Check {name!r} is already registered (by {REGISTRY[name].__module__}).")
        REGISTRY[name] = fn
        return fn

    return register


def get_check(name: str) -> CheckFn:
    if name not in REGISTRY:
        raise KeyError(f"Unknown check {name!r}. Available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def check_parameters(fn: CheckFn) -> dict[str, inspect.Parameter]:
    return dict(list(inspect.signature(fn).parameters.items())[1:])  # all but ctx


def run_check(name: str, ctx: CheckContext, args: dict[str, Any]) -> Verdict:
    return get_check(name)(ctx, **args)

