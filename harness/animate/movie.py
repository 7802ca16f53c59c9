"""`animate`: a trajectory's token cloud as a movie, streamed frame by frame.

Three passes over the frames the movie shows, each holding one frame (V x D) at a time:
fit the projection (harness.animate.projection; frame 0 alone, or a covariance summed over
every frame shown), find fixed axis limits over all of them, then draw each frame with
matplotlib's Agg canvas and append it to the movie file (harness.animate.writers). Memory
does not grow with the run's length; the movie file is written to a temporary name beside
the target and renamed when complete, so a failure never leaves half a movie.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from core.trajectory import Trajectory  # noqa: E402
from harness.animate.projection import Projection, axis_limits, fit_projection, frame_rows  # noqa: E402
from harness.animate.writers import check_format, open_writer  # noqa: E402
from harness.progress import progress_bar  # noqa: E402

log = logging.getLogger(__name__)

COLORS = {"dead": "tab:red", "live": "tab:blue"}


@dataclass
class MovieConfig:
    stride: int = 1  # one movie frame per `stride` recorded frames (the last frame is always shown)
    tensor: str = "W"  # the matrix drawn: W, or E (an untied run's input embedding)
    projection: str = "frame0"  # "frame0": PCA of frame 0; "all": PCA of every frame shown
    fps: float = 10.0
    size_px: int = 640  # the movie is size_px x size_px
    marker_size: float = 2.0  # points^2 per token

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"--stride {self.stride}: must be >= 1")
        if not self.fps > 0:
            raise ValueError(f"--fps {self.fps}: must be > 0")


@dataclass
class Movie:
    path: Path
    frames: list[int]  # the recorded frames shown, in order
    projection: Projection
    limits: tuple[tuple[float, float], tuple[float, float]]


def shown_frames(n_frames: int, stride: int) -> list[int]:
    """Every `stride`-th recorded frame from frame 0, and the last one."""
    frames = list(range(0, n_frames, stride))
    if frames and frames[-1] != n_frames - 1:
        frames.append(n_frames - 1)
    return frames


def corner_text(step: int, loss: float | None) -> str:
    """"step 40\nloss 7.9869"; loss None: the run does not record it; NaN (frame 0): before any step."""
    if loss is None:
        return f"step {step}\nloss not recorded"
    return f"step {step}\nloss {loss:.4f}" if math.isfinite(loss) else f"step {step}\nloss –"


def default_movie_path(run: Path) -> Path:
    return run.with_suffix(".gif")


class _Canvas:
    """One matplotlib figure, redrawn for every frame: two scatters and a corner text."""

    def __init__(self, title: str, projection: Projection, limits, n_dead: int, n_live: int, config: MovieConfig):
        inches = config.size_px / 100
        self.fig = Figure(figsize=(inches, inches), dpi=100, layout="constrained")
        self.canvas = FigureCanvasAgg(self.fig)
        ax = self.fig.add_subplot()
        empty = np.empty((0, 2))
        # live first, so the dead cloud is drawn on top of it
        self.live = ax.scatter(*empty.T, s=config.marker_size, c=COLORS["live"], alpha=0.5, linewidths=0,
                               label=f"live ({n_live:,})")
        self.dead = ax.scatter(*empty.T, s=config.marker_size, c=COLORS["dead"], alpha=0.7, linewidths=0,
                               label=f"dead ({n_dead:,})")
        ax.set(xlim=limits[0], ylim=limits[1],
               xlabel=f"PC1 ({projection.explained[0]:.0%} of variance)",
               ylabel=f"PC2 ({projection.explained[1]:.0%} of variance)")
        ax.set_title(f"{title}\n{projection.description}", fontsize="small")
        ax.legend(loc="upper right", fontsize="small", markerscale=4)
        self.text = ax.text(0.02, 0.98, "", transform=ax.transAxes, va="top", ha="left", family="monospace",
                            fontsize="small", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})

    def draw(self, dead_xy: np.ndarray, live_xy: np.ndarray, corner: str) -> np.ndarray:
        """The frame as (H, W, 3) uint8."""
        self.dead.set_offsets(dead_xy)
        self.live.set_offsets(live_xy)
        self.text.set_text(corner)
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()


def animate(run: str | Path, out: str | Path | None = None, config: MovieConfig | None = None,
            progress: bool = False) -> Movie:
    """Write the movie of `run`'s token cloud to `out` (default: beside the run, .gif)."""
    config = config or MovieConfig()
    run = Path(run)
    out = Path(out) if out is not None else default_movie_path(run)
    check_format(out)
    with Trajectory(run) as traj:
        if len(traj) < 1:
            raise ValueError(f"{run} has no complete frame to draw.")
        view = traj[config.tensor]  # a KeyError naming the file and what it records
        if len(view.shape) != 3:
            raise ValueError(f"{run}: {config.tensor} is not a (frames, tokens, dim) matrix; draw E or W")
        dead = traj.dead_mask
        steps = traj.steps
        loss = traj["loss"] if "loss" in traj else None
        frames = shown_frames(len(traj), config.stride)
        projection = fit_projection(view, frames, steps, config.projection)
        limits = axis_limits(view, frames, projection)
        canvas = _Canvas(run.stem, projection, limits, int(dead.sum()), int((~dead).sum()), config)
        partial = out.with_name(f".{out.stem}.partial{out.suffix}")
        writer = open_writer(partial, config.fps)
        try:
            for f in progress_bar(frames, desc=f"animating {run.name}", unit="frame", progress=progress, leave=False):
                xy = projection.apply(frame_rows(view, f))  # (V, 2)
                corner = corner_text(int(steps[f]), None if loss is None else float(loss[f]))
                writer.append(canvas.draw(xy[dead], xy[~dead], corner))
            writer.close()
            os.replace(partial, out)
        except BaseException:
            writer.close()
            partial.unlink(missing_ok=True)
            raise
    log.info("movie of %s: %d frames -> %s", run, len(frames), out)
    return Movie(out, frames, projection, limits)
