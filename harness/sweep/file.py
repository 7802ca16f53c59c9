"""Sweep files: one scenario, axes over its knobs, every run resolved and validated up front.

    name = "seeds"                              # optional; default: the file's stem
    scenario = "../scenarios/flannel_2.toml"    # relative to this file
    scale = "smoke"                             # optional; default "full"
    mode = "grid"                               # "grid" (cartesian product, default) or "zip"
    set = {"train.steps" = 50}                  # optional: fixed overrides for every run
    threads = 1                                 # optional: torch threads per run (default 1)
    run_expectations = true                     # optional: check each run's own [[expect]] tables

    [sizes.smoke]                               # optional: smaller versions of the study, by name
    set = {"train.steps" = 3}                   # merged over `set`
    axes = {"init.seed" = [0]}                  # replaces these axes' value lists

    [axes]                                      # dotted scenario keys -> lists of values
    "init.seed" = [0, 1, 2, 3]
    "model.tied" = [true, false]

    [[expect_all]]                              # cross-run expectations (harness/sweep/expect.py)
    check = "zero_displacement"
    tensor = "E"
    where = {"model.tied" = false}
    min_fraction = 1.0

Each run's overrides go through `load_scenario`'s own validation before anything runs; an
error names the sweep file and the key. A run's id is its axis values plus a short hash of
its resolved config (what determines the trajectory), e.g. `seed=3-tied=false-1a2b3c4d`:
the same config always gets the same id, so a re-invoked sweep finds its finished runs.

`threads` is part of the experiment: on a CPU, torch's intra-op thread count changes how
matmuls split their sums, and so the bits of a trajectory. Every run of a sweep uses the
same count wherever it runs (pool or Ray, any number of workers), so a run id names one file.

`load_sweep(path, size="smoke")` (`harness sweep FILE --size smoke`) applies `[sizes.smoke]`:
the same study, fewer or shorter runs (CI runs every study this way). `scale` stays the
scenario's scale; a size changes only what its table names.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

from harness.scenario.load import load_scenario, read_toml
from harness.scenario.schema import FULL_SCALE, Scenario, ScenarioError
from harness.sweep.expect import parse_expect_all
from harness.sweep.spec import RunSpec, Sweep, SweepError, flatten

log = logging.getLogger(__name__)

MODES = ("grid", "zip")
TOP_LEVEL = {"name": str, "scenario": str, "scale": str, "mode": str, "threads": int, "run_expectations": bool,
             "axes": dict, "set": dict, "sizes": dict,
             "expect_all": list}
SIZE_KEYS = ("set", "axes")
HASH_CHARS = 8
# Keys of the resolved scenario that do not change a trajectory's bits: left out of the hash.
NOT_HASHED = ("file", "summary", "expect")


# ------------------------------------------------------------------ helpers
def toml_value(value: Any) -> str:
    """A value as TOML source, for a `section.key=value` override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")


def config_hash(scenario: Scenario) -> str:
    resolved = {k: v for k, v in scenario.resolved().items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()


def _label(value: Any) -> str:
    text = toml_value(value).strip('"')
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "_"


def run_id(axes: dict[str, Any], digest: str) -> str:
    """Readable axis values (last key part, the full key when two axes share it) + hash."""
    last = [k.rsplit(".", 1)[-1] for k in axes]
    parts = [f"{k if last.count(short) > 1 else short}={_label(v)}" for k, short, v in zip(axes, last, axes.values())]
    return "-".join(parts + [digest[:HASH_CHARS]])


# ------------------------------------------------------------------ loading
def _combinations(where: Path, mode: str, axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(axes)
    if not keys:
        return [{}]
    if mode == "zip":
        lengths = {k: len(v) for k, v in axes.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise SweepError(f"{where}: mode = \"zip\" needs axes of one length; {listed} values")
        return [dict(zip(keys, values)) for values in zip(*axes.values())]
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


def _resolve(where: Path, scenario_path: Path, scale: str, fixed: dict[str, Any],
             axes: dict[str, Any], origin: dict[str, str]) -> RunSpec:
    """Load the scenario with this run's overrides; a ScenarioError is re-raised naming the sweep key."""
    values = {**fixed, **axes}
    overrides = []
    for key, value in values.items():
        try:
            overrides.append(f"{key}={toml_value(value)}")
        except TypeError:
            raise SweepError(f"{where}: {origin[key]}.{key} = {value!r}: not a scenario value "
                             "(use numbers, strings, booleans or lists)") from None
    try:
        scenario = load_scenario(scenario_path, scale=scale, overrides=overrides)
    except ScenarioError as exc:
        text = str(exc)
        blamed = next((k for k in values if text.startswith(f"--set {k}=")), None)
        if blamed is None:  # the scenario file itself, or a value check after loading
            hit = re.search(r"\b([a-z_]+\.[a-z_]+) = ", text)
            blamed = hit.group(1) if hit and hit.group(1) in values else None
        if blamed is None:
            raise SweepError(f"{where}: scenario = {str(scenario_path)!r}: {text}") from None
        reason = re.sub(r"^--set [^:]*: ", "", text)
        raise SweepError(f"{where}: {origin[blamed]}.{blamed} = {values[blamed]!r}: {reason}") from None
    digest = config_hash(scenario)
    return RunSpec(run_id(axes, digest), dict(axes), overrides, digest, scenario)


def _sized(path: Path, raw: dict[str, Any], size: str) -> dict[str, Any]:
    """`raw` with the `[sizes.<size>]` table applied: `set` merged over, `axes` lists replaced."""
    sizes = raw.get("sizes", {})
    if size not in sizes:
        raise SweepError(f"{path}: no [sizes.{size}] table. Sizes: {', '.join(sizes) or 'none'}")
    table = sizes[size]
    if not isinstance(table, dict) or set(table) - set(SIZE_KEYS):
        raise SweepError(f"{path}: sizes.{size} must be a table of {' and '.join(SIZE_KEYS)}, got {table!r}")
    axes = flatten(raw.get("axes", {}))
    for key, value in flatten(table.get("axes", {})).items():
        if key not in axes:
            raise SweepError(f"{path}: sizes.{size}.axes.{key}: not an axis of this sweep ({', '.join(axes)})")
        axes[key] = value
    return {**raw, "set": {**flatten(raw.get("set", {})), **flatten(table.get("set", {}))}, "axes": axes}


def load_sweep(path: str | Path, size: str | None = None) -> Sweep:
    """Read, expand and validate a sweep file (at `size`, its `[sizes.<size>]` table, if given):
    every run's scenario is loaded before anything runs."""
    path = Path(path)
    raw = read_toml(path, "Sweep", SweepError)
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise SweepError(f"{path}: unknown key {unknown[0]!r}. Allowed: {', '.join(TOP_LEVEL)}")
    for key, kind in TOP_LEVEL.items():
        if key in raw and not isinstance(raw[key], kind):
            raise SweepError(f"{path}: {key} must be a {kind.__name__}, got {raw[key]!r}")
    if size is not None:
        raw = _sized(path, raw, size)
    if "scenario" not in raw:
        raise SweepError(f"{path}: missing required key 'scenario' (the scenario file, relative to the sweep file)")
    scenario_path = (path.parent / raw["scenario"]).resolve()
    if not scenario_path.is_file():
        raise SweepError(f"{path}: scenario = {raw['scenario']!r}: no such file {scenario_path}")
    name = raw.get("name", path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SweepError(f"{path}: name = {name!r}: use letters, digits, '_', '.', '-' (it names the output folder)")
    mode = raw.get("mode", "grid")
    if mode not in MODES:
        raise SweepError(f"{path}: mode = {mode!r}: allowed: {', '.join(MODES)}")
    scale = raw.get("scale", FULL_SCALE)
    threads = raw.get("threads", 1)
    if isinstance(threads, bool) or threads < 1:
        raise SweepError(f"{path}: threads = {threads}: must be >= 1")
    fixed = flatten(raw.get("set", {}))
    axes = flatten(raw.get("axes", {}))
    if "axes" in raw and not axes:  # before: one full-scale run of the bare scenario, silently
        raise SweepError(f"{path}: axes has no knob: give it at least one with a list of values, e.g. "
                         f"\"init.seed\" = [0, 1] (or leave [axes] out for a single run)")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: axes.{key} must be a non-empty list of values, got {values!r}")
    both = sorted(set(fixed) & set(axes))
    if both:
        raise SweepError(f"{path}: {both[0]} is both in set and in axes; name it once")
    origin = {**{k: "set" for k in fixed}, **{k: "axes" for k in axes}}
    for key, table in origin.items():
        if key.count(".") != 1:
            raise SweepError(f"{path}: {table}.{key}: a knob is named section.key, e.g. \"init.seed\"")

    runs = [_resolve(path, scenario_path, scale, fixed, combo, origin) for combo in _combinations(path, mode, axes)]
    seen: dict[str, RunSpec] = {}
    for run in runs:
        if run.id in seen:
            raise SweepError(f"{path}: two runs resolve to the same config ({seen[run.id].axes} and {run.axes}); "
                             "every axis value must change the run")
        seen[run.id] = run
    sweep = Sweep(name, path, scenario_path, scale, mode, threads, raw.get("run_expectations", True), axes, fixed,
                  runs, [])
    sweep.expect_all = parse_expect_all(path, raw.get("expect_all", []), runs)
    log.debug("%s: %d runs (%s) of %s", path, len(runs), mode, scenario_path)
    return sweep
