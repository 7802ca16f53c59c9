"""Flannel-1-shape CPU steps in a process of their own: python step_rss_child.py STEPS.

The loss path is the environment's (DEAD_TOKEN_HARNESS_LOSS, core/fast/__init__.py). Prints the
peak RSS in KiB and the steps/s of the steps after the first two.
"""

from __future__ import annotations

import sys
import time

from conftest import corpus_ids, peak_rss_kib
from core.fast import choose_kernels
from core.train import Training, TrainConfig

WARMUP_STEPS = 2


def main() -> None:
    steps = int(sys.argv[1])
    training = Training(corpus_ids(), train_cfg=TrainConfig(steps=WARMUP_STEPS + steps, device="cpu"),
                        kernels=choose_kernels(device="cpu"))
    for _ in range(WARMUP_STEPS):
        training.step()
    start = time.perf_counter()
    for _ in range(steps):
        training.step()
    steps_per_s = steps / (time.perf_counter() - start)
    print(peak_rss_kib(), steps_per_s)


if __name__ == "__main__":
    main()
