"""Training steps/s at the Flannel-1 shape, per device: the harness vs the seeds' method.

    nox -s benchmarks -- -k train
    nox -s benchmarks -- -k overhead    # the recording overhead, step against step
    nox -s benchmarks -- -k vs_seeds    # the harness vs the seeds' method, round against round

The seeds' method runs first so that the ratios can be taken (and before any harness step:
a Training keeps freed host memory process-wide, core/host_memory.py, which the seeds did not).
Flannel-1 shape: batch 32 x 128 tokens, vocab 10,000, dim 64, 2 layers, bf16. Each case
reports steps/s in `extra_info`; printed ratios (with -s):
- "with recording / without": the cost of streaming W to HDF5 every step (goal >= 0.95);
- "harness / seeds' method": the core's step vs transformers' Trainer as notebook 1.20a
  ran it (tests/seed_trainer.py), W kept in RAM every step as the notebooks did;
- "fp32 / bf16 logits_matmul": the opt-in float32-accumulated LM head (not bit-identical,
  tests/test_lm_head.py states the difference) against the default; "fp32-gemms / bf16":
  the opt-in `matmul = "fp32"`, every GEMM of the step in float32 (core/gemm.py);
  "bf16-graph / bf16" (CUDA only): `train.cuda_graph`, forward and backward replayed as one
  CUDA graph (core/step_graph.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import available_devices, corpus_ids
from core.fast import KernelConfig, choose_kernels, onednn
from core.fast.staging import frame_stager
from core.data import DataConfig
from core.device import synchronize
from core.fast.host_memory import host_memory_reuse
from core.model import ModelConfig
from core.recorder import RecordConfig, TrajectoryWriter
from core.run import frame_tensors
from core.train import Training, TrainConfig

STEPS_PER_ROUND = {"cpu": 1, "cuda": 50, "mps": 10}
PAIRS = {"cpu": 6, "cuda": 200, "mps": 50}
# A CPU whose bf16 GEMMs run on oneDNN steps in ~0.15 s, not ~1.5 s (AVX2): 10x the steps there, so
# that a round lasts >= 1 s and amortises the seeds' Trainer.train() setup (~0.5 s) as its 1,000-step
# runs did. Fixed per kind of machine, so that the runs saved on one machine compare.
FAST_CPU_FACTOR = 10
ROUNDS, WARMUP_ROUNDS = 3, 1
_steps_per_s: dict[tuple, float] = {}


def per_machine(counts: dict[str, int], device: torch.device) -> int:
    """counts[device type], times FAST_CPU_FACTOR on a CPU whose bf16 GEMMs run on oneDNN."""
    fast_cpu = device.type == "cpu" and onednn.bf16_gemms_on_onednn()
    return counts[device.type] * (FAST_CPU_FACTOR if fast_cpu else 1)


def shape_info(device: str, tied: bool, n: int) -> dict:
    return dict(device=device, tied=tied, batch=32, seq_len=128, vocab=10_000, dim=64, dtype="bfloat16",
                steps_per_round=n, threads=torch.get_num_threads(), host_memory_reuse=host_memory_reuse())


def report(benchmark, key: tuple, n: int) -> float:
    steps_per_s = n / benchmark.stats.stats.mean
    _steps_per_s[key] = steps_per_s
    benchmark.extra_info["steps_per_s"] = round(steps_per_s, 3)
    return steps_per_s


def ratio(benchmark, name: str, numerator: tuple, denominator: tuple, label: str) -> None:
    a, b = _steps_per_s.get(numerator), _steps_per_s.get(denominator)
    if a and b:
        benchmark.extra_info[name] = round(a / b, 3)
        print(f"\n{label}: {a:.3f} / {b:.3f} steps/s = {a / b:.3f}")


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("device", available_devices())
def test_seeds_method_steps_per_second(benchmark, tmp_path, device, tied):
    """transformers' Trainer as notebook 1.20a ran it, E and W kept in RAM after every step.

    Each round is one `trainer.train()` of n steps on a Trainer built outside the timing
    (its own optimizer and dataloader setup is inside, amortised over n steps)."""
    pytest.importorskip("accelerate")
    from seed_trainer import RecordEW, SeedRun, notebook_trainer

    n = per_machine(STEPS_PER_ROUND, torch.device(device))
    ids = corpus_ids()
    recorders = []

    def setup():
        recorder = RecordEW()
        recorders.append(recorder)
        trainer = notebook_trainer(ids, SeedRun(tied=tied, steps=n, device=device), tmp_path / "trainer", recorder)
        return (trainer,), {}

    def train(trainer):
        trainer.train()
        synchronize(torch.device(device))

    benchmark.group = f"train-step-{device}-{'tied' if tied else 'untied'}"
    benchmark.extra_info.update(shape_info(device, tied, n), recording="W+E in RAM", method="transformers Trainer")
    benchmark.pedantic(train, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    report(benchmark, (device, tied, "seeds"), n)
    assert [len(r.frames) for r in recorders] == [n] * (ROUNDS + WARMUP_ROUNDS)


# The step's numerics: (train.logits_matmul, train.matmul), by the id the benchmark has carried;
# "bf16-graph": the default numerics with train.cuda_graph (CUDA only; bit-identical to "bf16" there).
NUMERICS = {"bf16": ("bf16", "bf16"), "fp32": ("fp32", "bf16"), "fp32-gemms": ("bf16", "fp32"),
            "bf16-graph": ("bf16", "bf16")}


@pytest.mark.parametrize("logits_matmul", list(NUMERICS))
@pytest.mark.parametrize("recording", ["off", "W-every-step"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("device", available_devices())
def test_train_steps_per_second(benchmark, bench_dir, device, tied, recording, logits_matmul):
    head, matmul = NUMERICS[logits_matmul]
    cuda_graph = logits_matmul.endswith("-graph")
    if cuda_graph and torch.device(device).type != "cuda":
        pytest.skip("CUDA graphs need a CUDA device")
    training = Training(corpus_ids(), ModelConfig(tied=tied), data_cfg=DataConfig(),
                        train_cfg=TrainConfig(steps=10**6, device=device),
                        kernels=choose_kernels(KernelConfig(logits_matmul=head, matmul=matmul, cuda_graph=cuda_graph),
                                               device))
    writer = None
    if recording != "off":
        writer = TrajectoryWriter(bench_dir / f"bench-{device}-{tied}.h5", vocab_size=10_000, dim=64, tied=tied,
                                  config=RecordConfig(tensors=["W"]), stager=frame_stager(training.device), overwrite=True)
    n = per_machine(STEPS_PER_ROUND, training.device)
    append_seconds = []  # the training thread's own cost of recording: the copy into a host buffer

    def run_steps():
        for _ in range(n):
            result = training.step()
            if writer is not None:
                start = time.perf_counter()
                writer.append(result.step, frame_tensors(training, writer.names, result), loss=result.loss)
                append_seconds.append(time.perf_counter() - start)
        synchronize(training.device)

    benchmark.group = f"train-step-{device}-{'tied' if tied else 'untied'}"
    benchmark.extra_info.update(shape_info(device, tied, n), recording=recording, logits_matmul=head, matmul=matmul,
                                cuda_graph=cuda_graph)
    benchmark.pedantic(run_steps, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    if writer is not None:
        writer.close()
    steps_per_s = report(benchmark, (device, tied, recording, logits_matmul), n)
    if append_seconds:
        append_ms = 1e3 * float(np.median(append_seconds))
        benchmark.extra_info.update(append_ms_per_step=round(append_ms, 3),
                                    append_share_of_step=round(append_ms / 1e3 * steps_per_s, 5))
        print(f"\n{device} tied={tied} {logits_matmul}: append() takes {append_ms:.2f} ms of a "
              f"{1e3 / steps_per_s:.0f} ms step ({append_ms / 10 * steps_per_s:.3f} %)")
    if recording != "off":
        ratio(benchmark, "ratio_to_no_recording", (device, tied, recording, logits_matmul),
              (device, tied, "off", logits_matmul), f"{device} tied={tied} {logits_matmul}: W every step / off")
    if logits_matmul != "bf16":
        ratio(benchmark, "ratio_fp32_to_bf16", (device, tied, recording, logits_matmul), (device, tied, recording, "bf16"),
              f"{device} tied={tied} recording={recording}: {logits_matmul} / bf16")
    ratio(benchmark, "ratio_to_seeds_method", (device, tied, recording, logits_matmul), (device, tied, "seeds"),
          f"{device} tied={tied} recording={recording} {logits_matmul}: harness / seeds' method")
    assert training.steps_done == (ROUNDS + WARMUP_ROUNDS) * n


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("device", available_devices())
def test_recording_overhead_paired(benchmark, bench_dir, device, tied):
    """The cost of every-step W recording, measured step against step in one Training.

    Separate benchmark cases (above) compare runs minutes apart, with +-5 % noise on a CPU.
    Here steps with and without a frame alternate (ABBA order, so drift cancels), the
    writer's threads running throughout as in a real run; the ratio of median step times
    is the overhead (goal: steps/s with recording >= 0.95 x without).
    """
    training = Training(corpus_ids(), ModelConfig(tied=tied), data_cfg=DataConfig(),
                        train_cfg=TrainConfig(steps=10**6, device=device), kernels=choose_kernels(device=device))
    writer = TrajectoryWriter(bench_dir / f"paired-{device}-{tied}.h5", vocab_size=10_000, dim=64, tied=tied,
                              config=RecordConfig(tensors=["W"]), stager=frame_stager(training.device), overwrite=True)
    pairs = per_machine(PAIRS, training.device)
    seconds: dict[bool, list[float]] = {False: [], True: []}

    def step(record: bool) -> float:
        start = time.perf_counter()
        result = training.step()
        if record:
            writer.append(result.step, frame_tensors(training, writer.names, result), loss=result.loss)
        synchronize(training.device)
        return time.perf_counter() - start

    def run_pairs():
        step(False), step(True)  # warm-up
        for i in range(pairs):
            for record in ((False, True) if i % 2 == 0 else (True, False)):
                seconds[record].append(step(record))

    benchmark.group = f"recording-overhead-{device}-{'tied' if tied else 'untied'}"
    benchmark.pedantic(run_pairs, rounds=1, iterations=1)
    writer.close()
    off, on = float(np.median(seconds[False])), float(np.median(seconds[True]))
    benchmark.extra_info.update(shape_info(device, tied, 1), pairs=pairs, median_step_s_off=round(off, 4),
                                median_step_s_on=round(on, 4), ratio_to_no_recording=round(off / on, 4))
    print(f"\n{device} tied={tied}: {pairs} ABBA pairs, median step {off * 1e3:.1f} ms without, "
          f"{on * 1e3:.1f} ms with a W frame: steps/s ratio {off / on:.3f}")
    assert len(seconds[True]) == len(seconds[False]) == pairs


SEEDS_PAIRS = 4  # ABBA pairs of rounds: seeds' Trainer round, harness round


@pytest.mark.parametrize("trainer_in", ["child", "same-process"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("device", available_devices())
def test_harness_vs_seeds_method_paired(benchmark, bench_dir, tmp_path, device, tied, trainer_in):
    """The CPU goal's figure (harness >= 3x the seeds' method, W recorded every step), round
    against round in one run.

    The separate cases above time the Trainer and the harness minutes apart; on a shared
    machine one of them can land in a slow spell (seen: one case at 0.64x its usual speed
    for all its rounds). Here rounds of n steps alternate in ABBA order: one `trainer.train()`
    (a Trainer built outside the timing, E and W kept in RAM every step) and n harness steps
    with a W frame streamed to HDF5 every step; the ratio of median round times is the figure.

    trainer_in "child": the Trainer rounds run in a process of their own (benchmarks/
    seeds_child.py) with glibc's allocator defaults, as the seeds ran: the goal's figure.
    "same-process": in this process, which keeps freed host memory for the harness
    (core/host_memory.py, process-wide): how much of the lead is the step itself, not the
    allocator setting.
    """
    pytest.importorskip("accelerate")
    from seeds_child import seeds_round_seconds

    dev = torch.device(device)
    n = per_machine(STEPS_PER_ROUND, dev)
    ids = corpus_ids()
    training = Training(ids, ModelConfig(tied=tied), data_cfg=DataConfig(),
                        train_cfg=TrainConfig(steps=10**6, device=device), kernels=choose_kernels(device=device))
    writer = TrajectoryWriter(bench_dir / f"vs-seeds-{device}-{tied}.h5", vocab_size=10_000, dim=64, tied=tied,
                              config=RecordConfig(tensors=["W"]), stager=frame_stager(training.device), overwrite=True)
    seconds: dict[str, list[float]] = {"seeds": [], "harness": []}
    child = None
    if trainer_in == "child":
        here = Path(__file__).parent
        child = subprocess.Popen([sys.executable, str(here / "seeds_child.py"), device, str(tied), str(n),
                                  str(tmp_path / "trainer")], cwd=here, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def seeds_round() -> float:
        if child is not None:
            child.stdin.write("go\n")
            child.stdin.flush()
            while not (line := child.stdout.readline()).startswith("seconds "):
                assert line, f"benchmarks/seeds_child.py ended (exit code {child.poll()})"
            return float(line.split()[1])
        return seeds_round_seconds(ids, device, tied, n, tmp_path / "trainer")

    def harness_round() -> float:
        start = time.perf_counter()
        for _ in range(n):
            result = training.step()
            writer.append(result.step, frame_tensors(training, writer.names, result), loss=result.loss)
        synchronize(dev)
        return time.perf_counter() - start

    rounds = {"seeds": seeds_round, "harness": harness_round}

    def run_pairs():
        seeds_round(), harness_round()  # warm-up
        for i in range(SEEDS_PAIRS):
            for which in (("seeds", "harness") if i % 2 == 0 else ("harness", "seeds")):
                seconds[which].append(rounds[which]())

    benchmark.group = f"harness-vs-seeds-{device}-{'tied' if tied else 'untied'}"
    try:
        benchmark.pedantic(run_pairs, rounds=1, iterations=1)
    finally:
        writer.close()
        if child is not None:
            child.stdin.close()
            child.wait(timeout=60)
    seeds_s, harness_s = float(np.median(seconds["seeds"])), float(np.median(seconds["harness"]))
    benchmark.extra_info.update(shape_info(device, tied, n), pairs=SEEDS_PAIRS, recording="W every step",
                                trainer_in=trainer_in, seeds_steps_per_s=round(n / seeds_s, 3),
                                harness_steps_per_s=round(n / harness_s, 3),
                                ratio_to_seeds_method=round(seeds_s / harness_s, 3))
    print(f"\n{device} tied={tied}, Trainer in {trainer_in}: {SEEDS_PAIRS} ABBA pairs of {n}-step rounds, seeds' "
          f"Trainer {n / seeds_s:.3f} steps/s, harness with W every step {n / harness_s:.3f} steps/s: "
          f"{seeds_s / harness_s:.2f}x")
    assert len(seconds["seeds"]) == len(seconds["harness"]) == SEEDS_PAIRS
    assert training.steps_done == n * (SEEDS_PAIRS + 1)
