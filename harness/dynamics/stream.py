"""Reading a trajectory for the dynamics definitions: which matrix, which rows, the step
gaps, consecutive frames streamed in chunks (memory bounded by `chunk` frames of the
selected rows, whatever the run's length).

The token sets and the chunk size are harness.checks.measures' (`token_ids`, DEFAULT_CHUNK).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import fields
from typing import Iterator

import numpy as np
import torch

from core.trajectory import Trajectory
from harness.checks.measures import DEFAULT_CHUNK, token_ids
from harness.checks.registry import TokenSet

__all__ = ["DEFAULT_CHUNK", "Source", "consecutive_frames", "matrix_name", "numbers", "opened", "rows_of", "step_gaps"]

Source = str | os.PathLike | Trajectory  # a trajectory file, or one already open (the checks pass theirs)


@contextmanager
def opened(source: Source) -> Iterator[Trajectory]:
    """The trajectory `source` names, opened for the with-block (closed after it unless it came open)."""
    if isinstance(source, Trajectory):
        yield source
        return
    with Trajectory(source) as traj:
        yield traj


def matrix_name(traj: Trajectory, tensor: str) -> str:
    """`tensor` as the file stores it: "W" or "E" (a tied run stores one and answers to both)."""
    if tensor in traj:
        return tensor
    raise KeyError(f"{traj.path} has no {tensor!r} to analyse. Recorded: {', '.join(traj.names)}.")


def rows_of(traj: Trajectory, tokens: TokenSet) -> np.ndarray:
    """Token ids of a token set ("dead", "live", "all", "never_input" or ids); an empty set is an error."""
    ids = token_ids(traj, tokens)
    if not len(ids):
        raise ValueError(f"{traj.path}: the token set {tokens!r} is empty: nothing to measure.")
    return ids


def step_gaps(steps: np.ndarray) -> np.ndarray:
    """Optimizer steps between each frame and the one before: (T,) float64, NaN at frame 0.
    A per-frame change divided by this is a change per optimizer step (record.every > 1)."""
    gaps = np.full(len(steps), np.nan)
    gaps[1:] = np.diff(steps.astype(np.float64))
    return gaps


def consecutive_frames(traj: Trajectory, name: str, ids: np.ndarray | None = None, chunk: int = DEFAULT_CHUNK
                       ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(first frame, block (C, n, D) bf16, the frames before it (C, n, D) bf16) over the whole file:
    frame t beside frame t - 1, frame 0 beside itself. `ids` None: every row."""
    before_first: torch.Tensor | None = None
    for start, block in traj.iter_frames(name, chunk=chunk, tokens=ids):
        head = block[:1] if before_first is None else before_first[None]
        yield start, block, torch.cat([head, block[:-1]])
        before_first = block[-1]


def numbers(result) -> dict:
    """A result dataclass's fields that are not numpy arrays (its per-frame and per-token series):
    what its `to_dict()` gives for JSON."""
    return {f.name: getattr(result, f.name) for f in fields(result)
            if not isinstance(getattr(result, f.name), np.ndarray)}
