"""Outward share of dead steps, over time.

Definition: at each recorded frame t, of the dead rows whose bits changed since frame t − 1,
the outward share is the fraction whose step x_t − x_{t−1} has a positive dot product with
x_{t−1} − c_{t−1}, where c_{t−1} is the dead rows' centroid at frame t − 1 (chance, for a walk
with no radial preference: 0.5); a window's share pools every moving step in it (outward
steps / moving steps), so a frame where few rows move weighs little.

With `center = "origin"` the same count uses x_{t−1} itself (a step away from the origin, the
lab log's "outward" on the surface of a shell about the origin) instead of x_{t−1} − c_{t−1}.

A step exactly tangential (dot product 0) counts as not outward. The centroid is the previous
frame's, so a cloud that only drifts as a whole (every row the same step) scores about one half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.trajectory import Trajectory
from harness.checks.measures import center_of, checked_center
from harness.checks.registry import TokenSet
from harness.dynamics.stream import DEFAULT_CHUNK, Source, consecutive_frames, matrix_name, numbers, opened, rows_of

DEFAULT_WINDOWS = 10  # equal spans of the run's steps in the windowed summary


@dataclass
class OutwardShare:
    share: float | None  # pooled over the whole run: outward steps / moving steps; None: nothing moved
    outward_steps: int
    moving_steps: int
    window_edges: list[int]  # (windows + 1,) steps; window k holds frames with edges[k] < step <= edges[k+1]
    window_share: list[float | None]  # (windows,) pooled share in each window
    window_moving: list[int]  # (windows,) moving steps in each window
    tensor: str
    tokens: str
    steps: np.ndarray  # (T,)
    outward: np.ndarray  # (T,) int64 outward steps at each frame (0 at frame 0)
    moving: np.ndarray  # (T,) int64 rows that changed at each frame
    center: str = "centroid"  # outward from the previous frame's centroid, or from the origin

    @property
    def series(self) -> np.ndarray:
        """(T,) the per-frame share; NaN where no row moved."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.moving > 0, self.outward / np.maximum(self.moving, 1), np.nan)

    def share_between(self, first_step: int = 0, last_step: int = -1) -> tuple[float | None, int]:
        """(pooled share, moving steps) over the frames with first_step < step <= last_step (-1: the end)."""
        last = self.steps[-1] if last_step == -1 else last_step
        keep = (self.steps > first_step) & (self.steps <= last)
        moving = int(self.moving[keep].sum())
        return (float(self.outward[keep].sum() / moving) if moving else None), moving

    def to_dict(self) -> dict:
        return numbers(self)


def outward_counts(traj: Trajectory, name: str, ids: np.ndarray, chunk: int = DEFAULT_CHUNK,
                   center: str = "centroid") -> tuple[np.ndarray, np.ndarray]:
    """(outward steps (T,), moving rows (T,)) of the `ids` rows per frame, int64, outward from the
    previous frame's centroid of those rows or from the origin. Streams."""
    outward, moving = np.zeros(len(traj), dtype=np.int64), np.zeros(len(traj), dtype=np.int64)
    for start, block, before in consecutive_frames(traj, name, ids, chunk):
        changed = (block.view(torch.int16) != before.view(torch.int16)).any(-1)  # (C, n)
        prev = before.float()
        radial = ((block.float() - prev) * (prev - center_of(prev, center))).sum(-1)  # (C, n), > 0 outward
        outward[start : start + len(block)] = ((radial > 0) & changed).sum(1).numpy()
        moving[start : start + len(block)] = changed.sum(1).numpy()
    return outward, moving


def outward_share(path: Source, tensor: str = "W", windows: int = DEFAULT_WINDOWS, tokens: TokenSet = "dead",
                  chunk: int = DEFAULT_CHUNK, center: str = "centroid") -> OutwardShare:
    """The outward share of the `tokens` rows' steps, per frame and per window (the module's
    definition), outward from the previous frame's centroid or from the origin."""
    if windows < 1:
        raise ValueError(f"outward_share: windows = {windows!r}: expected at least 1.")
    checked_center(center)
    with opened(path) as traj:
        name = matrix_name(traj, tensor)
        steps = traj.steps
        outward, moving = outward_counts(traj, name, rows_of(traj, tokens), chunk, center)
    total = int(moving.sum())
    out = OutwardShare(float(outward.sum() / total) if total else None, int(outward.sum()), total, [], [], [],
                       tensor, str(tokens), steps, outward, moving, center)
    edges = np.unique(np.linspace(steps[0], steps[-1], windows + 1).round().astype(np.int64))
    for lo, hi in zip(edges[:-1], edges[1:]):
        share, n = out.share_between(int(lo), int(hi))
        out.window_share.append(share)
        out.window_moving.append(n)
    out.window_edges = edges.tolist()
    return out
