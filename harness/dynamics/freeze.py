"""Freeze: when each dead token stops moving, and whether the cloud stops all at once.

Definition: a dead token's freeze step is the last recorded step at which its row changed at
all (any bit of any coordinate, against the frame before), it is frozen if it changed at least
once and its freeze step is before the run's last recorded step, and the cloud freezes
*abruptly* if the 10-90 % range of the frozen tokens' freeze steps is at most `abrupt_below`
(default 0.1) of the run's length in steps, *progressively* otherwise.

A token still changing at the last frame has no freeze step yet: it counts in `still_moving`,
not in the spread (so a run cut short does not look abrupt); a token that never changed (freeze
step 0, e.g. a dead row of E without weight decay) counts in `never_moved`, not in the spread
(so a cloud that never moved does not look abrupt either). With record.every > 1 a freeze
step is known to within the recording interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.trajectory import Trajectory
from harness.checks.registry import TokenSet
from harness.dynamics.stream import DEFAULT_CHUNK, Source, consecutive_frames, matrix_name, numbers, opened, rows_of

DEFAULT_ABRUPT_BELOW = 0.1  # 10-90 % range of freeze steps / run length
DEFAULT_BINS = 20  # histogram of freeze steps over the run


@dataclass
class Freeze:
    pattern: str  # "abrupt" | "progressive" | "none frozen"
    n_tokens: int
    n_frozen: int  # moved, then stopped before the last recorded step
    still_moving: int  # changed at the last recorded frame
    never_moved: int  # freeze step 0
    run_steps: int  # last recorded step − first
    median_step: float | None  # of the frozen tokens' freeze steps
    iqr_relative: float | None  # (p75 − p25) / run_steps
    range_10_90_relative: float | None  # (p90 − p10) / run_steps: the simultaneity statistic
    abrupt_below: float
    tensor: str
    tokens: str
    histogram_edges: list[float]  # (bins + 1,) steps
    histogram_counts: list[int]  # (bins,) frozen tokens whose freeze step falls in each bin
    token_ids: np.ndarray  # (n,) the tokens measured
    freeze_steps: np.ndarray  # (n,) int64, each token's last change step (0: never)
    steps: np.ndarray  # (T,) optimizer step of each frame
    moving_fraction: np.ndarray  # (T,) share of the tokens whose row changed at each frame (0 at frame 0)

    def to_dict(self) -> dict:
        return numbers(self)


def last_change_steps(traj: Trajectory, name: str, ids: np.ndarray, chunk: int = DEFAULT_CHUNK
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `ids`, the last step its bits changed (0: never): (n,) int64; and the share of
    rows that changed at each frame: (T,) float64. Streams."""
    steps = torch.as_tensor(traj.steps)
    last = torch.zeros(len(ids), dtype=torch.int64)
    moving = np.zeros(len(traj))
    for start, block, before in consecutive_frames(traj, name, ids, chunk):
        changed = (block.view(torch.int16) != before.view(torch.int16)).any(-1)  # (C, n)
        when = torch.where(changed, steps[start : start + len(block), None], 0).amax(0)  # (n,)
        last = torch.maximum(last, when)
        moving[start : start + len(block)] = changed.double().mean(1).numpy()
    return last.numpy(), moving


def freeze(path: Source, tensor: str = "W", abrupt_below: float = DEFAULT_ABRUPT_BELOW, tokens: TokenSet = "dead",
           bins: int = DEFAULT_BINS, chunk: int = DEFAULT_CHUNK) -> Freeze:
    """Freeze steps of the `tokens` rows and the simultaneity statistic (the module's definition)."""
    with opened(path) as traj:
        name = matrix_name(traj, tensor)
        ids = rows_of(traj, tokens)
        steps = traj.steps
        last, moving = last_change_steps(traj, name, ids, chunk)
    first_step, last_step = int(steps[0]), int(steps[-1])
    run = max(last_step - first_step, 1)
    frozen = last[(last > 0) & (last < last_step)]
    edges = np.linspace(first_step, last_step, bins + 1)
    counts = np.histogram(frozen, bins=edges)[0] if len(steps) > 1 else np.zeros(bins, dtype=np.int64)
    if frozen.size:
        p10, p25, p50, p75, p90 = np.percentile(frozen, [10, 25, 50, 75, 90])
        spread = float((p90 - p10) / run)
        stats = (float(p50), float((p75 - p25) / run), spread)
        pattern = "abrupt" if spread <= abrupt_below else "progressive"
    else:
        stats, pattern = (None, None, None), "none frozen"
    return Freeze(pattern, len(ids), int(frozen.size), int((last >= last_step).sum()) if len(steps) > 1 else 0,
                  int((last == 0).sum()), last_step - first_step, *stats, abrupt_below, tensor, str(tokens),
                  edges.tolist(), counts.tolist(), ids, last, steps, moving)
