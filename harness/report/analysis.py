"""Dead-token dynamics computed from a trajectory file, streaming frames in chunks.

One pass over each recorded matrix (E, W) computes, per frame t and per token set
(dead, live):

- displacement from frame 0, ‖x_t − x_0‖, and step to step, ‖x_t − x_{t−1}‖;
- the cloud: centroid c_t (mean row), its drift ‖c_t − c_0‖, mean and max radius ‖x_t − c_t‖;
- displacement in the comoving frame, ‖(x_t − c_t) − (x_0 − c_0)‖;
- each step split into radial and tangential parts relative to the cloud centroid of the
  previous frame, and the share of moving tokens whose step points outward (chance: 0.5);
- the bf16 lattice: the fraction of coordinates that changed, and the size of the changes
  in ULPs (distance between bf16 bit patterns); per token, the last step it moved;
- an under-trained-token indicator in the style of Magikarp: each row's cosine to the
  mean of the dead rows, and how well it separates dead from live (AUROC, 1 = perfectly);
- untied runs: ‖E − W‖_F per frame, over all tokens and per set.

Memory is bounded by `chunk` frames (chunk × vocab × dim float32 plus a few per-frame
rows) whatever the file's length. Everything is float32 arithmetic on the exact bf16
values read from the file. Whether a radius dips before it grows is decided by
harness.checks.measures, which the checks and the sweeps use too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.trajectory import Trajectory
from harness.checks.measures import DEFAULT_CHUNK, bf16_ordinal, radius_dips_before_growing
from harness.progress import progress_bar

log = logging.getLogger(__name__)

SETS = ("dead", "live")


TRAINING = ("loss", "lr", "grad_norm")  # the per-frame scalars every trajectory records


@dataclass
class Analysis:
    """Per-frame series and per-token arrays, keyed "<tensor>/<set>/<metric>"."""

    path: str
    steps: np.ndarray  # (T,) optimizer step of each frame
    tied: bool
    tensors: list[str]  # the matrices analysed: ["W"] tied, ["E", "W"] untied
    n_dead: int
    n_live: int
    series: dict[str, np.ndarray] = field(default_factory=dict)  # each (T,) float64
    per_token: dict[str, np.ndarray] = field(default_factory=dict)  # each (V,)
    run: str = ""  # "flannel_2 (scale smoke; --set train.steps=100)": names the run on every figure
    record_every: int = 1  # optimizer steps between frames (the last interval may be shorter)
    training: dict[str, np.ndarray] = field(default_factory=dict)  # loss, lr, grad_norm: each (T,) as recorded

    def __getitem__(self, key: str) -> np.ndarray:
        if key in self.series:
            return self.series[key]
        if key in self.per_token:
            return self.per_token[key]
        raise KeyError(f"No analysis result {key!r}. Available: {', '.join([*self.series, *self.per_token])}.")


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """P(score of a positive > score of a negative), ties counting one half."""
    return float(batched_auroc(scores[None], positive)[0])


def batched_auroc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """AUROC of each row of scores (C, V) for the labels positive (V,) bool: (C,) float64."""
    c, v = scores.shape
    n_pos = int(positive.sum())
    n_neg = v - n_pos
    if not n_pos or not n_neg:
        return torch.full((c,), float("nan"), dtype=torch.float64)
    sorted_scores, order = torch.sort(scores, dim=1)
    pos = positive[order]  # (C, V) labels in score order
    new_group = torch.ones_like(pos)
    new_group[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    group = torch.cumsum(new_group, dim=1) - 1 + torch.arange(c)[:, None] * v  # tie groups, unique per row
    pos_in = torch.bincount(group.flatten(), weights=pos.flatten().double(), minlength=c * v).view(c, v)
    neg_in = torch.bincount(group.flatten(), weights=(~pos).flatten().double(), minlength=c * v).view(c, v)
    neg_below = torch.cumsum(neg_in, dim=1) - neg_in
    return (pos_in * (neg_below + neg_in / 2)).sum(1) / (n_pos * n_neg)


class _Accumulator:
    """Collects per-frame values into preallocated (T,) arrays."""

    def __init__(self, frames: int):
        self.frames = frames
        self.series: dict[str, np.ndarray] = {}

    def put(self, key: str, start: int, values: torch.Tensor | np.ndarray) -> None:
        if key not in self.series:
            self.series[key] = np.full(self.frames, np.nan)
        values = values.double().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
        self.series[key][start : start + len(values)] = values


def _nan_where_zero(numerator: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    return torch.where(count > 0, numerator / count.clamp_min(1), torch.tensor(float("nan")))


def _analyse_tensor(traj: Trajectory, name: str, dead: torch.Tensor, acc: _Accumulator,
                    per_token: dict[str, np.ndarray], chunk: int, progress: bool) -> None:
    """All per-frame metrics of one matrix. Rows are reordered live-then-dead once per chunk,
    so each token set is a contiguous slice (a view) rather than a masked copy."""
    view = traj[name]
    n = len(traj)
    steps = torch.as_tensor(traj.steps)
    order = torch.cat([torch.nonzero(~dead).flatten(), torch.nonzero(dead).flatten()])  # (V,)
    n_live = int((~dead).sum())
    sets = {}  # token set -> its rows after reordering
    if n_live:
        sets["live"] = slice(0, n_live)
    if n_live < len(order):
        sets["dead"] = slice(n_live, None)
    dead_sorted = torch.arange(len(order)) >= n_live  # labels in the reordered row order

    first = view[0][order]  # (V, D) bf16, reordered
    x0 = first.float()
    rel0 = {s: x0[sl] - x0[sl].mean(0) for s, sl in sets.items()}  # rows relative to their centroid at frame 0
    centroid0 = {s: x0[sl].mean(0) for s, sl in sets.items()}
    prev_f, prev_ord = x0, bf16_ordinal(first)
    last_moved = torch.zeros(len(order), dtype=torch.long)  # step of the last change; 0 = never moved
    bar = progress_bar(total=n, desc=f"analysing {name}", unit="frame", progress=progress, leave=False)
    for start in range(0, n, chunk):
        block = view[start : start + chunk][:, order]  # (C, V, D) bf16
        cur = block.float()
        before = torch.cat([prev_f[None], cur[:-1]])  # frame t - 1 for each t (frame 0 for frame 0)
        ords = bf16_ordinal(block)
        ulps = (ords - torch.cat([prev_ord[None], ords[:-1]])).abs_()  # (C, V, D) lattice steps moved
        changed = ulps != 0
        moved = changed.any(-1)  # (C, V)
        chunk_steps = steps[start : start + len(block)]
        last_moved = torch.where(moved.any(0), (moved * chunk_steps[:, None]).amax(0), last_moved)
        step_vec = cur - before  # (C, V, D)
        from_start = (cur - x0).norm(dim=-1)  # (C, V)
        step_norm = step_vec.norm(dim=-1)  # (C, V)
        for s, sl in sets.items():
            key = f"{name}/{s}"
            rows, rows_before = cur[:, sl], before[:, sl]  # views (C, n_s, D)
            c, c_before = rows.mean(1), rows_before.mean(1)  # (C, D)
            rel = rows - c[:, None]
            radius = rel.norm(dim=-1)  # (C, n_s)
            acc.put(f"{key}/displacement_mean", start, from_start[:, sl].mean(1))
            acc.put(f"{key}/displacement_max", start, from_start[:, sl].amax(1))
            acc.put(f"{key}/step_mean", start, step_norm[:, sl].mean(1))
            acc.put(f"{key}/step_max", start, step_norm[:, sl].amax(1))
            acc.put(f"{key}/centroid_drift", start, (c - centroid0[s]).norm(dim=-1))
            acc.put(f"{key}/radius_mean", start, radius.mean(1))
            acc.put(f"{key}/radius_max", start, radius.amax(1))
            acc.put(f"{key}/comoving_mean", start, (rel - rel0[s]).norm(dim=-1).mean(1))
            # radial / tangential parts of each step, relative to the previous frame's cloud
            outward = rows_before - c_before[:, None]  # (C, n_s, D)
            unit = outward / outward.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            step_s = step_vec[:, sl]
            radial = (step_s * unit).sum(-1)  # (C, n_s), signed: > 0 is outward
            tangential = (step_s - radial[..., None] * unit).norm(dim=-1)
            moving = moved[:, sl]
            n_moving = moving.sum(1)
            acc.put(f"{key}/radial_mean", start, radial.mean(1))
            acc.put(f"{key}/tangential_mean", start, tangential.mean(1))
            acc.put(f"{key}/outward_fraction", start, _nan_where_zero(((radial > 0) & moving).sum(1), n_moving))
            # bf16 lattice
            ch, u = changed[:, sl], ulps[:, sl]
            n_changed = ch.sum((1, 2))
            acc.put(f"{key}/changed_fraction", start, n_changed / ch[0].numel())
            acc.put(f"{key}/moved_fraction", start, moving.float().mean(1))
            acc.put(f"{key}/changed_ulps_mean", start, _nan_where_zero(u.sum((1, 2)), n_changed))
            acc.put(f"{key}/one_ulp_fraction", start, _nan_where_zero((u == 1).sum((1, 2)), n_changed))
        # Magikarp-style indicator: cosine of each row to the mean dead row
        if len(sets) == 2:
            dead_mean = cur[:, n_live:].mean(1)  # (C, D)
            cosine = torch.bmm(cur, dead_mean[:, :, None])[..., 0] / (
                cur.norm(dim=-1) * dead_mean.norm(dim=-1, keepdim=True)).clamp_min(1e-30)  # (C, V)
            acc.put(f"{name}/indicator_auroc", start, batched_auroc(cosine, dead_sorted))
            if start + len(block) == n:
                per_token[f"{name}/indicator_cosine"] = _unorder(cosine[-1], order).numpy()
        if start + len(block) == n:
            per_token[f"{name}/displacement"] = _unorder(from_start[-1], order).numpy()
        prev_f, prev_ord = cur[-1], ords[-1]
        bar.update(len(block))
    bar.close()
    per_token[f"{name}/last_moved_step"] = _unorder(last_moved, order).numpy()


def _unorder(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-token values in reordered rows -> token id order."""
    out = torch.empty_like(values)
    out[order] = values
    return out


def _analyse_difference(traj: Trajectory, masks: dict[str, torch.Tensor], acc: _Accumulator, chunk: int) -> None:
    """Untied runs: ‖E − W‖_F per frame, all tokens and per set."""
    e, w = traj["E"], traj["W"]
    for start in range(0, len(traj), chunk):
        diff = e[start : start + chunk].float() - w[start : start + chunk].float()  # (C, V, D)
        acc.put("E-W/all/frobenius", start, diff.square().sum((1, 2)).sqrt())
        for s, m in masks.items():
            acc.put(f"E-W/{s}/frobenius", start, diff[:, m].square().sum((1, 2)).sqrt())


def analyse(path, chunk: int = DEFAULT_CHUNK, progress: bool = False) -> Analysis:
    """Every metric of this module for the trajectory at `path`, in bounded memory."""
    with Trajectory(path) as traj:
        n = len(traj)
        if n < 1:
            raise ValueError(f"{path} has no complete frame to analyse.")
        tensors = [t for t in ("E", "W") if t in traj.names and not (traj.tied and t == "E")]
        if not tensors:
            raise ValueError(f"{path} records neither E nor W: nothing to analyse. Recorded: {', '.join(traj.names)}.")
        dead = torch.as_tensor(traj.dead_mask)
        masks = {"dead": dead, "live": ~dead}
        acc = _Accumulator(n)
        per_token: dict[str, np.ndarray] = {"dead_mask": dead.numpy()}
        tables = traj.token_tables()
        if tables is not None and tables.first_input_step is not None:  # files from before 2026-11-23 lack it
            per_token["never_input_mask"] = tables.first_input_step < 0
        for name in tensors:
            _analyse_tensor(traj, name, dead, acc, per_token, chunk, progress)
        if tensors == ["E", "W"]:
            _analyse_difference(traj, masks, acc, chunk)
        meta = traj.meta
        return Analysis(str(path), traj.steps, traj.tied, tensors, int(dead.sum()), int((~dead).sum()),
                        acc.series, per_token, run=run_label(meta, path), record_every=int(meta["record_every"]),
                        training={k: traj[k][:].astype(np.float64) for k in TRAINING if k in traj.names})


def run_label(meta: dict, path) -> str:
    """The run's name, scale and overrides as its metadata records them (older files: the file name)."""
    details = [f"scale {meta['scale']}"] if "scale" in meta else []
    details += list(meta.get("overrides", []))
    name = meta.get("scenario_name", Path(str(path)).stem)
    return f"{name} ({'; '.join(details)})" if details else name


# --------------------------------------------------------------------------- summaries


def summarize(a: Analysis) -> dict:
    """The findings as plain numbers (what report.json holds)."""
    out: dict = {"path": a.path, "run": a.run, "frames": int(len(a.steps)), "last_step": int(a.steps[-1]),
                 "record_every": a.record_every, "tied": a.tied, "dead_tokens": a.n_dead, "live_tokens": a.n_live,
                 "tensors": {}}
    finite = {k: v[np.isfinite(v)] for k, v in a.training.items()}
    out["training"] = {k: {"first": float(v[0]), "last": float(v[-1])} for k, v in finite.items() if v.size}
    dead = a["dead_mask"]
    token_sets = [("dead", dead), ("live", ~dead)]
    if "never_input_mask" in a.per_token:  # live tokens that no batch of the run feeds in (rare ones)
        unfed = ~dead & a["never_input_mask"]
        out["live_never_input_tokens"] = int(unfed.sum())
        token_sets.append(("live_never_input", unfed))
    for name in a.tensors:
        t: dict = {}
        for s in SETS:
            key = f"{name}/{s}"
            if f"{key}/radius_mean" not in a.series:
                continue
            radius, outward = a[f"{key}/radius_mean"], a[f"{key}/outward_fraction"][1:]
            t[s] = {
                "final_displacement_mean": float(a[f"{key}/displacement_mean"][-1]),
                "final_comoving_mean": float(a[f"{key}/comoving_mean"][-1]),
                "radius_start": float(radius[0]),
                "radius_final": float(radius[-1]),
                "radius_dip": radius_dips_before_growing(radius),
                "centroid_drift_final": float(a[f"{key}/centroid_drift"][-1]),
                "outward_fraction_mean": float(np.nanmean(outward)) if np.isfinite(outward).any() else None,
                "changed_fraction_last": float(a[f"{key}/changed_fraction"][-1]),
            }
        frozen = a[f"{name}/last_moved_step"]
        t["last_moved_step"] = {
            s: {"never_moved": int((frozen[m] == 0).sum()), "median": float(np.median(frozen[m])),
                "max": int(frozen[m].max())}
            for s, m in token_sets if m.any()
        }
        if f"{name}/indicator_auroc" in a.series:
            auc = a[f"{name}/indicator_auroc"]
            t["indicator_auroc"] = {"first": float(auc[0]), "last": float(auc[-1]), "max": float(np.nanmax(auc))}
        out["tensors"][name] = t
    if "E-W/all/frobenius" in a.series:
        out["E_minus_W"] = {s: float(a[f"E-W/{s}/frobenius"][-1]) for s in ("all", *SETS)}
    return out

