"""The step's loss on a CPU: blockwise (core/loss.py, the default) against the Trainer's expression.

    nox -s benchmarks -- -k loss

Both give the same bits (tests/test_loss.py). Measured:
- forward + backward of the loss alone on Flannel-1-shape logits (32 x 128 rows, vocab
  10,000, bf16), in this process: in `nox -s benchmarks` before any Training, so with
  glibc's own malloc settings (`host_memory_reuse` in extra_info says which), where the
  reference's four (N, V) float32 tensors cost fresh pages every call;
- peak RSS and steps/s of Flannel-1 training steps with each loss (DEAD_TOKEN_HARNESS_LOSS),
  in a child process apiece, alternating (goal: the blockwise loss saves >= 500 MiB of the reference's peak).
Measured 2026-12-02 on a 2-core AVX-512 CPU (reference vs blockwise), three runs: the loss
alone 285-342 vs 107-130 ms; steps 1,434-1,586 vs 650-654 MiB peak RSS, 4.28-5.22 vs
5.30-5.56 steps/s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.data import IGNORE_INDEX
from core.fast import LOSS_ENV
from core.fast.host_memory import host_memory_reuse
from core.fast.loss import causal_lm_loss
from core.step import causal_lm_loss as reference_causal_lm_loss

ROWS, VOCAB = 32 * 128, 10_000
LOSSES = {"blockwise": causal_lm_loss, "reference": reference_causal_lm_loss}
RSS_STEPS = 10
RSS_SAVING_MIB = 500
_seconds: dict[str, float] = {}


@pytest.mark.parametrize("loss", list(LOSSES))
def test_loss_forward_backward(benchmark, loss):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(ROWS, VOCAB, generator=gen) * 2).to(torch.bfloat16)
    targets = torch.randint(0, VOCAB, (ROWS,), generator=gen)
    targets[127::128] = IGNORE_INDEX  # each window's last position has no target (target_offset 2)
    loss_fn = LOSSES[loss]

    def forward_backward():
        leaf = logits.detach().requires_grad_()
        loss_fn(leaf, targets).backward()
        return leaf.grad

    benchmark.group = "loss-cpu"
    benchmark.extra_info.update(rows=ROWS, vocab=VOCAB, dtype="bfloat16", threads=torch.get_num_threads(),
                                host_memory_reuse=host_memory_reuse())
    grad = benchmark.pedantic(forward_backward, rounds=10, warmup_rounds=2, iterations=1)
    assert grad.dtype == torch.bfloat16 and bool(grad.any())
    _seconds[loss] = benchmark.stats.stats.mean
    if len(_seconds) == len(LOSSES):
        speedup = _seconds["reference"] / _seconds["blockwise"]
        benchmark.extra_info["reference_over_blockwise"] = round(speedup, 3)
        print(f"\nloss fwd+bwd: reference {_seconds['reference'] * 1e3:.1f} ms / blockwise "
              f"{_seconds['blockwise'] * 1e3:.1f} ms = {speedup:.2f}x")


def test_step_peak_rss_and_speed_paired(benchmark):
    """Children in the order reference, blockwise, blockwise, reference: each loss's lower peak
    RSS and mean steps/s (a Training keeps freed host memory, core/host_memory.py, in both)."""
    child = Path(__file__).with_name("step_rss_child.py")
    runs: dict[str, list[tuple[float, float]]] = {loss: [] for loss in LOSSES}

    def run_pairs() -> None:
        for loss in ("reference", "blockwise", "blockwise", "reference"):
            out = subprocess.run([sys.executable, str(child), str(RSS_STEPS)], capture_output=True, text=True,
                                 check=True, cwd=child.parent, env={**os.environ, LOSS_ENV: loss})
            peak_kib, steps_per_s = out.stdout.split()[-2:]
            runs[loss].append((int(peak_kib) / 1024, float(steps_per_s)))

    benchmark.group = "step-peak-rss-cpu"
    benchmark.pedantic(run_pairs, rounds=1, iterations=1)
    peak = {loss: min(mib for mib, _ in r) for loss, r in runs.items()}
    speed = {loss: sum(s for _, s in r) / len(r) for loss, r in runs.items()}
    saved = peak["reference"] - peak["blockwise"]
    benchmark.extra_info.update(steps=RSS_STEPS, peak_rss_mib={k: round(v) for k, v in peak.items()},
                                steps_per_s={k: round(v, 3) for k, v in speed.items()}, saved_mib=round(saved))
    print(f"\nstep peak RSS: reference {peak['reference']:.0f} MiB, blockwise {peak['blockwise']:.0f} MiB "
          f"({saved:.0f} MiB saved); steps/s blockwise / reference: {speed['blockwise']:.2f} / "
          f"{speed['reference']:.2f} = {speed['blockwise'] / speed['reference']:.3f}")
    assert saved >= RSS_SAVING_MIB, f"the blockwise loss saved {saved:.0f} MiB of peak RSS, goal {RSS_SAVING_MIB}"
