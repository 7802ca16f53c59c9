"""Inhale: the dead cloud contracting before it expands ("the inhale before the sneeze").

Definition: the dead cloud's mean radius (mean distance of the dead rows from their centroid)
*inhales* if it falls below its step-0 value at some recorded frame before the first frame at
which it exceeds that value (and such a frame comes); its depth is 1 − (smallest radius before
that frame) / (step-0 radius), and its timing the step of the first frame below the start, the
step of the minimum, and the number of consecutive frames below the start from the first one.

With `center = "origin"` the radius is the dead rows' mean distance from the origin (their
mean norm) instead: the lab log's two-step inhale is in that quantity (docs/findings.md).

The radius and the dip test are harness.checks.measures' (`cloud_radius`,
`radius_dips_before_growing`), the same the `radius_dips_before_growing` check and the sweep
aggregate read. A cloud that shrinks and never exceeds its start has not inhaled (no sneeze
followed: a run too short, or a cloud that only contracts); its dip is still described
(depth, timing), with `happened` false and `first_growth_step` None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.checks.measures import cloud_radius, radius_dips_before_growing
from harness.checks.registry import TokenSet
from harness.dynamics.stream import DEFAULT_CHUNK, Source, matrix_name, numbers, opened, rows_of


@dataclass
class Inhale:
    happened: bool  # a dip below the start, then a frame above it
    depth: float  # 1 − min radius / start radius before the first growth (0 if no dip)
    first_dip_step: int | None  # the first frame below the start
    min_step: int | None  # the frame of the minimum
    dip_frames: int  # consecutive frames below the start, from the first dip
    first_growth_step: int | None  # the first frame above the start; None: never
    radius_start: float
    tensor: str
    tokens: str
    steps: np.ndarray  # (T,)
    radius: np.ndarray  # (T,) mean radius of the cloud
    center: str = "centroid"  # the radius is measured from the cloud's centroid, or from the origin

    def to_dict(self) -> dict:
        return numbers(self)


def inhale_of(steps: np.ndarray, radius: np.ndarray, tensor: str = "W", tokens: str = "dead",
              center: str = "centroid") -> Inhale:
    """The inhale of a radius series (T,) recorded at `steps` (T,), measured from `center`."""
    dip = radius_dips_before_growing(radius)
    growth = dip["first_growth_frame"]
    end = len(radius) if growth is None else growth
    below = np.flatnonzero(radius[:end] < radius[0])
    if not below.size:
        return Inhale(False, 0.0, None, None, 0, None if growth is None else int(steps[growth]), float(radius[0]),
                      tensor, tokens, steps, radius, center)
    first = int(below[0])
    run = np.flatnonzero(np.diff(below) != 1)  # breaks in the run of consecutive dip frames
    length = int(run[0] + 1) if run.size else len(below)
    return Inhale(bool(dip["dips"]), -dip["min_relative"], int(steps[first]), int(steps[dip["min_frame"]]), length,
                  None if growth is None else int(steps[growth]), float(radius[0]), tensor, tokens, steps, radius, center)


def inhale(path: Source, tensor: str = "W", tokens: TokenSet = "dead", chunk: int = DEFAULT_CHUNK,
           center: str = "centroid") -> Inhale:
    """Whether, how deep and when the `tokens` cloud contracts before it first expands (the module's
    definition); its radius measured from its centroid, or from the origin (cloud_radius checks `center`)."""
    with opened(path) as traj:
        radius = cloud_radius(traj, matrix_name(traj, tensor), rows_of(traj, tokens), chunk, center)
        return inhale_of(traj.steps, radius, tensor, str(tokens), center)
