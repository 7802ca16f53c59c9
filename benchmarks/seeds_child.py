"""Rounds of the seeds' method on request, in a process of their own, with glibc's allocator
defaults as the notebooks ran (the harness's process keeps freed host memory, core/host_memory):

    python seeds_child.py DEVICE TIED STEPS OUT_DIR

Each line on stdin runs one `trainer.train()` of STEPS steps on a Trainer built beforehand
(E and W kept in RAM every step) and prints "seconds <s>"; end of input ends the process.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from conftest import corpus_ids  # also puts tests/ on sys.path, for seed_trainer
from core.device import synchronize
from seed_trainer import RecordEW, SeedRun, notebook_trainer


def seeds_round_seconds(ids: torch.Tensor, device: str, tied: bool, steps: int, out: str | Path) -> float:
    """Seconds of one `trainer.train()` of `steps` steps, the Trainer built outside the timing."""
    trainer = notebook_trainer(ids, SeedRun(tied=tied, steps=steps, device=device), out, RecordEW())
    start = time.perf_counter()
    trainer.train()
    synchronize(torch.device(device))
    return time.perf_counter() - start


def main() -> None:
    device, tied, steps, out = sys.argv[1], sys.argv[2] == "True", int(sys.argv[3]), sys.argv[4]
    ids = corpus_ids()
    for _ in sys.stdin:
        print(f"seconds {seeds_round_seconds(ids, device, tied, steps, out)}", flush=True)


if __name__ == "__main__":
    main()
