"""One matplotlib figure per question the trajectories exist to answer (harness.report.analysis)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.report.analysis import SETS, Analysis  # noqa: E402

COLORS = {"dead": "tab:red", "live": "tab:blue", "all": "black"}
STYLES = {"E": "--", "W": "-"}


def _figure(title: str, rows: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(8, max(3.2 * rows, 4.4)), layout="constrained")  # a lone panel: room for its y label
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    fig.suptitle(title)
    return fig, axes


def _lines(ax, a: Analysis, metric: str, skip_first: bool = False) -> None:
    start = 1 if skip_first else 0
    for name in a.tensors:
        for s in SETS:
            key = f"{name}/{s}/{metric}"
            if key in a.series:
                ax.plot(a.steps[start:], a[key][start:], STYLES[name], color=COLORS[s], label=f"{name} {s}")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


def displacement(a: Analysis) -> Figure:
    fig, (top, bottom) = _figure("How far tokens move: dead vs live", rows=2)
    _lines(top, a, "displacement_mean")
    top.set(xlabel="optimizer step", ylabel="mean ‖x_t − x_0‖ (embedding units)")
    _lines(bottom, a, "step_mean", skip_first=True)
    bottom.set(xlabel="optimizer step", ylabel="mean ‖x_t − x_{t−1}‖ (embedding units)", yscale="log")
    return fig


def cloud(a: Analysis) -> Figure:
    fig, (top, bottom) = _figure("The clouds: radius and centroid drift", rows=2)
    _lines(top, a, "radius_mean")
    top.set(xlabel="optimizer step", ylabel="mean radius ‖x_t − c_t‖ (embedding units)")
    _lines(bottom, a, "centroid_drift")
    bottom.set(xlabel="optimizer step", ylabel="centroid drift ‖c_t − c_0‖ (embedding units)")
    return fig


def comoving(a: Analysis) -> Figure:
    fig, (ax,) = _figure("Displacement in the comoving frame (relative to the cloud centroid)")
    _lines(ax, a, "comoving_mean")
    ax.set(xlabel="optimizer step", ylabel="mean ‖(x_t − c_t) − (x_0 − c_0)‖ (embedding units)")
    return fig


def radial(a: Analysis) -> Figure:
    fig, (top, bottom) = _figure("Which way tokens step: radial vs tangential", rows=2)
    _lines(top, a, "outward_fraction", skip_first=True)
    top.axhline(0.5, color="gray", lw=0.8, ls=":", label="chance")
    top.set(xlabel="optimizer step", ylabel="share of moving tokens stepping outward", ylim=(0, 1))
    for name in a.tensors:
        key = f"{name}/dead"
        if f"{key}/radial_mean" in a.series:
            bottom.plot(a.steps[1:], a[f"{key}/radial_mean"][1:], STYLES[name], color="tab:red",
                        label=f"{name} dead: radial (signed)")
            bottom.plot(a.steps[1:], a[f"{key}/tangential_mean"][1:], STYLES[name], color="tab:orange",
                        label=f"{name} dead: tangential")
    bottom.set(xlabel="optimizer step", ylabel="mean step component (embedding units)")
    bottom.legend(fontsize="small")
    bottom.grid(alpha=0.3)
    return fig


def lattice(a: Analysis) -> Figure:
    fig, (top, middle, bottom) = _figure("The bf16 lattice: how many coordinates move, by how much, until when", 3)
    _lines(top, a, "changed_fraction", skip_first=True)
    top.set(xlabel="optimizer step", ylabel="share of coordinates changed")
    _lines(middle, a, "one_ulp_fraction", skip_first=True)
    middle.set(xlabel="optimizer step", ylabel="share of changes that are one bf16 ULP", ylim=(0, 1.02))
    dead = a["dead_mask"]
    bins = np.linspace(0, max(1, int(a.steps[-1])), 41)
    for name in a.tensors:
        last = a[f"{name}/last_moved_step"]
        for s, m in (("dead", dead), ("live", ~dead)):
            if m.any():
                bottom.hist(last[m], bins=bins, histtype="step", ls=STYLES[name], color=COLORS[s],
                            label=f"{name} {s}")
    bottom.set(xlabel="last step at which the token moved (0 = never)", ylabel="tokens")
    bottom.legend(fontsize="small")
    return fig


def indicator(a: Analysis) -> Figure:
    fig, (ax,) = _figure("Under-trained-token indicator: cosine to the mean dead row")
    for name in a.tensors:
        key = f"{name}/indicator_auroc"
        if key in a.series:
            ax.plot(a.steps, a[key], STYLES[name], color="tab:purple", label=f"{name}")
    ax.axhline(0.5, color="gray", lw=0.8, ls=":", label="chance")
    ax.set(xlabel="optimizer step", ylabel="AUROC separating dead from live", ylim=(0, 1.02))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def e_minus_w(a: Analysis) -> Figure:
    fig, (ax,) = _figure("Untied run: how E and W diverge")
    for s in ("all", *SETS):
        ax.plot(a.steps, a[f"E-W/{s}/frobenius"], color=COLORS[s], label=s)
    ax.set(xlabel="optimizer step", ylabel="‖E − W‖_F over the token set (embedding units)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def make_figures(a: Analysis) -> dict[str, Figure]:
    """Figure per question, keyed by file stem."""
    figures = {"displacement": displacement(a), "cloud": cloud(a), "comoving": comoving(a), "radial": radial(a),
               "lattice": lattice(a)}
    if any(f"{t}/indicator_auroc" in a.series for t in a.tensors):
        figures["indicator"] = indicator(a)
    if "E-W/all/frobenius" in a.series:
        figures["e_minus_w"] = e_minus_w(a)
    return figures
