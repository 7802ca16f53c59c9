"""The fixed 2-D projection of a movie and its axis limits, each computed in one streamed pass.

A projection is the top two principal axes of the rows (tokens) of one matrix, either of
frame 0 alone or of every frame the movie shows (a covariance summed frame by frame, so
memory holds one frame and a D x D matrix, whatever the run's length). Axis signs are fixed
(the largest coordinate of each axis is positive), so a movie is the same every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.trajectory import TensorView

PROJECTIONS = ("frame0", "all")
MARGIN = 0.05  # share of the data range added on each side of the axis limits


@dataclass
class Projection:
    center: np.ndarray  # (D,) float64, subtracted before projecting
    axes: np.ndarray  # (D, 2) float64, orthonormal columns: PC1, PC2
    explained: np.ndarray  # (2,) share of the total variance along PC1 and PC2
    description: str  # what it is, for the figure: "PCA of frame 0 (step 0), W"

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """(V, D) rows -> (V, 2) coordinates."""
        return (rows - self.center) @ self.axes


def frame_rows(view: TensorView, frame: int) -> np.ndarray:
    """One frame of a matrix as float64 numpy: (V, D), the exact bf16 values."""
    return view[frame].float().numpy().astype(np.float64)


def principal_axes(count: int, total: np.ndarray, outer: np.ndarray, description: str) -> Projection:
    """The projection from row statistics: count rows, their sum (D,) and sum of outer products (D, D)."""
    center = total / count
    cov = outer / count - np.outer(center, center)  # (D, D)
    values, vectors = np.linalg.eigh(cov)  # ascending
    axes = vectors[:, ::-1][:, :2].copy()  # (D, 2)
    signs = np.sign(axes[np.abs(axes).argmax(0), [0, 1]])
    axes *= np.where(signs == 0, 1.0, signs)
    trace = values.sum()
    explained = values[::-1][:2] / trace if trace > 0 else np.zeros(2)
    return Projection(center, axes, explained, description)


def fit_projection(view: TensorView, frames: list[int], steps: np.ndarray, kind: str = "frame0") -> Projection:
    """PCA of frame 0 ("frame0") or of every frame in `frames` ("all"), streamed one frame at a time."""
    if kind not in PROJECTIONS:
        raise ValueError(f"projection {kind!r}: allowed: {', '.join(PROJECTIONS)}")
    used = [0] if kind == "frame0" else frames
    dim = view.shape[-1]
    total, outer, count = np.zeros(dim), np.zeros((dim, dim)), 0
    for f in used:
        rows = frame_rows(view, f)
        total += rows.sum(0)
        outer += rows.T @ rows
        count += len(rows)
    if kind == "frame0":
        description = f"PCA of frame 0 (step {int(steps[0])}), {view.name}"
    else:
        description = f"PCA of all {len(used)} frames shown (steps {int(steps[used[0]])}-{int(steps[used[-1]])}), {view.name}"
    return principal_axes(count, total, outer, description)


def axis_limits(view: TensorView, frames: list[int], projection: Projection) -> tuple[tuple[float, float], tuple[float, float]]:
    """((xmin, xmax), (ymin, ymax)) over every token of every frame shown, plus a margin."""
    low, high = np.full(2, np.inf), np.full(2, -np.inf)
    for f in frames:
        xy = projection.apply(frame_rows(view, f))
        finite = xy[np.isfinite(xy).all(1)]
        if len(finite):
            low, high = np.minimum(low, finite.min(0)), np.maximum(high, finite.max(0))
    if not np.isfinite(low).all():
        raise ValueError(f"{view.traj.path}: no finite {view.name} row in the frames shown: nothing to draw")
    pad = np.maximum((high - low) * MARGIN, 1e-12)
    return (float(low[0] - pad[0]), float(high[0] + pad[0])), (float(low[1] - pad[1]), float(high[1] + pad[1]))
