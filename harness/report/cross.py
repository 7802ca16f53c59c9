"""A sweep's cross-run report: each registered series (harness.report.series) across runs.

    write_cross_report("runs/flannel_2_seeds")   # -> runs/flannel_2_seeds/cross_report/

Runs are grouped by their values of every axis that is not a seed (an axis whose key ends
in "seed", e.g. init.seed): each group is one line per figure, its mean over the group's
runs at each recorded step, with a band from the minimum to the maximum over those runs
(the standard deviation is in the JSON too). Runs that are not finished (harness.sweep.index)
are listed, not read. Output: one PNG per quantity, cross_report.json with the numbers
(per quantity, per group: steps, mean, min, max, std, n runs, run ids) and report.md.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.report.cross_figures import quantity_figure
from harness.report.series import SERIES, SeriesUnavailable
from harness.sweep.index import INDEX_NAME, is_finished, read_index

log = logging.getLogger(__name__)

JSON_NAME = "cross_report.json"
SPREAD = "min-max over the runs of each group (seeds); std also given"


@dataclass
class RunRef:
    id: str
    path: Path
    axes: dict[str, Any]


@dataclass
class Group:
    axes: dict[str, Any]  # the non-seed axes' values every run of the group shares
    runs: list[RunRef] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_toml(v)}" for k, v in self.axes.items()) or "all runs"


def _toml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def is_seed_axis(key: str) -> bool:
    return key.rsplit(".", 1)[-1].endswith("seed")


def default_cross_dir(folder: Path) -> Path:
    return folder / "cross_report"


def is_sweep_folder(path: Path) -> bool:
    return path.is_dir() and (path / INDEX_NAME).is_file()


def sweep_runs(folder: Path) -> tuple[dict[str, Any], list[RunRef], dict[str, str]]:
    """(the index, its finished runs, {unfinished run id: status})."""
    if not is_sweep_folder(folder):
        raise FileNotFoundError(f"{folder}: not a sweep folder (no {INDEX_NAME}); `report` takes trajectory files "
                                f"(.h5) or the folders `python -m harness sweep` writes (OUT/<sweep>/)")
    index = read_index(folder)
    finished, unfinished = [], {}
    for rid, entry in index.get("runs", {}).items():
        if is_finished(folder, entry):
            finished.append(RunRef(rid, folder / entry["file"], dict(entry.get("axes", {}))))
        else:
            unfinished[rid] = entry.get("status", "?")
    if not finished:
        raise ValueError(f"{folder / INDEX_NAME}: no finished run to report ({len(unfinished)} unfinished)")
    return index, finished, unfinished


def group_runs(runs: list[RunRef]) -> list[Group]:
    """Runs grouped by their non-seed axis values, groups in sorted order of those values."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        axes = {k: v for k, v in run.axes.items() if not is_seed_axis(k)}
        key = tuple((k, json.dumps(v, sort_keys=True)) for k, v in sorted(axes.items()))
        groups.setdefault(key, Group(dict(sorted(axes.items())))).runs.append(run)
    return [groups[k] for k in sorted(groups, key=lambda key: [_sort_key(json.loads(v)) for _, v in key])]


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, json.dumps(value, sort_keys=True))


def combine(series: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Runs' (steps, values) on the steps every one of them has -> steps, mean, min, max, std (over runs)."""
    common = np.array(sorted(set.intersection(*(set(s.tolist()) for s, _ in series))), dtype=np.int64)
    stacked = np.stack([v[np.searchsorted(s, common)] for s, v in series]) if len(common) else np.empty((len(series), 0))
    with warnings.catch_warnings():  # a step where every run is NaN (no token moved) stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"steps": common, "mean": np.nanmean(stacked, 0), "min": np.nanmin(stacked, 0),
                "max": np.nanmax(stacked, 0), "std": np.nanstd(stacked, 0)}


def _json_list(values: np.ndarray) -> list:
    return [None if not math.isfinite(float(v)) else (int(v) if np.issubdtype(values.dtype, np.integer) else float(v))
            for v in values]


def cross_report(folder: Path, names: list[str] | None = None) -> dict[str, Any]:
    """The numbers: every series in `names` (default: all registered) for every group of runs."""
    index, runs, unfinished = sweep_runs(folder)
    groups = group_runs(runs)
    names = list(SERIES) if names is None else names
    unknown = [n for n in names if n not in SERIES]
    if unknown:
        raise KeyError(f"Unknown series {', '.join(unknown)}. Available: {', '.join(SERIES)}.")
    axes = sorted({k for r in runs for k in r.axes})
    out: dict[str, Any] = {
        "sweep": index.get("sweep"), "folder": str(folder), "spread": SPREAD,
        "seed_axes": [k for k in axes if is_seed_axis(k)], "group_axes": [k for k in axes if not is_seed_axis(k)],
        "runs": {r.id: {"file": r.path.name, "axes": r.axes} for r in runs}, "unfinished_runs": unfinished,
        "groups": [{"label": g.label, "axes": g.axes, "runs": [r.id for r in g.runs]} for g in groups],
        "quantities": {},
    }
    per_run: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {name: {} for name in names}
    missing: dict[str, dict[str, str]] = {name: {} for name in names}
    for run in runs:  # runs outer: each file's analysis (harness.report.series) is computed once
        for name in names:
            try:
                per_run[name][run.id] = SERIES[name].fn(run.path)
            except SeriesUnavailable as exc:
                missing[name][run.id] = str(exc)
    for name in names:
        q: dict[str, Any] = {"label": SERIES[name].label, "log": SERIES[name].log, "groups": {},
                             "missing": missing[name]}
        for g in groups:
            have = [r.id for r in g.runs if r.id in per_run[name]]
            if not have:
                continue
            stats = combine([per_run[name][rid] for rid in have])
            q["groups"][g.label] = {"axes": g.axes, "runs": have, "n_runs": len(have),
                                    **{k: _json_list(v) for k, v in stats.items()}}
        out["quantities"][name] = q
    return out


def markdown(report: dict[str, Any], figures: dict[str, str]) -> str:
    lines = [f"# Cross-run report: {report['sweep']}", "",
             f"{len(report['runs'])} finished runs in {report['folder']}"
             + (f" ({len(report['unfinished_runs'])} not finished, not read)" if report["unfinished_runs"] else "")
             + f"; grouped by {', '.join(report['group_axes']) or 'nothing (one group)'}, "
               f"seeds over {', '.join(report['seed_axes']) or 'no seed axis'}.",
             f"Lines: the mean over each group's runs; bands: {report['spread']}.", "",
             "| group | runs |", "| --- | --- |"]
    lines += [f"| {g['label']} | {len(g['runs'])} |" for g in report["groups"]]
    lines += ["", "## Figures", ""]
    for name, q in report["quantities"].items():
        if name not in figures:
            lines.append(f"- {name}: no run records it ({'; '.join(sorted(set(q['missing'].values())))}).")
            continue
        last = "; ".join(f"{label} {_fmt(g['mean'][-1])} [{_fmt(g['min'][-1])}, {_fmt(g['max'][-1])}]"
                         for label, g in q["groups"].items() if g["steps"])
        lines.append(f"- [{figures[name]}]({figures[name]}): {q['label']}. Last step, mean [min, max]: {last}.")
    return "\n".join(lines + [""])


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def write_cross_report(folder: str | Path, out: str | Path | None = None,
                       names: list[str] | None = None) -> dict[str, Path]:
    """Write the figures, cross_report.json and report.md; returns {file stem: path}."""
    folder = Path(folder)
    out = Path(out) if out is not None else default_cross_dir(folder)
    report = cross_report(folder, names)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, q in report["quantities"].items():
        if q["groups"]:
            path = out / f"{name}.png"
            quantity_figure(name, q, report).savefig(path, dpi=110)
            written[name] = path
    (out / JSON_NAME).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report, {k: p.name for k, p in written.items()}), encoding="utf-8")
    written[JSON_NAME], written["report.md"] = out / JSON_NAME, out / "report.md"
    log.info("cross-run report of %s (%d runs) -> %s", folder, len(report["runs"]), out)
    return written
