"""Live-token flux through the dead cloud.

Definition: at each recorded frame the dead cloud's ball is centred on the mean dead row and
has radius `radius` of the dead rows' distances from it (default "p90", the 90th percentile;
"mean", "median", "max" or "pNN" too); a live token *enters* at a frame if its row is inside the
ball (distance <= radius) at that frame and was outside the previous frame's ball, and *exits*
if the reverse.

The ball moves and breathes with the cloud, so a live token at rest can be swept in or out;
that counts, since it is what "live tokens inside the dead cloud" means frame by frame. With
record.every > 1 a token that enters and leaves between two frames is not seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.dynamics.stream import DEFAULT_CHUNK, Source, matrix_name, numbers, opened, rows_of

DEFAULT_RADIUS = "p90"


@dataclass
class Flux:
    entries_total: int
    exits_total: int
    inside_first: int  # live tokens inside the ball at the first frame
    inside_last: int
    inside_max: int
    radius_statistic: str
    n_live: int
    n_dead: int
    tensor: str
    steps: np.ndarray  # (T,)
    inside: np.ndarray  # (T,) int64 live tokens inside the ball
    entries: np.ndarray  # (T,) int64, 0 at frame 0
    exits: np.ndarray  # (T,) int64, 0 at frame 0
    radius: np.ndarray  # (T,) float64, the ball's radius

    def to_dict(self) -> dict:
        return numbers(self)


def ball_radius(distances: torch.Tensor, statistic: str) -> torch.Tensor:
    """The ball's radius from the dead rows' distances (C, n) -> (C,)."""
    if statistic == "mean":
        return distances.mean(1)
    if statistic == "median":
        return distances.quantile(0.5, dim=1)
    if statistic == "max":
        return distances.amax(1)
    if statistic.startswith("p") and statistic[1:].replace(".", "", 1).isdigit() and 0 <= float(statistic[1:]) <= 100:
        return distances.quantile(float(statistic[1:]) / 100, dim=1)
    raise ValueError(f"flux: radius = {statistic!r}: expected mean, median, max or pNN (a percentile, e.g. p90).")


def flux(path: Source, tensor: str = "W", radius: str = DEFAULT_RADIUS, chunk: int = DEFAULT_CHUNK) -> Flux:
    """Live tokens entering and leaving the dead cloud's ball per frame (the module's definition), streamed."""
    ball_radius(torch.zeros(1, 1), radius)  # a bad statistic fails before the file is read
    with opened(path) as traj:
        name = matrix_name(traj, tensor)
        dead, live = rows_of(traj, "dead"), rows_of(traj, "live")
        steps = traj.steps
        n = len(traj)
        inside = np.zeros(n, dtype=np.int64)
        entries, exits = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        radii = np.zeros(n)
        was: torch.Tensor | None = None  # (n_live,) bool: inside at the previous frame
        for start, block in traj.iter_frames(name, chunk=chunk):
            x = block.float()  # (C, V, D)
            dead_rows, live_rows = x[:, dead], x[:, live]
            centre = dead_rows.mean(1, keepdim=True)  # (C, 1, D)
            r = ball_radius((dead_rows - centre).norm(dim=-1), radius)  # (C,)
            now = (live_rows - centre).norm(dim=-1) <= r[:, None]  # (C, n_live)
            before = torch.cat([now[:1] if was is None else was[None], now[:-1]])
            span = slice(start, start + len(block))
            inside[span] = now.sum(1).numpy()
            entries[span] = (now & ~before).sum(1).numpy()
            exits[span] = (~now & before).sum(1).numpy()
            radii[span] = r.double().numpy()
            was = now[-1]
    return Flux(int(entries.sum()), int(exits.sum()), int(inside[0]), int(inside[-1]), int(inside.max()), radius,
                len(live), len(dead), tensor, steps, inside, entries, exits, radii)
