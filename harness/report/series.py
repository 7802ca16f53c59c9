"""Per-run series for the cross-run report: a registry `name -> f(path) -> (steps, values)`.

    register_series("dead_radius", analysis_series("radius_mean", "dead"), "mean radius of the dead cloud")

Each function reads one trajectory file and returns (steps (T,) int64, values (T,) float64),
one value per recorded frame it covers (a series may skip frames, e.g. frame 0 of a
step-to-step quantity). A run that cannot give a series (no `loss` recorded) raises
SeriesUnavailable, and the report lists it instead of failing. New quantities (say, a
definition over a trajectory from another package) join with one `register_series` line.

The quantities of harness.report.analysis come from one streamed analysis per file, cached
(the last file, as it is on disk), so a caller that asks a run for all its series before the
next run's (harness.report.cross does) reads each run once for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from core.trajectory import Trajectory
from harness.report.analysis import Analysis, analyse

SeriesFn = Callable[[Path], tuple[np.ndarray, np.ndarray]]  # path -> (steps (T,), values (T,))


class SeriesUnavailable(LookupError):
    """This run does not record what the series needs; the message says what is missing."""


@dataclass(frozen=True)
class Series:
    fn: SeriesFn
    label: str  # what the values are, with units: the y-axis of its figure
    log: bool = False  # draw on a log scale


SERIES: dict[str, Series] = {}


def register_series(name: str, fn: SeriesFn, label: str, log: bool = False) -> None:
    if name in SERIES:
        raise ValueError(f"Series {name!r} is already registered.")
    SERIES[name] = Series(fn, label, log)


@lru_cache(maxsize=1)
def _analysis(path: str, mtime_ns: int, size: int) -> Analysis:
    return analyse(path)


def cached_analysis(path: Path) -> Analysis:
    """harness.report.analysis.analyse(path), computed once per file version (path, mtime, size)."""
    stat = Path(path).stat()
    return _analysis(str(path), stat.st_mtime_ns, stat.st_size)


def analysis_series(metric: str, tokens: str, skip_first: bool = False) -> SeriesFn:
    """A per-frame series of harness.report.analysis for W (E where W is not recorded)."""

    def series(path: Path) -> tuple[np.ndarray, np.ndarray]:
        a = cached_analysis(path)
        tensor = "W" if "W" in a.tensors else a.tensors[0]
        key = f"{tensor}/{tokens}/{metric}"
        if key not in a.series:
            raise SeriesUnavailable(f"{path}: no {tokens} tokens to measure {metric} on")
        start = 1 if skip_first else 0
        return np.asarray(a.steps[start:], dtype=np.int64), a.series[key][start:]

    return series


def loss_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The recorded `loss` dataset, frames 1.. (frame 0 is before any step: NaN)."""
    with Trajectory(path) as traj:
        if "loss" not in traj:
            raise SeriesUnavailable(f"{path} does not record loss (record.tensors)")
        return traj.steps[1:].astype(np.int64), np.asarray(traj["loss"][1:], dtype=np.float64)


for _s in ("dead", "live"):
    register_series(f"{_s}_displacement", analysis_series("displacement_mean", _s),
                    f"mean ‖x_t − x_0‖ of {_s} rows (embedding units)")
    register_series(f"{_s}_radius", analysis_series("radius_mean", _s),
                    f"mean radius ‖x_t − c_t‖ of the {_s} cloud (embedding units)")
    register_series(f"{_s}_step", analysis_series("step_mean", _s, skip_first=True),
                    f"mean step ‖x_t − x_(t−1)‖ of {_s} rows (embedding units)", log=True)
    register_series(f"{_s}_outward_share", analysis_series("outward_fraction", _s, skip_first=True),
                    f"share of moving {_s} tokens stepping outward (chance 0.5)")
register_series("loss", loss_series, "training loss (recorded)")
