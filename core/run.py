"""Train and record: the loop that feeds a `Training` into a `TrajectoryWriter`."""

from __future__ import annotations

import logging
from typing import Callable

import torch

from core.recorder import TrajectoryWriter
from core.step import StepResult
from core.train import Training

log = logging.getLogger(__name__)


def frame_tensors(training: Training, names: list[str], result: StepResult | None) -> dict[str, torch.Tensor]:
    """The tensors of one frame under their stored names; frame 0 (result None) has zero logits."""
    out = {}
    for name in names:
        if name != "logits":
            out[name] = training.tensor(name)
        elif result is not None:
            out[name] = result.logits_row
        else:
            out[name] = torch.zeros(training.model_cfg.vocab_size, dtype=torch.bfloat16, device=training.device)
    return out


def train_and_record(
    training: Training,
    writer: TrajectoryWriter | None,
    on_step: Callable[[StepResult], None] | None = None,
    until: int | None = None,
) -> StepResult | None:
    """Run the remaining steps of `training` (up to step `until`, default all), appending
    the frames `writer` asks for.

    Frame 0 (the initial state) is written first when no step has run yet. Returns the
    last step's result. `on_step` sees every result (progress, logging). Stopping early
    at `until` gives a prefix of the full run's frames (the LR schedule still spans
    all `train.steps`).
    """
    total = training.train_cfg.steps
    until = total if until is None else min(until, total)
    names = writer.names if writer is not None else []
    capture = tuple(n for n in names if n.startswith("grad_"))
    if writer is not None and training.steps_done == 0:
        writer.append(0, frame_tensors(training, names, None))
    result = None
    while training.steps_done < until:
        record = writer is not None and writer.should_record(training.steps_done + 1, total)
        result = training.step(capture_grads=capture if record else (), capture_logits=record and "logits" in names)
        if record:
            writer.append(
                result.step,
                frame_tensors(training, names, result),
                loss=result.loss,
                lr=result.lr,
                grad_norm=result.grad_norm,
            )
        if on_step is not None:
            on_step(result)
    return result
