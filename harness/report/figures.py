"""One matplotlib figure per question the trajectories exist to answer (harness.report.analysis)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness.report.analysis import SETS, Analysis  # noqa: E402

COLORS = {"dead": "tab:red", "live": "tab:blue", "all": "black"}
STYLES = {"E": "--", "W": "-"}


def _figure(a: Analysis, title: str, rows: int = 1) -> tuple[Figure, list]:
    """A figure of `rows` panels over the optimizer step; its title names the question and the run."""
    fig = Figure(figsize=(8, max(3.2 * rows, 4.4)), layout="constrained")  # a lone panel: room for its y label
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    fig.suptitle(f"{title}\nrun {a.run}")
    for ax in axes:
        ax.set_xlabel("optimizer step" + (f" (a frame every {a.record_every} steps)" if a.record_every > 1 else ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole: no tick at step 0.5
    return fig, axes


def _per(a: Analysis) -> str:
    """What a change from the previous frame spans: one step, or (record.every > 1) one frame."""
    return "per step" if a.record_every == 1 else "per frame"


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


def _lines(ax, a: Analysis, metric: str, skip_first: bool = False, log: bool = False) -> None:
    """One line per tensor and token set; on a log scale, a series with no positive value is not
    drawn (it would be invisible) but named in a note on the panel."""
    start = 1 if skip_first else 0
    hidden = []
    for name in a.tensors:
        for s in SETS:
            key = f"{name}/{s}/{metric}"
            if key not in a.series:
                continue
            y = a[key][start:]
            if log and not (np.isfinite(y) & (y > 0)).any():
                hidden.append(f"{name} {s}")
                continue
            ax.plot(a.steps[start:], y, STYLES[name], color=COLORS[s], label=f"{name} {s}")
    if log:
        ax.set_yscale("log")
    if hidden:
        ax.text(0.01, 0.03, f"not drawn, 0 at every frame: {', '.join(hidden)}", transform=ax.transAxes,
                fontsize="x-small", color="gray")
    _legend(ax)


def displacement(a: Analysis) -> Figure:
    fig, (top, bottom) = _figure(a, "How far tokens move: dead vs live", rows=2)
    _lines(top, a, "displacement_mean")
    top.set(ylabel="mean ‖x_t − x_0‖ (embedding units)")
    _lines(bottom, a, "step_mean", skip_first=True, log=True)
    bottom.set(ylabel=f"mean ‖x_t − x_{{t−1}}‖ {_per(a)}")
    return fig


def cloud(a: Analysis) -> Figure:
    fig, (top, bottom) = _figure(a, "The clouds: radius and centroid drift", rows=2)
    _lines(top, a, "radius_mean")
    top.set(ylabel="mean radius ‖x_t − c_t‖ (embedding units)")
    _lines(bottom, a, "centroid_drift")
    bottom.set(ylabel="centroid drift ‖c_t − c_0‖ (embedding units)")
    return fig


def comoving(a: Analysis) -> Figure:
    fig, (ax,) = _figure(a, "Displacement in the comoving frame (relative to the cloud centroid)")
    _lines(ax, a, "comoving_mean")
    ax.set(ylabel="mean ‖(x_t − c_t) − (x_0 − c_0)‖ (embedding units)")
    return fig


def radial(a: Analysis) -> Figure:
    fig, (top, bottom) = _figure(a, "Which way tokens step: radial vs tangential", rows=2)
    _lines(top, a, "outward_fraction", skip_first=True)
    top.axhline(0.5, color="gray", lw=0.8, ls=":", label="chance")
    top.set(ylabel=f"share of moving tokens\nstepping outward ({_per(a)})", ylim=(0, 1))
    for name in a.tensors:
        key = f"{name}/dead"
        if f"{key}/radial_mean" in a.series:
            bottom.plot(a.steps[1:], a[f"{key}/radial_mean"][1:], STYLES[name], color="tab:red",
                        label=f"{name} dead: radial (signed)")
            bottom.plot(a.steps[1:], a[f"{key}/tangential_mean"][1:], STYLES[name], color="tab:orange",
                        label=f"{name} dead: tangential")
    bottom.set(ylabel=f"mean change {_per(a)},\nby component (embedding units)")
    _legend(bottom)
    return fig


def lattice(a: Analysis) -> Figure:
    fig, (top, middle, bottom) = _figure(a, "The bf16 lattice: how many coordinates move, by how much, until when", 3)
    _lines(top, a, "changed_fraction", skip_first=True)
    top.set(ylabel=f"share of coordinates\nchanged {_per(a)}")
    _lines(middle, a, "one_ulp_fraction", skip_first=True)
    middle.set(ylabel="share of changes that\nare one bf16 ULP", ylim=(0, 1.02))
    dead = a["dead_mask"]
    bins = np.linspace(0, max(1, int(a.steps[-1])), 41)
    for name in a.tensors:
        last = a[f"{name}/last_moved_step"]
        for s, m in (("dead", dead), ("live", ~dead)):
            if m.any():
                bottom.hist(last[m], bins=bins, histtype="step", ls=STYLES[name], color=COLORS[s],
                            label=f"{name} {s}")
    bottom.set(xlabel="last step at which the token moved (0 = never)", ylabel="tokens")
    _legend(bottom)
    return fig


def indicator(a: Analysis) -> Figure:
    fig, (ax,) = _figure(a, "Under-trained-token indicator: cosine to the mean dead row")
    for name in a.tensors:
        key = f"{name}/indicator_auroc"
        if key in a.series:
            ax.plot(a.steps, a[key], STYLES[name], color="tab:purple", label=f"{name}")
    ax.axhline(0.5, color="gray", lw=0.8, ls=":", label="chance")
    ax.set(ylabel="AUROC separating dead from live", ylim=(0, 1.02))
    _legend(ax)
    return fig


def e_minus_w(a: Analysis) -> Figure:
    fig, (ax,) = _figure(a, "Untied run: how E and W diverge")
    for s in ("all", *SETS):
        ax.plot(a.steps, a[f"E-W/{s}/frobenius"], color=COLORS[s], label=s)
    ax.set(ylabel="‖E − W‖_F over the token set (embedding units)")
    _legend(ax)
    return fig


TRAINING_LABELS = {"loss": "training loss (nats)", "lr": "learning rate", "grad_norm": "gradient norm"}


def training(a: Analysis) -> Figure:
    """Loss, learning rate and gradient norm at each recorded frame."""
    fig, axes = _figure(a, "Training curves: loss, learning rate, gradient norm", rows=len(a.training))
    for ax, (name, values) in zip(axes, a.training.items()):
        ok = np.isfinite(values)
        ax.plot(a.steps[ok], values[ok], "o-" if ok.sum() <= 50 else "-", ms=3, color="black")
        ax.set(ylabel=TRAINING_LABELS[name])
        ax.grid(alpha=0.3)
    return fig


def make_figures(a: Analysis) -> dict[str, Figure]:
    """Figure per question, keyed by file stem."""
    figures = {"training": training(a)} if a.training else {}
    figures |= {"displacement": displacement(a), "cloud": cloud(a), "comoving": comoving(a), "radial": radial(a),
               "lattice": lattice(a)}
    if any(f"{t}/indicator_auroc" in a.series for t in a.tensors):
        figures["indicator"] = indicator(a)
    if "E-W/all/frobenius" in a.series:
        figures["e_minus_w"] = e_minus_w(a)
    return figures
