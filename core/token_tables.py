"""Per-token tables a trajectory file carries beside its frames (under /tokens/): written, read, and the
input tables computed from a run's batches."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import h5py
import numpy as np
import torch

from core.data import Batches
from core.h5read import TrajectoryFileError, reason

OPTIONAL_TABLES = ("input_counts", "first_input_step")  # absent from files recorded before 2026-11-23


@dataclass
class TokenTables:
    dead_mask: np.ndarray  # (vocab,) bool: never in the training corpus
    counts: np.ndarray  # (vocab,) int64: occurrences in the corpus
    strings: list[str]  # (vocab,)
    input_counts: np.ndarray | None = None  # (vocab,) int64: input positions over the run's batches
    first_input_step: np.ndarray | None = None  # (vocab,) int64: first step with the token as input; -1 never


class TokenTableViews:
    """The /tokens/ tables of an open trajectory file (`self.file`, `self.path`): a base of
    core.trajectory.Trajectory."""

    file: h5py.File
    path: Path

    def _tokens(self, name: str) -> np.ndarray:
        if f"tokens/{name}" not in self.file:
            why = " (recorded before the harness stored it: run the scenario again)" if name in OPTIONAL_TABLES else ""
            raise KeyError(f"{self.path} has no token table tokens/{name}{why}.")
        try:
            return self.file[f"tokens/{name}"][:]
        except (OSError, KeyError) as exc:  # damaged bytes (a truncated or overwritten file)
            raise TrajectoryFileError(f"Cannot read token table tokens/{name} of {self.path}: {reason(exc)}.") from exc

    @property
    def dead_mask(self) -> np.ndarray:
        return self._tokens("dead_mask").astype(bool)

    @property
    def dead(self) -> np.ndarray:
        """Ids of tokens that never occur in the training corpus."""
        return np.flatnonzero(self.dead_mask)

    @property
    def live(self) -> np.ndarray:
        return np.flatnonzero(~self.dead_mask)

    @property
    def counts(self) -> np.ndarray:
        return self._tokens("counts")

    @property
    def input_counts(self) -> np.ndarray:
        """(vocab,) input positions holding each token over the run's planned batches."""
        return self._tokens("input_counts")

    @property
    def first_input_step(self) -> np.ndarray:
        """(vocab,) the first optimizer step whose batch holds the token as an input; -1 never."""
        return self._tokens("first_input_step")

    @property
    def never_input(self) -> np.ndarray:
        """Ids of tokens no batch of the run feeds in (the dead ones, and live ones never drawn)."""
        return np.flatnonzero(self.first_input_step < 0)

    @property
    def strings(self) -> list[str]:
        return [s.decode() if isinstance(s, bytes) else s for s in self._tokens("strings")]

    def token_tables(self) -> TokenTables | None:
        """Every token table the file holds (None where it holds none: a file written without them)."""
        if "tokens/dead_mask" not in self.file:
            return None
        optional = {n: self._tokens(n) for n in OPTIONAL_TABLES if f"tokens/{n}" in self.file}
        return TokenTables(self.dead_mask, self.counts, self.strings, **optional)


def write_token_tables(f: h5py.File, tokens: TokenTables, vocab: int) -> None:
    """Store `tokens` under /tokens/ of a new trajectory file (every table `vocab` long)."""
    tables = {t.name: getattr(tokens, t.name) for t in fields(tokens) if getattr(tokens, t.name) is not None}
    for name, table in tables.items():
        if len(table) != vocab:
            raise ValueError(f"Token table {name} must have {vocab} entries (the vocab size).")
    f.create_dataset("tokens/dead_mask", data=np.asarray(tokens.dead_mask, dtype=bool))
    f.create_dataset("tokens/strings", data=tokens.strings, dtype=h5py.string_dtype("utf-8"))
    for name in tables.keys() - {"dead_mask", "strings"}:  # counts, input_counts, first_input_step
        f.create_dataset(f"tokens/{name}", data=np.asarray(tables[name], dtype=np.int64))


def input_usage(batches: Batches, steps: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which tokens the first `steps` of `batches` feed in as inputs, and from when.

    Returns input_counts (V,) int64: input positions holding each token over those
    steps; first_input_step (V,) int64: the 1-based optimizer step whose batch first
    holds the token as an input, -1 if none does. A token can be live (in the corpus)
    and still never be an input: sliding windows make ~n_tokens windows, and a run
    draws only steps * batch_size of them. Its row of E then gets no gradient.
    """
    counts = torch.zeros(vocab_size, dtype=torch.long)
    never = steps + 1
    first = torch.full((vocab_size,), never, dtype=torch.long)
    for lo in range(0, steps, 256):  # 256 steps of inputs at a time: (256 * B * T,) ids
        block = [batches.windows.inputs(batches.order.starts(step)).flatten()
                 for step in range(lo, min(lo + 256, steps))]
        inputs = torch.cat(block)
        step_of = torch.repeat_interleave(torch.arange(lo + 1, lo + 1 + len(block)),  # 1-based steps
                                          torch.tensor([b.numel() for b in block]))
        counts += torch.bincount(inputs, minlength=vocab_size)
        first.scatter_reduce_(0, inputs, step_of, reduce="amin")
    first[first == never] = -1
    return counts.numpy(), first.numpy()
