"""The figures and numbers of docs/findings.md, from the studies' trajectory files.

    python docs/figures/make_figures.py /work/studies      # the --out folder the sweeps wrote

Reads every finished run (its sweep's index.json) of the studies under OUT (flannel_1_seeds,
flannel_2_untied_seeds, init_std, lr_decay: those present), measures each with the
definitions of harness.dynamics (docs/dynamics.md), caches each run's measures beside its
file (<run>.dynamics.npz: the definitions' numbers and per-frame series, recomputed when the
trajectory is newer), and writes small PNGs plus findings.json (every number the page
quotes) to docs/figures/.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness.dynamics import collapse, flux, freeze, inhale, outward_share, supernova_end  # noqa: E402
from harness.sweep.index import is_finished, read_index  # noqa: E402

HERE = Path(__file__).resolve().parent
DPI = 72
SERIES = {"supernova": ("steps", "speed"), "freeze": ("steps", "moving_fraction", "freeze_steps"),
          "flux": ("inside", "entries", "exits", "radius"), "inhale": ("radius",), "outward": ("outward", "moving")}


def measure(path: Path, full: bool) -> dict:
    """Every definition on one run (full: all six; else supernova, inhale, outward, collapse)."""
    cache = path.with_suffix(".dynamics.npz")
    if cache.exists() and cache.stat().st_mtime > path.stat().st_mtime:
        data = np.load(cache, allow_pickle=False)
        return {"numbers": json.loads(str(data["numbers"])), **{k: data[k] for k in data.files if k != "numbers"}}
    start = time.perf_counter()
    found = {"supernova": supernova_end(path), "inhale": inhale(path), "outward": outward_share(path),
             "collapse": collapse(path)}
    if full:
        found.update(freeze=freeze(path), flux=flux(path))
    numbers = {k: v.to_dict() for k, v in found.items()}
    numbers["seconds"] = round(time.perf_counter() - start, 1)
    arrays = {f"{k}.{a}": np.asarray(getattr(found[k], a)) for k, names in SERIES.items() if k in found for a in names}
    np.savez(cache, numbers=json.dumps(numbers, default=_plain), **arrays)
    return {"numbers": numbers, **arrays}


def _plain(x):
    return x.item() if hasattr(x, "item") else str(x)


def finished(folder: Path) -> list[tuple[str, dict, Path]]:
    index = read_index(folder)
    return [(rid, e, folder / e["file"]) for rid, e in sorted(index.get("runs", {}).items()) if is_finished(folder, e)]


def study(out: Path, name: str, full: bool) -> list[dict]:
    runs = []
    for rid, entry, path in finished(out / name):
        print(f"{name}/{rid}", flush=True)
        runs.append({"id": rid, "axes": entry["axes"], "seconds": entry.get("seconds"), **measure(path, full)})
    return runs


def label(run: dict) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in run["axes"].items())


def fig_supernova(runs, path):
    fig, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
    for r in runs:
        n = r["numbers"]["supernova"]
        line, = ax.semilogy(r["supernova.steps"][1:], r["supernova.speed"][1:], lw=0.8, label=label(r))
        if n["end_step"] is not None:
            ax.axvline(n["end_step"], color=line.get_color(), ls=":", lw=0.8)
    ax.set(xlabel="optimizer step", ylabel="dead-cloud speed (mean |x_t - x_t-1|)",
           title="Flannel 1: speed of the dead rows of W; dotted: supernova end (10% of peak)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def fig_freeze(runs, path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    for r in runs:
        a.plot(r["freeze.steps"][1:], r["freeze.moving_fraction"][1:], lw=0.8, label=label(r))
        frozen = r["freeze.freeze_steps"]
        b.hist(frozen[(frozen > 0) & (frozen < r["freeze.steps"][-1])], bins=40, histtype="step", lw=0.8)
    a.set(xlabel="optimizer step", ylabel="share of dead rows that changed", title="dead rows moving, per step")
    b.set(xlabel="freeze step (last change)", ylabel="dead tokens", title="freeze steps (frozen tokens)")
    for ax in (a, b):
        ax.title.set_fontsize(9)
    a.legend(fontsize=7)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def fig_flux(runs, path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    for r in runs:
        steps = r["supernova.steps"]
        a.plot(steps, r["flux.inside"], lw=0.8, label=label(r))
        b.plot(steps[1:], np.cumsum(r["flux.entries"][1:] + r["flux.exits"][1:]), lw=0.8)
    a.set(xlabel="optimizer step", ylabel="live tokens inside", title="live tokens inside the dead ball (p90 radius)")
    b.set(xlabel="optimizer step", ylabel="entries + exits, cumulative", title="crossings of the ball's surface")
    for ax in (a, b):
        ax.title.set_fontsize(9)
    a.legend(fontsize=7)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def fig_inhale(groups, path, first=30):
    fig, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
    for name, runs, style in groups:
        for i, r in enumerate(runs):
            steps, radius = r["supernova.steps"], r["inhale.radius"]
            keep = steps <= first
            ax.plot(steps[keep], radius[keep] / radius[0] - 1, style, lw=0.8, ms=2,
                    label=name if i == 0 else None)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xlabel="optimizer step", ylabel="dead radius / start - 1",
           title=f"the inhale: mean radius of the dead rows of W, first {first} steps")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def fig_outward(groups, path, window=25):
    fig, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
    for name, runs, style in groups:
        for i, r in enumerate(runs):
            out, moving = r["outward.outward"][1:], r["outward.moving"][1:]
            k = np.ones(window)
            share = np.convolve(out, k, "valid") / np.maximum(np.convolve(moving, k, "valid"), 1)
            ax.plot(r["supernova.steps"][window:], share, style, lw=0.8, label=name if i == 0 else None)
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set(xlabel="optimizer step", ylabel=f"outward share ({window}-step windows)",
           title="share of dead rows' steps pointing away from the dead centroid (0.5: no preference)", ylim=(0, 1))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def fig_init(runs, path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    for tied in (True, False):
        sel = sorted((r for r in runs if r["axes"].get("model.tied", True) == tied), key=lambda r: r["axes"]["init.std"])
        if not sel:
            continue
        std = [r["axes"]["init.std"] for r in sel]
        c = [r["numbers"]["collapse"] for r in sel]
        tag = "tied" if tied else "untied"
        a.semilogx(std, [x["identical_rows"] for x in c], "o-", label=f"{tag}: identical dead rows")
        a.semilogx(std, [x["largest_near_cluster"] for x in c], "s--", label=f"{tag}: largest 1-ULP cluster")
        b.semilogx(std, [r["inhale.radius"][-1] / r["inhale.radius"][0] for r in sel], "o-", label=tag)
    a.set(xlabel="init.std", ylabel="rows", title="collapse at the last step")
    b.axhline(1, color="grey", lw=0.5)
    b.set(xlabel="init.std", ylabel="final / initial dead radius", title="dead cloud growth")
    for ax in (a, b):
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def main(out: Path) -> None:
    f1 = study(out, "flannel_1_seeds", full=True)
    f2 = study(out, "flannel_2_untied_seeds", full=False)
    init = study(out, "init_std", full=False) + study(out, "lr_decay", full=False)
    if f1:
        fig_supernova(f1, HERE / "supernova.png")
        fig_freeze(f1, HERE / "freeze.png")
        fig_flux(f1, HERE / "flux.png")
    groups = [("Flannel 1 (tied)", f1, "-"), ("Flannel 2 (untied, 300 steps)", f2, "--")]
    fig_inhale(groups, HERE / "inhale.png")
    fig_outward(groups, HERE / "outward.png")
    std_runs = [r for r in init if "init.std" in r["axes"]]
    if std_runs:
        fig_init(std_runs, HERE / "init_std.png")
    numbers = {name: [{"id": r["id"], "axes": r["axes"], "run_seconds": r["seconds"], **r["numbers"]} for r in runs]
               for name, runs in (("flannel_1_seeds", f1), ("flannel_2_untied_seeds", f2), ("init_and_lr", init))}
    (HERE / "findings.json").write_text(json.dumps(numbers, indent=1, default=_plain) + "\n", encoding="utf-8")
    print(f"wrote {HERE}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))
