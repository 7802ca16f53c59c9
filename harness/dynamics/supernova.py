"""Supernova end.

Definition: the supernova ends at the first recorded step after which the dead cloud's speed
(the mean over dead rows of ‖x_t − x_{t−1}‖, divided by the optimizer steps between the two
frames) stays below `fraction` (default 0.1) of its peak over the run; None if it never does
(it is still above at the last frame, or nothing ever moved).

The speed is per optimizer step, so runs recorded every step and every N steps compare; a
run that ends while the cloud still moves fast has no end to report, however long it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.trajectory import Trajectory
from harness.checks.registry import TokenSet
from harness.dynamics.stream import (DEFAULT_CHUNK, Source, consecutive_frames, matrix_name, numbers, opened, rows_of,
                                     step_gaps)

DEFAULT_FRACTION = 0.1  # of the peak speed


@dataclass
class SupernovaEnd:
    end_step: int | None  # first recorded step after which the speed stays below threshold; None: never
    peak_step: int | None  # the step (frame) of the peak speed; None: nothing moved
    peak_speed: float  # largest mean ‖x_t − x_{t−1}‖ per optimizer step over the run
    threshold: float  # fraction × peak_speed
    fraction: float
    tensor: str
    tokens: str
    steps: np.ndarray  # (T,) optimizer step of each frame
    speed: np.ndarray  # (T,) mean step length per optimizer step; NaN at frame 0

    def to_dict(self) -> dict:
        settled = 0 if self.end_step is None else int((self.steps > self.end_step).sum())
        return {**numbers(self), "settled_frames": settled}


def cloud_speed(traj: Trajectory, name: str, ids: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Mean over the `ids` rows of ‖x_t − x_{t−1}‖ per optimizer step: (T,) float64, NaN at frame 0."""
    moved = np.zeros(len(traj))
    for start, block, before in consecutive_frames(traj, name, ids, chunk):
        moved[start : start + len(block)] = (block.float() - before.float()).norm(dim=-1).mean(1).double().numpy()
    return moved / step_gaps(traj.steps)


def end_of_motion(steps: np.ndarray, speed: np.ndarray, fraction: float) -> tuple[int | None, int | None, float]:
    """(end step, peak frame, threshold) for a speed series (T,) (NaN at frame 0): see the module's definition."""
    if len(speed) < 2 or not np.nanmax(speed[1:]) > 0:
        return None, None, 0.0
    peak = int(np.nanargmax(speed[1:])) + 1
    threshold = fraction * float(speed[peak])
    at_or_above = np.flatnonzero(speed[1:] >= threshold) + 1  # includes the peak
    last = int(at_or_above[-1])
    return (None if last == len(speed) - 1 else int(steps[last])), peak, threshold


def supernova_end(path: Source, tensor: str = "W", fraction: float = DEFAULT_FRACTION, tokens: TokenSet = "dead",
                  chunk: int = DEFAULT_CHUNK) -> SupernovaEnd:
    """When the dead cloud's motion settles (the module's definition), streamed."""
    if not 0 < fraction < 1:
        raise ValueError(f"supernova_end: fraction = {fraction!r}: expected a number in (0, 1).")
    with opened(path) as traj:
        name = matrix_name(traj, tensor)
        steps = traj.steps
        speed = cloud_speed(traj, name, rows_of(traj, tokens), chunk)
    end, peak, threshold = end_of_motion(steps, speed, fraction)
    return SupernovaEnd(end, None if peak is None else int(steps[peak]),
                        float(speed[peak]) if peak is not None else 0.0, threshold, fraction, tensor, str(tokens),
                        steps, speed)
