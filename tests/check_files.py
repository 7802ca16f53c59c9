"""Small trajectory files written by the real recorder from chosen tensors, for the checks' tests
(tests/test_check_messages.py, tests/test_check_verdicts.py): vocab 16, dim 4, tokens 12-15 dead, 11 never an input.
Token t's row of W is t + step / 8 in every column; E is W with the dead rows held at step 0;
grad_E is 0.25 on live rows from step 1, 0 on dead ones; lr 0.01; the recorded optimizer groups
put E and W under weight decay 0.5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.recorder import RecordConfig, TrajectoryWriter
from core.token_tables import TokenTables
from core.trajectory import Trajectory
from harness.checks import CheckContext, run_check

V, D = 16, 4
DEAD = [12, 13, 14, 15]  # never in the (notional) corpus
NEVER_INPUT = [11, *DEAD]  # token 11 is in the corpus but no batch feeds it in
GROUPS = [{"lr": 0.01, "weight_decay": 0.5, "betas": [0.9, 0.999], "eps": 1e-8,
           "params": ["transformer.wte.weight", "lm_head.weight"]},
          {"lr": 0.01, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8, "params": ["transformer.ln_f.bias"]}]


def base(step: int, vocab: int = V) -> torch.Tensor:
    """(vocab, D) bf16: token t's row is t + step / 8 in every column (live rows drift, exactly
    representable for vocab 16)."""
    return (torch.arange(vocab, dtype=torch.float32)[:, None] + step / 8).expand(vocab, D).to(torch.bfloat16).clone()


def write(path: Path, frames: int = 4, edit=None, loss=None, lr: float = 0.01, shared: bool = False,
          groups=GROUPS, tensors=("E", "W", "grad_E", "logits"), tied: bool = False, vocab: int = V) -> Path:
    """A trajectory of `frames` frames of `tensors`; `edit(step, tensors)` changes a frame. `shared` and
    `groups` are what the run recorded from its live model and optimizer (None: not recorded).
    `vocab` > 16 adds live tokens (for lists longer than a check reports)."""
    counts = np.where(np.isin(np.arange(vocab), DEAD), 0, 5)
    first_input = np.where(counts == 0, -1, 1)
    first_input[NEVER_INPUT] = -1
    tokens = TokenTables(counts == 0, counts, [f"t{i}" for i in range(vocab)], np.where(first_input < 0, 0, 3), first_input)
    meta = {k: v for k, v in {"embeddings_shared": shared, "optimizer_groups": groups}.items() if v is not None}
    config = RecordConfig(tensors=list(tensors), checkpoint_every=0, disk_reserve_mb=0)
    with TrajectoryWriter(path, vocab_size=vocab, dim=D, tied=tied, config=config, metadata=meta, tokens=tokens) as w:
        for step in range(frames):
            grad = torch.zeros(vocab, D, dtype=torch.bfloat16)
            grad[torch.from_numpy(counts > 0)] = 0.25 if step else 0.0  # live rows have a gradient, dead ones none
            live_move = base(step, vocab)
            live_move[DEAD] = base(0)[DEAD]  # dead rows of E never move
            frame = {"E": live_move, "W": base(step, vocab), "grad_E": grad,
                     "logits": torch.zeros(vocab, dtype=torch.bfloat16)}
            if edit is not None:
                edit(step, frame)
            scalars = {} if step == 0 else {"loss": (loss or [9.0] * frames)[step], "lr": lr, "grad_norm": 1.5}
            w.append(step, {name: frame[name] for name in w.names}, **scalars)
    return path


def verdict(path: Path, name: str, rerun=None, **args):
    with Trajectory(path) as traj:
        return run_check(name, CheckContext(traj, None, rerun=rerun), args)
