"""Per-token tables a trajectory file carries beside its frames (under /tokens/)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPTIONAL_TABLES = ("input_counts", "first_input_step")  # absent from files recorded before 2026-11-23


@dataclass
class TokenTables:
    dead_mask: np.ndarray  # (vocab,) bool: never in the training corpus
    counts: np.ndarray  # (vocab,) int64: occurrences in the corpus
    strings: list[str]  # (vocab,)
    input_counts: np.ndarray | None = None  # (vocab,) int64: input positions over the run's batches
    first_input_step: np.ndarray | None = None  # (vocab,) int64: first step with the token as input; -1 never
