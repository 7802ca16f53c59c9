"""One figure per quantity of a cross-run report (harness.report.cross): a line per group of
runs (its mean over seeds) and a band from the group's minimum to its maximum."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _array(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def quantity_figure(name: str, quantity: dict[str, Any], report: dict[str, Any]) -> Figure:
    """`quantity`: one entry of the report's "quantities" (label, log, groups: label -> steps, mean, min, max)."""
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.add_subplot()
    n_runs = sum(g["n_runs"] for g in quantity["groups"].values())
    for i, (label, g) in enumerate(quantity["groups"].items()):
        color = f"C{i % 10}"
        steps = np.asarray(g["steps"])
        ax.plot(steps, _array(g["mean"]), color=color, lw=1.5, label=f"{label} ({g['n_runs']} runs)")
        ax.fill_between(steps, _array(g["min"]), _array(g["max"]), color=color, alpha=0.2, lw=0)
    if name.endswith("outward_share"):
        ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="optimizer step", ylabel=quantity["label"], yscale="log" if quantity["log"] else "linear")
    seeds = ", ".join(report["seed_axes"]) or "runs"
    fig.suptitle(f"{report['sweep']}: {name}, {n_runs} runs\nline: mean over {seeds}; band: min-max", fontsize="medium")
    ax.legend(fontsize="small", title=", ".join(report["group_axes"]) or None, title_fontsize="small")
    ax.grid(alpha=0.3)
    return fig
