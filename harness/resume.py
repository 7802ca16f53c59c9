"""Resumable scenario runs: periodic checkpoints, resume, a clean stop on SIGINT / SIGTERM.

A run writes `OUT/<name>.ckpt` (core/checkpoint.py) beside `OUT/<name>.h5`: at step 0,
every `record.checkpoint_every` steps (0 = only when stopped by a signal), and when
SIGINT or SIGTERM asks it to stop (after the step in progress). A finished run removes
its checkpoint. `--resume` reopens the trajectory, drops the frames recorded after the
checkpoint and continues; the finished file holds the same values, dataset by dataset,
as an uninterrupted run (tests/test_resume.py). Only the attribute `resumed_at_steps`
(the step each resume started from) tells them apart.

A resume is refused, before anything on disk changes, when the checkpoint's context
differs from the run asked for: the resolved scenario (without its file path), the
corpus and tokenizer fingerprints, the device type, or the trajectory format version.
A scenario key added to the harness after the checkpoint was written counts as its
default there (a new key's default keeps what the code did before it existed).

Test hook: the environment variable DEAD_TOKEN_HARNESS_FAULT="STEP:SIGNAL" (e.g.
"7:SIGKILL") makes a run raise SIGNAL in its own process right after step STEP: a
deterministic crash or stop for the resume tests, with no sleeps or races.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable


from core.checkpoint import (
    CheckpointError,
    CheckpointMismatch,
    check_compatible,
    checkpoint_path,
    load_checkpoint,
    restore,
    save_checkpoint,
)
from core.environment import environment
from core.fast import kernel_environment
from core.fast.staging import frame_stager
from core.format import FORMAT_VERSION
from core.h5read import TrajectoryFileError, open_for_reading, reason
from core.recorder import RecordConfig, TrajectoryWriter
from core.reopen import resume_trajectory
from core.step import StepResult
from core.train import Training
from harness.scenario.schema import SECTIONS

log = logging.getLogger(__name__)

FAULT_ENV = "DEAD_TOKEN_HARNESS_FAULT"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run after a step; the trajectory and a checkpoint are on disk.

    A KeyboardInterrupt, so that whatever runs the scenario (pytest, a script) stops as
    it would on Ctrl-C instead of treating the stop as one failed run among others.
    """

    def __init__(self, signum: int, step: int, total: int, path: Path, checkpoint: Path, at_once: bool = False):
        self.signum, self.step, self.total, self.path, self.checkpoint = signum, step, total, path, checkpoint
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        if at_once:
            text = (f"a second {self.signal_name} stopped the run at once after step {step} of {total}: {path} is "
                    f"closed with its complete frames" + (f"; its last checkpoint {checkpoint} is kept"
                                                          if checkpoint.exists() else ""))
        else:
            text = f"{self.signal_name} stopped the run after step {step} of {total}: {path} and its " \
                   f"checkpoint {checkpoint} are saved"
        super().__init__(text)


def run_context(resolved_scenario: dict[str, Any], corpus_fingerprint: str, tokenizer_fingerprint: str,
                device_type: str) -> dict[str, Any]:
    """What a resume must match. The scenario file's path is left out: the same scenario may
    be named by another path on resume."""
    scenario = {k: v for k, v in resolved_scenario.items() if k != "file"}
    return {"scenario": scenario, "corpus_fingerprint": corpus_fingerprint,
            "tokenizer_fingerprint": tokenizer_fingerprint, "device": device_type}


# ------------------------------------------------------------------ signals
class StopSignals:
    """While active (main thread only), SIGINT / SIGTERM ask the run to stop after the
    current step; a second one stops it at once (KeyboardInterrupt, which the runner turns
    into `Interrupted`). Once the run is shutting down (`closing()`: the file being closed)
    further signals are logged and ignored: a Ctrl-C pressed twice never breaks the file's
    close. The previous handlers are restored on exit (the CLI then ignores the signals on its
    way out: `ignore_stop_signals_at_exit`)."""

    def __init__(self):
        self.signum: int | None = None
        self.at_once = False  # a second signal stopped the run mid-step
        self._closing = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self._closing:
            log.warning("%s: already stopping; the trajectory is being closed", signal.Signals(signum).name)
            return
        if self.signum is not None:  # asked twice: stop now, the last periodic checkpoint stays
            self.at_once = True
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s: stopping after this step and writing a checkpoint (again to stop at once)",
                    signal.Signals(signum).name)

    def closing(self) -> None:
        """From now on a signal cannot interrupt: the run is closing its files."""
        self._closing = True

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def ignore_stop_signals_at_exit() -> None:
    """For a command that a signal stopped: once the interpreter shuts down, SIGINT / SIGTERM are
    ignored (SIG_IGN, set at exit: the interpreter resets Python handlers to the default while it
    shuts down, and one more Ctrl-C then killed it by the signal). Until then, an in-process
    caller (a test) keeps its handlers."""
    global _ignore_registered
    if not _ignore_registered:
        atexit.register(_ignore_stop_signals)
        _ignore_registered = True


_ignore_registered = False


def _ignore_stop_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def fault_hook() -> Callable[[StepResult], None] | None:
    """The test hook of DEAD_TOKEN_HARNESS_FAULT, or None when it is not set."""
    spec = os.environ.get(FAULT_ENV, "").strip()
    if not spec:
        return None
    try:
        step_text, name = spec.split(":")
        step, sig = int(step_text), signal.Signals[name.strip().upper()]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected STEP:SIGNAL, e.g. 7:SIGKILL") from exc

    def hook(result: StepResult) -> None:
        if result.step == step:
            log.warning("%s: raising %s after step %d", FAULT_ENV, sig.name, step)
            signal.raise_signal(sig)

    return hook


# ------------------------------------------------------------------ checkpoints during a run
class Checkpointer:
    """An `on_step` hook: a checkpoint every `record.checkpoint_every` steps, and on a stop signal."""

    def __init__(self, path: Path, training: Training, writer: TrajectoryWriter, context: dict[str, Any],
                 record: RecordConfig, total: int, stop: StopSignals | None = None):
        self.path, self.training, self.writer, self.context = path, training, writer, context
        self.every, self.total, self.stop = record.checkpoint_every, total, stop
        self.reserve_bytes = int(record.disk_reserve_mb * 2**20)

    def save(self) -> Path:
        frames = self.writer.sync(fsync=True)  # the checkpoint names only frames that are on disk
        return save_checkpoint(self.path, self.training, frames, self.context, self.reserve_bytes)

    def __call__(self, result: StepResult) -> None:
        if result.step >= self.total:
            return  # the run is complete; nothing to resume
        if self.stop is not None and self.stop.signum is not None:
            self.save()
            raise Interrupted(self.stop.signum, result.step, self.total, self.writer.path, self.path)
        if self.every and result.step % self.every == 0:
            self.save()


# ------------------------------------------------------------------ starting and resuming
def refuse_to_overwrite(path: Path) -> None:
    """A plain run never overwrites; say how to resume when the trajectory can be resumed."""
    if not path.exists():
        return
    ckpt = checkpoint_path(path)
    hint = (f" Resume it from its checkpoint {ckpt} with --resume, or start over with --force."
            if ckpt.exists() else " Start over with --force.")
    raise FileExistsError(f"Trajectory {path} already exists; refusing to overwrite it.{hint}")


def _default_keys_added_since(saved_context: dict[str, Any]) -> None:
    """Give a checkpoint's scenario the defaults of section keys it predates (in place)."""
    scenario = saved_context.get("scenario")
    for section, config_type in SECTIONS.items():
        saved = scenario.get(section) if isinstance(scenario, dict) else None
        if isinstance(saved, dict):
            for key, default in dataclasses.asdict(config_type()).items():
                saved.setdefault(key, default)


def resume_writer(path: Path, training: Training, context: dict[str, Any], record: RecordConfig) -> TrajectoryWriter:
    """Check that `path` can be resumed by this run, put `training` in its checkpoint's state
    and reopen the trajectory after the checkpoint's frames. Every refusal happens before
    the file or the checkpoint is touched."""
    ckpt_path = checkpoint_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Cannot resume {path}: no such trajectory. Run without --resume to start it.")
    attrs = _attrs(path)
    if not ckpt_path.is_file():
        raise CheckpointError(f"Cannot resume {path}: it has no checkpoint {ckpt_path} (a finished run removes "
                              f"its checkpoint; record.checkpoint_every = 0 writes one only on a signal). "
                              f"Start over with --force.")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatch(f"Cannot resume {path}: the trajectory has format_version "
                                 f"{attrs.get('format_version')}; this harness writes {FORMAT_VERSION}.")
    ckpt = load_checkpoint(ckpt_path)
    _default_keys_added_since(ckpt.context)
    try:
        check_compatible(ckpt, context)
    except CheckpointMismatch as exc:
        raise CheckpointMismatch(f"Cannot resume {path}: {exc}") from exc
    for key in ("corpus_fingerprint", "tokenizer_fingerprint"):
        if key in attrs and attrs[key] != context[key]:
            raise CheckpointMismatch(f"Cannot resume {path}: its {key} is {attrs[key]}, this run's is {context[key]}.")
    if ckpt.frames > int(attrs.get("frames_complete", 0)):
        raise CheckpointMismatch(f"Cannot resume {path}: checkpoint {ckpt_path} names {ckpt.frames} frames, the "
                                 f"trajectory has only {attrs.get('frames_complete')} complete ones.")
    _warn_on_new_code(path, attrs)
    restore(training, ckpt)
    resumed = json.loads(attrs.get("resumed_at_steps", "[]")) + [ckpt.steps_done]
    writer = resume_trajectory(path, frames=ckpt.frames, config=record, metadata={"resumed_at_steps": resumed},
                               stager=frame_stager(training.device))
    log.info("resuming %s from %s: step %d, %d frames kept", path, ckpt_path, ckpt.steps_done, ckpt.frames)
    return writer


def _attrs(path: Path) -> dict[str, Any]:
    try:
        f, _ = open_for_reading(path)
    except TrajectoryFileError as exc:
        raise CheckpointError(f"Cannot resume {path}: {exc}") from exc
    with f:
        try:
            return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        except (OSError, KeyError, RuntimeError) as exc:  # damaged metadata
            raise CheckpointError(f"Cannot resume {path}: its attributes cannot be read: {reason(exc)}.") from exc


def run_environment() -> dict[str, str]:
    """Versions and machine facts that can change a run's bits (the trajectory's `environment`)."""
    return {**environment(), **kernel_environment()}


def _warn_on_new_code(path: Path, attrs: dict[str, Any]) -> None:
    then = json.loads(attrs.get("environment", "{}"))
    changed = [f"{k} {then.get(k)} -> {v}" for k, v in run_environment().items() if then.get(k) != v]
    if changed:
        log.warning("resuming %s in another environment than it began in (%s): the continuation may differ "
                    "in the last bits from an uninterrupted run", path, ", ".join(changed))
