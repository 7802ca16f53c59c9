"""Cross-run expectations: `[[expect_all]]` tables of a sweep file.

Two kinds, by the name in `check`:

- any registered per-run check (harness.checks) with its arguments, plus `min_fraction`
  (default 1.0): the check must pass in at least that fraction of the selected runs.
  `where = {"model.tied" = false}` selects runs by their resolved config. A check whose own
  argument is called `min_fraction` (nonzero_displacement) takes it from `args = {...}`;
- an aggregate over runs (registered with `@aggregate`, harness.sweep.aggregates), computed with
  harness.checks.measures across all selected runs, e.g. `mean_radius_dips_before_growing`
  (the dynamics aggregates, e.g. `inhale_fraction`: harness.sweep.dynamics). An aggregate that
  takes a `min_fraction` argument gets the table's; for the others it is an error.

`exploratory = true` (or a string giving the reason) marks an open question: its verdict is
reported (YES / NO) but never fails the sweep.

Every verdict says how many runs passed and names the run ids that broke it.
Per-run verdicts are computed by the workers right after each run (harness.sweep.execute) and
cached in the index with the expectation's definition; a changed definition is checked again.
"""

from __future__ import annotations

import inspect
import json
import logging
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.trajectory import Trajectory
from harness.checks.measures import cloud_radius, radius_dips_before_growing, token_ids
from harness.checks.registry import REGISTRY, TOKEN_SET_NAMES, CheckContext, TokenSet, run_check
from harness.scenario.expectations import parse_expectations
from harness.scenario.schema import Expectation, Scenario, ScenarioError
from harness.sweep import dynamics as dynamics_aggregates  # noqa: F401  (registers the dynamics aggregates)
from harness.sweep.aggregates import AGGREGATES, RunFile, aggregate  # RunFile: re-exported for the report
from harness.sweep.spec import ExpectAll, RunSpec, SweepError, flatten, value_at

log = logging.getLogger(__name__)

SWEEP_KEYS = ("check", "id", "min_fraction", "where", "args", "exploratory")
SHOW = 10  # how many broken run ids a message lists


@dataclass
class CrossVerdict:
    id: str
    check: str
    passed: bool
    n_passed: int
    n_runs: int
    broken: list[str]  # run ids that broke it
    message: str
    exploratory: str = ""  # non-empty: reported, never fails the sweep


# ------------------------------------------------------------------ parsing
def definition_key(e: ExpectAll) -> str:
    """What a cached per-run verdict must match to be reused."""
    return json.dumps({"check": e.check, "args": e.args}, sort_keys=True)


def per_run_expectation(e: ExpectAll) -> Expectation:
    return Expectation(check=e.check, args=dict(e.args), id=e.id)


def selected(e: ExpectAll, runs: list[RunSpec]) -> list[RunSpec]:
    return [r for r in runs if all(value_at(r.scenario, k) == v for k, v in e.where.items())]


def parse_expect_all(where: Path, tables: list, runs: list[RunSpec]) -> list[ExpectAll]:
    out: list[ExpectAll] = []
    for index, table in enumerate(tables):
        here = f"{where}: expect_all[{index}]"
        if not isinstance(table, dict) or "check" not in table:
            raise SweepError(f"{here}: must be a table with a 'check' key. Per-run checks: {', '.join(sorted(REGISTRY))}; "
                             f"aggregates: {', '.join(sorted(AGGREGATES))}")
        table = dict(table)
        name = table.pop("check")
        explicit_fraction = "min_fraction" in table
        min_fraction = table.pop("min_fraction", 1.0)
        exploratory = table.pop("exploratory", "")
        if exploratory is True:
            exploratory = "exploratory"
        if exploratory is False:
            exploratory = ""
        if not isinstance(exploratory, str):
            raise SweepError(f"{here}: exploratory = {exploratory!r}: expected true, false or a string giving "
                             "the reason")
        if isinstance(min_fraction, bool) or not isinstance(min_fraction, (int, float)) or not 0 <= min_fraction <= 1:
            raise SweepError(f"{here}: min_fraction = {min_fraction!r}: expected a number in [0, 1]")
        filt = table.pop("where", {})
        if not isinstance(filt, dict):
            raise SweepError(f"{here}: where must be a table of knob = value, got {filt!r}")
        filt = flatten(filt)
        for key in filt:
            try:
                value_at(runs[0].scenario, key)
            except KeyError:
                raise SweepError(f"{here}: where.{key}: not a scenario knob (section.key)") from None
        args = table.pop("args", {})
        if not isinstance(args, dict):
            raise SweepError(f"{here}: args must be a table of the check's arguments, got {args!r}")
        args = {**table, **args}
        test_id = args.pop("id", None)
        e = ExpectAll(check=name, args=args, id="", min_fraction=float(min_fraction), where=filt,
                      exploratory=exploratory)
        picked = selected(e, runs)
        if not picked:
            raise SweepError(f"{here}: where = {filt!r} selects none of the {len(runs)} runs")
        if name in AGGREGATES:
            e.args = _aggregate_args(here, name, args)
            if "min_fraction" in e.args:
                e.args["min_fraction"] = e.min_fraction
            elif explicit_fraction:
                raise SweepError(f"{here} ({name}): min_fraction applies to per-run checks and to aggregates that "
                                 f"take it; {name} does not")
        elif name in REGISTRY:
            for run in picked:  # arguments and recorded tensors, against each run's scenario
                try:
                    (parsed,) = parse_expectations(str(where), [{"check": name, **args}], run.scenario)
                except ScenarioError as exc:
                    text = str(exc).replace(f"{where}: expect[0]", here, 1)
                    raise SweepError(f"{text} (run {run.id})") from None
            e.args = parsed.args
        else:
            raise SweepError(f"{here}: unknown check {name!r}. Per-run checks: {', '.join(sorted(REGISTRY))}; "
                             f"aggregates: {', '.join(sorted(AGGREGATES))}")
        e.id = test_id or _default_id(name, e)
        if any(o.id == e.id for o in out):
            e.id = f"{e.id}-{index}"
        out.append(e)
    return out


def _default_id(name: str, e: ExpectAll) -> str:
    parts = [str(e.args[k]) for k in ("tokens", "tensor") if isinstance(e.args.get(k), str)]
    parts += [str(e.args["center"])] if e.args.get("center", "centroid") != "centroid" else []
    parts += [f"{k.rsplit('.', 1)[-1]}={v}".lower() for k, v in e.where.items()]
    return "-".join(parts + [name])


def _aggregate_args(here: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    fn = AGGREGATES[name]
    params = dict(list(inspect.signature(fn).parameters.items())[1:])
    hints = typing.get_type_hints(fn)
    for key, value in args.items():
        if key not in params or key == "min_fraction":  # min_fraction: the table's own key, not an argument
            raise SweepError(f"{here} ({name}): unknown argument {key!r}. Allowed: {', '.join([*params, *SWEEP_KEYS])}")
        hint = hints.get(key)
        if hint is TokenSet:
            ok = value in TOKEN_SET_NAMES or isinstance(value, list)
        elif isinstance(value, bool) and hint in (int, float):
            ok = False
        elif hint is float:  # an integer is a number too
            ok = isinstance(value, (int, float))
        else:
            ok = not isinstance(hint, type) or isinstance(value, hint)
        if not ok:
            raise SweepError(f"{here} ({name}): {key} = {value!r}: expected {getattr(hint, '__name__', hint)}")
    return {**{k: p.default for k, p in params.items()}, **args}


# ------------------------------------------------------------------ evaluating
def evaluate_run(path: Path, scenario: Scenario, expectations: list[Expectation]) -> dict[str, dict[str, Any]]:
    """Per-run verdicts {expectation id: {check, passed, message}} for one trajectory file."""
    out: dict[str, dict[str, Any]] = {}
    with Trajectory(path) as traj:
        ctx = CheckContext(traj, scenario)  # no rerun: a sweep's determinism is checked across runs
        for e in expectations:
            try:
                v = run_check(e.check, ctx, e.args)
                out[e.id] = {"check": e.check, "passed": bool(v.passed), "message": v.message,
                             "measured": None if v.measured is None else float(v.measured)}  # JSON: no numpy scalars
            except Exception as exc:  # a check that cannot run on this file fails, with the reason
                out[e.id] = {"check": e.check, "passed": False, "message": f"{type(exc).__name__}: {exc}"}
    return out


def check_all(expect_all: list[ExpectAll], runs: list[RunFile], specs: list[RunSpec]) -> list[CrossVerdict]:
    """Every cross-run expectation over the finished runs (a run that did not finish breaks each)."""
    done = {r.id: r for r in runs}
    out = []
    for e in expect_all:
        picked = [s.id for s in selected(e, specs)]
        missing = [i for i in picked if i not in done]
        present = [done[i] for i in picked if i in done]
        if e.check in AGGREGATES:
            passed, per_run, text = AGGREGATES[e.check](present, **e.args) if present else (False, {}, "no finished run")
            ok = {**per_run, **{i: False for i in missing}}
            passed = passed and not missing
        else:
            ok = {i: False for i in missing}
            texts, measured = {}, []
            for run in present:
                v = _cached_or_checked(run, e)
                ok[run.id], texts[run.id] = v["passed"], v["message"]
                measured.append(v.get("measured"))
            n_ok = sum(ok.values())
            need = e.min_fraction * len(picked)
            passed = n_ok >= need - 1e-9
            first_bad = next((i for i in picked if not ok.get(i, False)), None)
            text = f"{e.check} held in {n_ok} of {len(picked)} runs (need {e.min_fraction:.0%})"
            text += measured_range(measured)
            if first_bad is not None:
                text += f"; e.g. {first_bad}: {texts.get(first_bad, 'did not finish')}"
        broken = [i for i in picked if not ok.get(i, False)]
        n_passed = len(picked) - len(broken)
        if broken:
            shown = ", ".join(broken[:SHOW]) + (f", ... {len(broken) - SHOW} more" if len(broken) > SHOW else "")
            text += f"; broken by: {shown}"
        out.append(CrossVerdict(e.id, e.check, bool(passed), n_passed, len(picked), broken, text, e.exploratory))
    return out


def measured_range(values: list[float | None]) -> str:
    """'; measured 152 to 451' over the runs whose check measured a value ('' when none did)."""
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return ""
    low, high = min(numbers), max(numbers)
    text = f"; measured {low:.4g}" + (f" to {high:.4g}" if high > low else "")
    missing = len(values) - len(numbers)
    return text + (f" ({missing} run{'s' if missing > 1 else ''} without a value)" if missing else "")


def _cached_or_checked(run: RunFile, e: ExpectAll) -> dict[str, Any]:
    cached = run.verdicts.get(e.id)
    # "measured" missing: cached before verdicts kept their measured value; checked again for the range
    if cached is not None and cached.get("key") == definition_key(e) and "measured" in cached:
        return cached
    log.debug("%s: checking %s on %s", e.id, e.check, run.path)
    verdict = evaluate_run(run.path, run.scenario, [per_run_expectation(e)])[e.id]
    run.verdicts[e.id] = {**verdict, "key": definition_key(e)}  # the index entry's dict: cached from now on
    return verdict


# ------------------------------------------------------------------ aggregates
def radius_series(path: Path, tensor: str = "W", tokens: TokenSet = "dead") -> tuple[np.ndarray, np.ndarray]:
    """(steps (T,), mean distance of the `tokens` rows of `tensor` from their centroid (T,)) of one run.
    A run that did not record `tensor` is a KeyError naming the file and what it recorded (a tied
    run records both names)."""
    with Trajectory(path) as traj:
        return traj.steps.copy(), cloud_radius(traj, tensor, token_ids(traj, tokens))


@aggregate("mean_radius_dips_before_growing")
def mean_radius_dips(runs: list[RunFile], tensor: str = "W", tokens: TokenSet = "dead"):
    """The across-run mean radius of the `tokens` cloud of `tensor`, on the steps every run
    recorded, falls below its start before it grows past it (harness.checks.measures)."""
    series = {r.id: radius_series(r.path, tensor, tokens) for r in runs}
    common = sorted(set.intersection(*(set(s.tolist()) for s, _ in series.values())))
    if len(common) < 2:
        return False, {r.id: False for r in runs}, "the runs share fewer than 2 recorded steps"
    stacked = np.stack([rad[np.searchsorted(steps, common)] for steps, rad in series.values()])  # (runs, T)
    mean = stacked.mean(axis=0)
    dip = radius_dips_before_growing(mean)
    own = {rid: radius_dips_before_growing(row)["dips"] for rid, row in zip(series, stacked)}
    grow = (f"first above it at step {common[dip['first_growth_frame']]}" if dip["first_growth_frame"] is not None
            else "never above it")
    text = (f"mean {tokens} radius of {tensor} over {len(runs)} runs: start {mean[0]:.5g}, minimum {mean[dip['min_frame']]:.5g} "
            f"at step {common[dip['min_frame']]} ({dip['min_relative']:+.3%}), {grow}; "
            f"{sum(own.values())} of {len(runs)} runs dip on their own; read the {len(common)} steps "
            f"{common[0]}..{common[-1]} every run recorded")
    if not dip["dips"]:
        text = f"expected the mean radius to dip below its start before it grows; {text}"
    return dip["dips"], own, text
