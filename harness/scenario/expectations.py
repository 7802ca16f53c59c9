"""A scenario's `[[expect]]` tables, validated into Expectations against the check registry.

Each table names a registered check (harness.checks) and sets its keyword arguments, plus
`id`, `xfail`, `exploratory` and `scales`. An unknown check or argument, a value of the
wrong type, a token id outside the vocabulary or a tensor the scenario does not record is
an error naming the file and the expectation. The registry knows nothing of scenarios;
this module reads both.
"""

from __future__ import annotations

import inspect
import typing

from core.format import RECORDABLE, SCALARS, stored_tensors
# Importing harness.checks.registry runs harness/checks/__init__.py, which registers the built-in checks.
from harness.checks.registry import REGISTRY, TOKEN_SET_NAMES, TokenSet, check_parameters, get_check
from harness.dynamics import checks as dynamics_checks  # noqa: F401  (registers the dynamics checks)
from harness.scenario.schema import Expectation, ScenarioError


def parse_expectations(where: str, tables: list, scenario) -> list:
    """Validate `[[expect]]` tables into Expectations (checks, arguments, recorded tensors)."""
    stored = set(stored_tensors(list(scenario.record.tensors), scenario.model.tied)) | set(SCALARS)
    if scenario.model.tied:
        stored |= {n[:-1] + "E" for n in stored if n.endswith("W")}
    out: list[Expectation] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        here = f"{where}: expect[{index}]"
        if not isinstance(table, dict):
            raise ScenarioError(f"{here}: must be a table with a 'check' key")
        table = dict(table)
        name = table.pop("check", None)
        if name is None:
            raise ScenarioError(f"{here}: missing 'check'. Available: {', '.join(sorted(REGISTRY))}")
        try:
            fn = get_check(name)
        except KeyError as exc:
            raise ScenarioError(f"{here}: {exc.args[0]}") from None
        test_id = table.pop("id", None)
        xfail = table.pop("xfail", "")
        exploratory = table.pop("exploratory", "")
        scales = table.pop("scales", None)
        for key, value in (("xfail", xfail), ("exploratory", exploratory)):
            if not isinstance(value, str):
                raise ScenarioError(f"{here}: {key} must be a string giving the reason, got {value!r}")
        if xfail and exploratory:
            raise ScenarioError(f"{here}: xfail and exploratory exclude each other: an exploratory expectation may "
                                "go either way, an xfail must fail")
        if scales is not None and not (isinstance(scales, list) and all(s in scenario.scales for s in scales)):
            raise ScenarioError(f"{here}: scales = {scales!r}: allowed values {scenario.scales}")
        params = check_parameters(fn)
        for key, value in table.items():
            if key not in params:
                allowed = ", ".join(list(params) + ["id", "xfail", "exploratory", "scales"])
                raise ScenarioError(f"{here} ({name}): unknown argument {key!r}. Allowed: {allowed}")
            _check_argument(here, name, key, value, params[key], scenario, stored)
        for key, p in params.items():
            if p.default is inspect.Parameter.empty and key not in table:
                raise ScenarioError(f"{here} ({name}): missing required argument {key!r}")
        args = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
        args.update(table)
        for key, value in args.items():
            if key in ("tensor", "a", "b") and value not in stored:
                raise ScenarioError(
                    f"{here} ({name}): {key} = {value!r} is not recorded; add it to record.tensors "
                    f"(recorded: {', '.join(sorted(stored))})"
                )
        test_id = test_id or _default_id(name, args)
        seen[test_id] = seen.get(test_id, 0) + 1
        if seen[test_id] > 1:
            test_id = f"{test_id}-{seen[test_id]}"
        out.append(Expectation(check=name, args=args, id=test_id, xfail=xfail, exploratory=exploratory,
                               scales=scales))
    return out


def _check_argument(here, name, key, value, param, scenario, stored) -> None:
    hint = typing.get_type_hints(REGISTRY[name]).get(key)
    ok = True
    if hint is TokenSet:
        ok = value in TOKEN_SET_NAMES or (
            isinstance(value, list) and all(isinstance(v, int) and 0 <= v < scenario.model.vocab_size for v in value)
        )
        expected = f"one of {', '.join(TOKEN_SET_NAMES)} or a list of token ids below {scenario.model.vocab_size}"
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif hint is str:
        ok = isinstance(value, str)
        expected = "a string"
    else:
        expected = str(hint)
    if key in ("tensor", "a", "b") and ok and value not in RECORDABLE and value not in ("E", "W"):
        ok, expected = False, f"a recorded quantity: {', '.join(RECORDABLE)}"
    if not ok:
        raise ScenarioError(f"{here} ({name}): {key} = {value!r}: expected {expected}")


def _default_id(name: str, args: dict) -> str:
    parts = []
    tokens = args.get("tokens")
    if isinstance(tokens, str):
        parts.append(tokens)
    elif isinstance(tokens, list):
        parts.append(f"ids{len(tokens)}")
    for key in ("tensor", "a", "b"):
        if key in args:
            parts.append(str(args[key]))
    return "-".join(parts + [name])
