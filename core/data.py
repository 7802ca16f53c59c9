"""Token ids -> windows -> batches, in the order transformers' Trainer drew them.

One window per start position, as the notebooks' TokenDataset: a window is
`seq_len + 1` consecutive tokens, so a corpus of n tokens has n - seq_len windows.
The inputs are the first `seq_len` tokens; position i is trained to predict the token
`target_offset` places after it, where that token is inside the window, and is ignored
(-100) otherwise.

- target_offset = 1: ordinary next-token prediction (seq_len targets per window).
- target_offset = 2: what the notebooks trained. They pre-shifted labels
  (`labels = chunk[1:]`) and GPT2LMHeadModel shifted again, so position i predicted
  token i + 2 and the last position had no target (seq_len - 1 targets per window).

Batch order (the Trainer's, via accelerate's SeedableRandomSampler): in epoch e the
windows are visited in `torch.randperm(n_windows, generator=manual_seed(seed + e))`
order, `batch_size` at a time; the last batch of an epoch may be short (drop_last off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IGNORE_INDEX = -100


@dataclass
class DataConfig:
    seq_len: int = 128  # notebooks: MAX_SEQ_LEN = 128
    batch_size: int = 32  # notebooks: BATCH_SIZE = 32
    target_offset: int = 2  # notebooks: labels pre-shifted, then shifted again by GPT-2
    seed: int = 42  # Trainer seed (TrainingArguments.seed = RANDOM_SEED = 42)
    drop_last: bool = False  # Trainer default: dataloader_drop_last = False


class Windows:
    """All `seq_len + 1`-token windows of a token-id sequence, gathered into batches."""

    def __init__(self, ids: np.ndarray | torch.Tensor, seq_len: int, target_offset: int):
        if seq_len < 1:  # first: a window of no tokens is the error, whatever the offset
            raise ValueError(f"seq_len must be >= 1, got {seq_len}.")
        if target_offset < 1:
            raise ValueError(f"target_offset must be >= 1 (1 = next token), got {target_offset}.")
        if target_offset > seq_len:
            raise ValueError(f"target_offset {target_offset} leaves no target in a window of seq_len {seq_len}.")
        self.ids = torch.as_tensor(ids, dtype=torch.long)  # (n_tokens,)
        if self.ids.ndim != 1:
            raise ValueError(f"The corpus must be one sequence of token ids, got shape {tuple(self.ids.shape)}.")
        if self.ids.numel() == 0:
            raise ValueError("The corpus has no tokens.")
        if self.ids.numel() < seq_len + 1:
            raise ValueError(
                f"The corpus has {self.ids.numel()} tokens, fewer than one window of "
                f"seq_len + 1 = {seq_len + 1} tokens."
            )
        self.seq_len = seq_len
        self.target_offset = target_offset
        self._positions = torch.arange(seq_len)  # (T,)
        # Which input positions have a target inside the window: i + offset <= seq_len.
        self._has_target = self._positions + target_offset <= seq_len  # (T,) bool

    def __len__(self) -> int:
        return self.ids.numel() - self.seq_len

    def inputs(self, starts: torch.Tensor) -> torch.Tensor:
        """inputs (B, T) of the windows beginning at `starts` (B,)."""
        return self.ids[starts[:, None] + self._positions]

    def gather(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs (B, T) and targets (B, T) for the windows beginning at `starts` (B,)."""
        index = starts[:, None] + self._positions  # (B, T)
        inputs = self.ids[index]
        target_index = (index + self.target_offset).clamp_max(self.ids.numel() - 1)
        targets = torch.where(self._has_target, self.ids[target_index], IGNORE_INDEX)
        return inputs, targets


class BatchOrder:
    """Which windows form the batch of each optimizer step, as a pure function of the step.

    Step k (0-based) is batch k of the concatenated epochs; no state beyond the config,
    so a resumed run draws exactly the batches an uninterrupted one would.
    """

    def __init__(self, n_windows: int, batch_size: int, seed: int, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if drop_last and n_windows < batch_size:
            raise ValueError(f"drop_last with {n_windows} windows leaves no batch of {batch_size}.")
        self.n_windows = n_windows
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        full, rest = divmod(n_windows, batch_size)
        self.batches_per_epoch = full if (drop_last or rest == 0) else full + 1
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def epoch_permutation(self, epoch: int) -> torch.Tensor:
        """The window order of one epoch: randperm(n_windows) seeded with seed + epoch."""
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed + epoch)
            self._perm = torch.randperm(self.n_windows, generator=gen)
            self._epoch = epoch
        return self._perm

    def starts(self, step: int) -> torch.Tensor:
        """Window start positions of the batch for 0-based optimizer step `step`: (B,)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        epoch, k = divmod(step, self.batches_per_epoch)
        perm = self.epoch_permutation(epoch)
        return perm[k * self.batch_size : (k + 1) * self.batch_size]


class Batches:
    """The batch of (inputs, targets) for every step: `Windows` in `BatchOrder`."""

    def __init__(self, ids: np.ndarray | torch.Tensor, cfg: DataConfig):
        self.windows = Windows(ids, cfg.seq_len, cfg.target_offset)
        self.order = BatchOrder(len(self.windows), cfg.batch_size, cfg.seed, cfg.drop_last)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.windows.gather(self.order.starts(step))
