"""What checks measure on a trajectory, shared with the report and the sweeps: the ids of a
token set, the radius of a token cloud per frame, whether that radius dips before it grows, and
the position of bf16 values on the bf16 lattice (for distances in ULPs).

The report layer (harness.report.analysis) and the sweep aggregates (harness.sweep.expect)
import these from here; the checks import nothing of theirs.
"""

from __future__ import annotations

import numpy as np
import torch

from core.trajectory import Trajectory
from harness.checks.registry import TokenSet

DEFAULT_CHUNK = 16  # frames held at once: 16 x 10,000 x 64 float32 = 41 MB per working copy

# Where a cloud's radius and its rows' outward steps are measured from: the cloud's own centroid
# (default), or the origin of the embedding space (the lab log's "surface of a little shell").
CENTERS = ("centroid", "origin")


def token_ids(traj: Trajectory, tokens: TokenSet) -> np.ndarray:
    if tokens == "dead":
        return traj.dead
    if tokens == "live":
        return traj.live
    if tokens == "all":
        return np.arange(traj.meta["vocab_size"])
    if tokens == "never_input":
        return traj.never_input
    return np.asarray(tokens, dtype=np.int64)


def checked_center(center: str) -> str:
    """`center` if it names one of CENTERS; else a ValueError naming the choices."""
    if center not in CENTERS:
        raise ValueError(f"center = {center!r}: expected one of {', '.join(CENTERS)}")
    return center


def center_of(rows: torch.Tensor, center: str) -> torch.Tensor:
    """The point each frame's rows are measured from: rows (C, n, D) -> (C, 1, D), their mean
    (center "centroid") or zeros ("origin")."""
    if checked_center(center) == "origin":
        return torch.zeros_like(rows[:, :1])
    return rows.mean(1, keepdim=True)


def cloud_radius(traj: Trajectory, name: str, ids: np.ndarray, chunk: int = DEFAULT_CHUNK,
                 center: str = "centroid") -> np.ndarray:
    """Mean distance of the `ids` rows of `name` from their centroid (or the origin), per frame: (T,). Streams."""
    checked_center(center)
    out = np.empty(len(traj))
    for start, block in traj.iter_frames(name, chunk=chunk, tokens=ids):
        rows = block.float()  # (C, n, D)
        out[start : start + len(rows)] = (rows - center_of(rows, center)).norm(dim=-1).mean(1).double().numpy()
    return out


def radius_dips_before_growing(radius: np.ndarray) -> dict:
    """Does the cloud radius shrink below its start before it exceeds it ("the inhale before the
    sneeze")? radius (T,): the minimum before the first frame above radius[0], and where."""
    above = np.flatnonzero(radius > radius[0])
    end = int(above[0]) if above.size else len(radius)
    low = int(np.argmin(radius[:end]))  # end >= 1: frame 0 is never above itself
    return {"dips": bool(above.size and radius[low] < radius[0]), "min_frame": low,
            "min_relative": float(radius[low] / radius[0] - 1) if radius[0] else 0.0,
            "first_growth_frame": end if above.size else None}


def bf16_ordinal(x: torch.Tensor) -> torch.Tensor:
    """Integer position of each bf16 value on the bf16 lattice (monotonic in the value):
    the difference of two ordinals is the distance in ULPs. x bf16 -> int32.

    Positives map to their bit pattern m, negatives to -1 - m (one xor, no branch), so -0
    and +0 sit one apart: a sign flip of zero counts as one ULP."""
    bits = x.view(torch.int16)
    return (bits ^ ((bits >> 15) & 0x7FFF)).to(torch.int32)
