"""Flannel-1-shape CPU steps with one loss, in a process of their own:

    python step_rss_child.py {blockwise,reference} STEPS

`reference` puts the Trainer's own expression (core.loss.reference_causal_lm_loss) in the
step's place; the step is otherwise the same. Prints the peak RSS in KiB and the steps/s of
the steps after the first two.
"""

from __future__ import annotations

import sys
import time

import core.train
from conftest import corpus_ids, peak_rss_kib
from core.loss import reference_causal_lm_loss
from core.train import Training, TrainConfig

WARMUP_STEPS = 2


def main() -> None:
    loss, steps = sys.argv[1], int(sys.argv[2])
    if loss == "reference":
        core.train.causal_lm_loss = reference_causal_lm_loss
    elif loss != "blockwise":
        raise SystemExit(f"Unknown loss {loss!r}. Available: blockwise, reference.")
    training = Training(corpus_ids(), train_cfg=TrainConfig(steps=WARMUP_STEPS + steps, device="cpu"))
    for _ in range(WARMUP_STEPS):
        training.step()
    start = time.perf_counter()
    for _ in range(steps):
        training.step()
    steps_per_s = steps / (time.perf_counter() - start)
    print(peak_rss_kib(), steps_per_s)


if __name__ == "__main__":
    main()
