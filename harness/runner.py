"""Run a scenario: data -> Training -> TrajectoryWriter -> checks on the written file."""

from __future__ import annotations

import dataclasses
import functools
import logging
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.checkpoint import checkpoint_bytes, checkpoint_path
from core.disk import RecorderError
from core.fast import choose_kernels
from core.fast.staging import frame_stager
from core.lock import WriterLock
from core.memory import available_bytes, is_out_of_memory, step_bytes_estimate
from core.optim import describe_groups
from core.recorder import TrajectoryWriter
from core.run import train_and_record
from core.step import StepResult
from core.token_tables import TokenTables, input_usage
from core.train import Training
from core.trajectory import Trajectory
from harness.checks import CheckContext, Verdict, run_check
from harness.data.bundle import default_bundle
from harness.data.prepare import PreparedData, prepare_data
from harness.progress import logs_above, progress_bar
from harness.resume import (Checkpointer, Interrupted, StopSignals, fault_hook, refuse_to_overwrite, resume_writer,
                            run_context, run_environment)
from harness.run_folder import RunLog, command_line, held_lines, write_scenario_file
from harness.scenario.schema import DEFAULT_DATA, Expectation, Scenario, ScenarioError, applicable

log = logging.getLogger(__name__)

HARNESS_VERSION = "0.1.0"


@dataclass
class RunResult:
    scenario: Scenario
    path: Path
    seconds: float  # of this process's training
    steps: int
    resumed_at: int | None = None  # steps already done when this process resumed the run


def _file_state(path: str) -> tuple[int, int] | None:
    """(mtime, size) of a data file: part of the cache key, so an edited file is read again."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None  # prepare_data reports the missing file
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _prepared(tokenizer: str, corpus: str, vocab_size: int, text_field: str, files: tuple = ()) -> PreparedData:
    return prepare_data(tokenizer, corpus, vocab_size, text_field=text_field)


def prepare_scenario_data(scenario: Scenario, progress: bool = True) -> PreparedData:
    """Token ids, counts and dead mask of the corpus the scenario trains on (cached per process)."""
    tokenizer, corpus = scenario.data.tokenizer, scenario.data.corpus
    if DEFAULT_DATA in (tokenizer, corpus):
        bundle = default_bundle(progress=progress)  # built on first use
        tokenizer = str(bundle.tokenizer_path) if tokenizer == DEFAULT_DATA else tokenizer
        corpus = str(bundle.corpus_path) if corpus == DEFAULT_DATA else corpus
    files = (_file_state(tokenizer), _file_state(corpus))
    return _prepared(tokenizer, corpus, scenario.model.vocab_size, scenario.data.text_field, files)


def git_commit() -> str | None:
    """The project's git commit (with '-dirty' for uncommitted changes), if it is a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def expected_frames(steps: int, every: int) -> int:
    return 1 + steps // every + (1 if steps % every else 0)


class StepLog:
    """Progress bar plus one fixed-format log line per interval: step, loss, steps/s, MB written."""

    def __init__(self, scenario: Scenario, writer: TrajectoryWriter | None, total: int, progress: bool,
                 done: int = 0):
        self.writer, self.total = writer, total
        self.every = max(1, total // 10)
        self.bar = progress_bar(total=total, initial=done, desc=f"{scenario.name} [{scenario.scale}]", unit="step",
                                progress=progress, leave=False)
        self.t0 = self.t_last = time.perf_counter()
        self.last_step = done

    def __call__(self, result: StepResult) -> None:
        self.bar.update(1)
        if result.step % self.every and result.step != self.total:
            return
        now = time.perf_counter()
        rate = (result.step - self.last_step) / max(now - self.t_last, 1e-9)
        mb = self.writer.bytes_written / 1e6 if self.writer is not None else 0.0
        log.info("step %6d/%d | loss %.4f | %7.2f steps/s | %9.1f MB written",
                 result.step, self.total, result.loss.item(), rate, mb)
        self.t_last, self.last_step = now, result.step

    def close(self) -> None:
        self.bar.close()


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    path: Path | None = None,
    resume: bool = False,
    prepare: Callable[[Training], None] | None = None,
    command: str | None = None,
) -> RunResult:
    """Train `scenario` and record it to `out_dir/<name>.h5`. `stop_after` runs only the first
    n steps of the same run (the determinism check's rerun). `resume` continues an unfinished
    run from its checkpoint `out_dir/<name>.ckpt` (harness/resume.py); a SIGINT / SIGTERM
    stops a run after the current step with a checkpoint and raises `Interrupted`. `prepare` may
    change the Training before anything is recorded (tests build sabotaged runs with it).
    Beside the file: `<name>.toml`, the resolved scenario with `command` (default: this process's)
    in its header, and `<name>.log`, the run's log lines (harness/run_folder.py).
    A run holds its trajectory's writer lock (core/lock.py) from before it touches the file."""
    with held_lines() as held:  # for the log file, which opens once the run may write it
        data = prepare_scenario_data(scenario, progress)
        window = scenario.data.seq_len + 1
        if len(data.ids) < window:  # before: an error naming neither the corpus nor the key
            raise ScenarioError(f"{scenario.path}: data.corpus = {str(data.corpus_path)!r} has {len(data.ids)} "
                                f"tokens, fewer than one window of data.seq_len + 1 = {window} tokens.")
        train_cfg = dataclasses.replace(scenario.train, device=device or scenario.train.device)
        kernels = choose_kernels(train_cfg, train_cfg.device)
        training = Training(data.ids, scenario.model, scenario.init, scenario.data, scenario.optimizer, train_cfg,
                            kernels)
    if prepare is not None:
        prepare(training)
    check_batch_fits(scenario, training)  # before anything is written
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only or unwritable place: before, an OSError traceback
        raise RecorderError(f"Cannot make the output folder {out_dir}: {exc.strerror or exc}.") from exc
    path = path or out_dir / f"{scenario.name}.h5"
    metadata = {
        "scenario": scenario.resolved(),
        "scenario_name": scenario.name,
        "scale": scenario.scale,
        "overrides": scenario.overrides(),
        "seeds": {"init": scenario.init.seed, "data": scenario.data.seed},
        "device": str(training.device),
        # Facts the checks read, taken from the live objects, never from the scenario:
        "kernels": training.kernels.describe(),  # what the step ran
        "embeddings_shared": training.tied,  # E and W one parameter (identity)
        "optimizer_groups": describe_groups(training.model, training.optimizer),  # lr, weight decay, ...
        "environment": run_environment(),
        "git_commit": git_commit(),
        "harness_version": HARNESS_VERSION,
        "tokenizer_path": str(data.tokenizer_path),
        "tokenizer_fingerprint": data.tokenizer_fingerprint,
        "corpus_path": str(data.corpus_path),
        "corpus_fingerprint": data.corpus_fingerprint,
        "steps_planned": scenario.train.steps,
    }
    steps = min(stop_after or scenario.train.steps, scenario.train.steps)
    ckpt = checkpoint_path(path)
    context = run_context(scenario.resolved(), data.corpus_fingerprint, data.tokenizer_fingerprint,
                          training.device.type)
    with WriterLock(path):  # before anything touches the file or its checkpoint
        if resume:
            writer = resume_writer(path, training, context, scenario.record)
        else:
            if not overwrite:
                refuse_to_overwrite(path)

            def token_tables() -> TokenTables:  # the writer's up-front disk check first: refused in seconds
                # Over the planned steps (a run stopped early still names the batches its plan draws).
                usage = input_usage(training.batches, scenario.train.steps, scenario.model.vocab_size)
                return TokenTables(data.dead_mask, data.counts, data.strings, *usage)

            writer = TrajectoryWriter(path, vocab_size=scenario.model.vocab_size, dim=scenario.model.n_embd,
                                      tied=training.tied, config=scenario.record, metadata=metadata,
                                      tokens=token_tables,
                                      expected_frames=expected_frames(steps, scenario.record.every),
                                      stager=frame_stager(training.device), overwrite=overwrite,
                                      other_bytes=checkpoint_bytes(training) if scenario.record.checkpoint_every else 0)
            ckpt.unlink(missing_ok=True)  # an earlier run's
            write_scenario_file(path.with_suffix(".toml"), scenario, command or command_line(), metadata["git_commit"])
        # after refuse_to_overwrite: never an older run's log
        with RunLog(path.with_suffix(".log"), append=resume, earlier=held.buffer):
            log.info("%s [%s]: %d steps on %s, recording %s every %d step(s) -> %s", scenario.name, scenario.describe(),
                     steps, training.device, ", ".join(scenario.record.tensors), scenario.record.every, path)
            step_log = StepLog(scenario, writer, steps, progress, done=training.steps_done)
            checkpointer = Checkpointer(ckpt, training, writer, context, scenario.record, total=steps)
            hooks = [hook for hook in (step_log, fault_hook(), checkpointer) if hook is not None]

            def on_step(result: StepResult) -> None:
                for hook in hooks:
                    hook(result)

            start, steps_before = time.perf_counter(), training.steps_done
            out_of_memory = None
            with logs_above(step_log.bar), StopSignals() as stop:
                checkpointer.stop = stop
                try:
                    if not resume and scenario.record.checkpoint_every:
                        checkpointer.save()  # step 0: a run killed before its first periodic checkpoint resumes too
                    train_and_record(training, writer, on_step=on_step, until=steps)
                except KeyboardInterrupt:
                    if not stop.at_once:
                        raise  # Interrupted (the checkpointer's), or a Ctrl-C outside a run's own handler
                except Exception as exc:
                    if not is_out_of_memory(exc):
                        raise
                    out_of_memory = exc
                finally:
                    stop.closing()  # a further Ctrl-C now cannot break the file's close
                    step_log.close()
                    writer.close()
        if stop.at_once:
            raise Interrupted(stop.signum, training.steps_done, steps, path, ckpt, at_once=True)
        if out_of_memory is not None:
            if not resume and training.steps_done == 0:  # nothing but the initial frame: leave nothing half-made
                for made in (path, ckpt, path.with_suffix(".toml"), path.with_suffix(".log")):
                    made.unlink(missing_ok=True)
            raise ScenarioError(f"{scenario.path}: data.batch_size = {scenario.data.batch_size}: step "
                                f"{training.steps_done + 1} ran out of memory on {training.device} "
                                f"({str(out_of_memory).strip().splitlines()[0][:200]}); lower data.batch_size "
                                f"or data.seq_len.") from out_of_memory
        ckpt.unlink(missing_ok=True)  # complete: nothing left to resume
        return RunResult(scenario, path, time.perf_counter() - start, steps, steps_before if resume else None)


def check_batch_fits(scenario: Scenario, training: Training) -> None:
    """Refuse a batch whose step surely cannot fit in the memory left (core/memory.py's estimate)."""
    windows = min(scenario.data.batch_size, training.batches.order.n_windows)  # an epoch's first batch
    model = scenario.model
    need = step_bytes_estimate(windows, scenario.data.seq_len, model.vocab_size, model.n_embd, model.n_layer,
                               model.n_head)
    free = available_bytes(training.device)
    if free is not None and need > free:
        raise ScenarioError(f"{scenario.path}: data.batch_size = {scenario.data.batch_size}: one step needs more than "
                            f"{need / 2**30:.1f} GiB ({windows:,} windows of data.seq_len = {scenario.data.seq_len} "
                            f"tokens, model.vocab_size = {model.vocab_size:,} logits each), "
                            f"{free / 2**30:.1f} GiB of memory is free on {training.device}; lower data.batch_size.")


def evaluate(scenario: Scenario, path: Path, device: str | None = None) -> list[tuple[Expectation, Verdict]]:
    """Every expectation of `scenario` that applies at its scale, checked against the file."""
    verdicts = []
    with Trajectory(path) as traj:
        ctx = CheckContext(traj, scenario, rerun=lambda n: rerun(scenario, n, device))
        for expectation in applicable(scenario):
            verdicts.append((expectation, run_check(expectation.check, ctx, expectation.args)))
    return verdicts


def rerun(scenario: Scenario, steps: int, device: str | None = None) -> Path:
    """The first `steps` steps of the same scenario, recorded into a fresh temporary file."""
    out = Path(tempfile.mkdtemp(prefix=f"rerun-{scenario.name}-"))
    return run_scenario(scenario, out, device=device, progress=False, stop_after=steps).path
