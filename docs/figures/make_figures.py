"""The figures and numbers of docs/findings.md, from the studies' trajectory files.

    python docs/figures/make_figures.py /work/studies [FIGURES_DIR] [--size cpu]

Reads the finished runs (their sweep's index.json) of the studies flannel_1_seeds,
flannel_2_untied_seeds, init_std and lr_decay under OUT (the sweeps' --out): those of the whole
studies, or of their [sizes.NAME] with --size. Measures each with the definitions of
harness.dynamics (docs/dynamics.md), caches each run's measures beside its file
(<run>.dynamics.npz: the definitions' numbers and per-frame series, recomputed when the
trajectory is newer or a measure's version in MEASURES changed), and writes small PNGs plus
findings.json (every number the page quotes) to docs/figures/ (or FIGURES_DIR).
tests/test_studies.py runs it on the smoke studies.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.trajectory import Trajectory  # noqa: E402
from harness.dynamics import collapse, flux, freeze, inhale, outward_share, supernova_end  # noqa: E402
from harness.sweep.index import is_finished, read_index  # noqa: E402
from harness.sweep.run import load_sweep  # noqa: E402

HERE = Path(__file__).resolve().parent
SWEEPS = HERE.parent.parent / "sweeps"
DPI = 72
SERIES = {"supernova": ("steps", "speed"), "freeze": ("steps", "moving_fraction", "freeze_steps"),
          "flux": ("inside", "entries", "exits", "radius"), "inhale": ("radius",), "outward": ("outward", "moving"),
          "inhale_origin": ("radius",), "outward_origin": ("outward", "moving")}
# Each measure is cached on its own with its version: bump one when its definition or output changes.
MEASURES = {  # name: (version, function of the trajectory path)
    "supernova": (1, supernova_end), "collapse": (1, collapse), "freeze": (1, freeze), "flux": (1, flux),
    "inhale": (2, inhale), "outward": (2, outward_share),  # 2: they name their center
    "inhale_origin": (1, partial(inhale, center="origin")), "outward_origin": (1, partial(outward_share, center="origin")),
}
FULL_ONLY = ("freeze", "flux")  # measured on the Flannel 1 study only


def centroid_norm(path: Path, chunk: int = 16) -> np.ndarray:
    """Per frame (T,): the dead centroid's distance from the origin (the cloud's drift)."""
    with Trajectory(path) as traj:
        out = np.zeros(len(traj))
        for start, block in traj.iter_frames("W", chunk=chunk, tokens=traj.dead):
            out[start : start + len(block)] = block.float().mean(1).norm(dim=-1).numpy()  # (C, n_dead, D) -> (C,)
    return out


def cached(cache: Path, path: Path) -> tuple[dict, dict]:
    """(numbers, arrays) of the measures cached for `path` that are still current (same version,
    cache newer than the trajectory)."""
    if not cache.exists() or cache.stat().st_mtime <= path.stat().st_mtime:
        return {}, {}
    data = np.load(cache, allow_pickle=False)
    numbers = json.loads(str(data["numbers"]))
    versions = numbers.get("versions") or dict.fromkeys(MEASURES, 1)  # caches from before versions: all 1
    keep = {k for k, (version, _) in MEASURES.items() if k in numbers and versions.get(k) == version}
    keep |= {"centroid_norm"} & set(data.files)
    arrays = {k: data[k] for k in data.files if k.split(".", 1)[0] in keep}
    return {k: numbers[k] for k in keep if k in numbers}, arrays


def measure(path: Path, full: bool) -> dict:
    """Every definition on one run (full: all six; else all but freeze and flux), the inhale and
    outward share also from the origin; only what the cache beside the file lacks is computed."""
    cache = path.with_suffix(".dynamics.npz")
    numbers, arrays = cached(cache, path)
    wanted = [k for k in MEASURES if full or k not in FULL_ONLY]
    start, computed = time.perf_counter(), False
    for name in wanted:
        if name in numbers:
            continue
        result, computed = MEASURES[name][1](path), True
        numbers[name] = result.to_dict()
        arrays.update({f"{name}.{a}": np.asarray(getattr(result, a)) for a in SERIES.get(name, ())})
    if "centroid_norm" not in arrays:
        arrays["centroid_norm"], computed = centroid_norm(path), True
    numbers["centroid_norm_first_last"] = [float(arrays["centroid_norm"][0]), float(arrays["centroid_norm"][-1])]
    numbers["versions"] = {k: MEASURES[k][0] for k in MEASURES if k in numbers}
    if computed:
        numbers["seconds"] = round(time.perf_counter() - start, 1)
        np.savez(cache, numbers=json.dumps(numbers, default=_plain), **arrays)
    return {"numbers": numbers, **arrays}


def _plain(x):
    return x.item() if hasattr(x, "item") else str(x)


def finished(folder: Path, ids: set[str]) -> list[tuple[str, dict, Path]]:
    """(id, index entry, file) of the finished runs among `ids` in a sweep's folder."""
    index = read_index(folder)
    return [(rid, e, folder / e["file"]) for rid, e in sorted(index.get("runs", {}).items())
            if rid in ids and is_finished(folder, e)]


def study(out: Path, name: str, full: bool, size: str | None) -> list[dict]:
    """The measures of every finished run of sweeps/<name>.toml at `size` (None: the whole study)
    under `out`: runs of other sizes in the same folder are left out."""
    runs = []
    ids = {r.id for r in load_sweep(SWEEPS / f"{name}.toml", size=size).runs}
    for rid, entry, path in finished(out / name, ids):
        print(f"{name}/{rid}", flush=True)
        runs.append({"id": rid, "axes": entry["axes"], "seconds": entry.get("seconds"), **measure(path, full)})
    return runs


def label(run: dict) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in run["axes"].items())


def save(fig, axes, path, legend=None, legend_size=7) -> None:
    """Small titles, a legend on each of `legend` (default: every axis), PNG at DPI, figure closed."""
    for ax in axes:
        ax.title.set_fontsize(9)
    for ax in axes if legend is None else legend:
        ax.legend(fontsize=legend_size)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def two_panels(width: float = 8, height: float = 3.2):
    fig, axes = plt.subplots(1, 2, figsize=(width, height), constrained_layout=True)
    return fig, axes


def fig_supernova(runs, path):
    fig, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
    for r in runs:
        n = r["numbers"]["supernova"]
        line, = ax.semilogy(r["supernova.steps"][1:], r["supernova.speed"][1:], lw=0.8, label=label(r))
        if n["end_step"] is not None:
            ax.axvline(n["end_step"], color=line.get_color(), ls=":", lw=0.8)
    ax.set(xlabel="optimizer step", ylabel="dead-cloud speed (mean |x_t - x_t-1|)",
           title="Flannel 1: speed of the dead rows of W; dotted: supernova end (10% of peak)")
    save(fig, [ax], path)


def fig_freeze(runs, path):
    fig, (a, b) = two_panels()
    for r in runs:
        a.plot(r["freeze.steps"][1:], r["freeze.moving_fraction"][1:], lw=0.8, label=label(r))
        frozen = r["freeze.freeze_steps"]
        b.hist(frozen[(frozen > 0) & (frozen < r["freeze.steps"][-1])], bins=40, histtype="step", lw=0.8)
    a.set(xlabel="optimizer step", ylabel="share of dead rows that changed", title="dead rows moving, per step")
    b.set(xlabel="freeze step (last change)", ylabel="dead tokens", title="freeze steps (frozen tokens)")
    save(fig, (a, b), path, legend=[a])


def fig_flux(runs, path):
    fig, (a, b) = two_panels()
    for r in runs:
        steps = r["supernova.steps"]
        a.plot(steps, r["flux.inside"], lw=0.8, label=label(r))
        b.plot(steps[1:], np.cumsum(r["flux.entries"][1:] + r["flux.exits"][1:]), lw=0.8)
    a.set(xlabel="optimizer step", ylabel="live tokens inside", title="live tokens inside the dead ball (p90 radius)")
    b.set(xlabel="optimizer step", ylabel="entries + exits, cumulative", title="crossings of the ball's surface")
    save(fig, (a, b), path, legend=[a])


def fig_inhale(groups, path, first=30, first_origin=8):
    fig, (a, b) = two_panels(9, 3.4)
    for name, runs, color in groups:
        for i, r in enumerate(runs):
            steps = r["supernova.steps"]
            for ax, series, last in ((a, r["inhale.radius"], first), (b, r["inhale_origin.radius"], first_origin)):
                keep = steps <= last
                ax.plot(steps[keep], series[keep] / series[0] - 1, ".-", color=color, lw=0.8, ms=3,
                        label=name if i == 0 else None)
    a.set(title=f"from the dead centroid (mean distance), first {first} steps")
    b.set(title=f"from the origin (mean |x|), first {first_origin} steps")
    for ax in (a, b):
        ax.axhline(0, color="grey", lw=0.5)
        ax.set(xlabel="optimizer step", ylabel="dead cloud radius / step 0 - 1")
    save(fig, (a, b), path)


def windowed(num: np.ndarray, den: np.ndarray, window: int) -> np.ndarray:
    """Pooled share in each sliding window of `window` frames; NaN where nothing moved."""
    k = np.ones(window)
    den = np.convolve(den, k, "valid")
    return np.where(den > 0, np.convolve(num, k, "valid") / np.maximum(den, 1), np.nan)


def fig_outward(groups, path, window=25):
    fig, (a, b) = two_panels(9, 3.4)
    for name, runs, color in groups:
        for i, r in enumerate(runs):
            window = min(window, len(r["supernova.steps"]) - 1)  # a run shorter than the window: one window
            steps = r["supernova.steps"][window:]
            first = i == 0
            a.plot(steps, windowed(r["outward.outward"][1:], r["outward.moving"][1:], window), color=color, lw=0.8,
                   label=f"{name}: from the dead centroid" if first else None)
            a.plot(steps, windowed(r["outward_origin.outward"][1:], r["outward_origin.moving"][1:], window),
                   color=color, ls="--", lw=0.8, label=f"{name}: from the origin" if first else None)
            b.plot(r["supernova.steps"], r["centroid_norm"], color=color, lw=0.8,
                   label=f"{name}: |centroid|" if first else None)
            b.plot(r["supernova.steps"], r["inhale.radius"], color=color, ls=":", lw=0.8,
                   label=f"{name}: mean distance to centroid" if first else None)
    a.axhline(0.5, color="grey", lw=0.5)
    a.set(xlabel="optimizer step", ylabel=f"outward share ({window}-step windows)", ylim=(-0.02, 1.02),
          title="dead steps pointing outward (0.5: no preference)")
    b.set(xlabel="optimizer step", ylabel="distance", title="dead cloud: drift of its centre, its spread")
    save(fig, (a, b), path, legend_size=6)


def fig_init(runs, path):
    fig, (a, b) = two_panels()
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
    b.set(xlabel="init.std", ylabel="dead spread, last step / step 0", title="mean distance of dead rows from their centroid")
    save(fig, (a, b), path)


def main(out: Path, figures: Path = HERE, size: str | None = None) -> None:
    """Measure the studies under `out` (their runs at `size`, None: the whole studies); write the
    PNGs and findings.json to `figures`."""
    f1 = study(out, "flannel_1_seeds", True, size)
    f2 = study(out, "flannel_2_untied_seeds", False, size)
    init = study(out, "init_std", False, size) + study(out, "lr_decay", False, size)
    if f1:
        fig_supernova(f1, figures / "supernova.png")
        fig_freeze(f1, figures / "freeze.png")
        fig_flux(f1, figures / "flux.png")
    fig_inhale([("Flannel 1", f1, "tab:blue"), ("Flannel 2 (untied)", f2, "tab:orange")], figures / "inhale.png")
    fig_outward([("Flannel 1", f1, "tab:blue"), ("Flannel 2 (untied)", f2, "tab:orange")], figures / "outward.png")
    std_runs = [r for r in init if "init.std" in r["axes"]]
    if std_runs:
        fig_init(std_runs, figures / "init_std.png")
    numbers = {name: [{"id": r["id"], "axes": r["axes"], "run_seconds": r["seconds"], **r["numbers"]} for r in runs]
               for name, runs in (("flannel_1_seeds", f1), ("flannel_2_untied_seeds", f2), ("init_and_lr", init))}
    (figures / "findings.json").write_text(json.dumps(numbers, indent=1, default=_plain) + "\n", encoding="utf-8")
    print(f"wrote {figures}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the --out folder the study sweeps wrote")
    parser.add_argument("figures", type=Path, nargs="?", default=HERE, help="where to write (default: docs/figures)")
    parser.add_argument("--size", default=None, help="the studies' [sizes.NAME] runs (default: the whole studies)")
    args = parser.parse_args()
    main(args.out, args.figures, args.size)
