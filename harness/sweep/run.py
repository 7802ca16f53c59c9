"""A sweep: dozens of seeded runs of one scenario as one experiment.

    sweep = load_sweep("sweeps/seeds.toml")          # every run resolved and validated
    result = run_sweep(sweep, "runs", workers=4)     # -> runs/<sweep>/<run id>.h5 + index.json
    result.cross                                     # the [[expect_all]] verdicts

Runs go to a local process pool ('spawn') or, with `ray=ADDRESS` ("local" starts one), to Ray
as remote tasks; both call harness.sweep.execute.execute_run. The index is rewritten after
every change; a re-invoked sweep skips runs that are done and whose file closed cleanly,
and runs the rest again from scratch (overwriting), which gives the identical file.

A SIGTERM (a batch system's time limit, `timeout`) or SIGINT (Ctrl-C) stops the sweep: its
runs in flight are marked "interrupted" in the index, its workers are stopped (a run closes
its file after the step in progress; any worker left after a few seconds is killed), and
`SweepInterrupted` is raised (exit code 143 / 130 from the CLI). Invoking the sweep again
runs the interrupted runs over from scratch: the same files as an uninterrupted sweep's.

Test hook: DEAD_TOKEN_HARNESS_SWEEP_PAUSE_AFTER=N makes the sweep stop submitting and wait
forever once N runs have finished and are in the index: a deterministic point at which a
test kills the sweep (SIGKILL) with other runs still marked "running" or "pending".
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checks import REGISTRY
from harness.progress import logs_above, progress_bar
from harness.sweep.execute import LocalPool, RayBackend, RunOutcome, RunTask, default_workers
from harness.sweep.expect import CrossVerdict, RunFile, check_all, definition_key, per_run_expectation, selected
from harness.sweep.file import load_sweep
from harness.sweep.index import is_finished, merged_index, write_index
from harness.sweep.report import PLOT_NAME, plot_radius
from harness.sweep.spec import RunSpec, Sweep, SweepError

log = logging.getLogger(__name__)

PAUSE_ENV = "DEAD_TOKEN_HARNESS_SWEEP_PAUSE_AFTER"

__all__ = ["SweepResult", "SweepError", "SweepInterrupted", "load_sweep", "run_sweep"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SweepInterrupted(KeyboardInterrupt):
    """A signal stopped the sweep; its runs in flight are marked "interrupted" in the index."""

    def __init__(self, signum: int, sweep: str, interrupted: list[str], index: Path):
        self.signum, self.interrupted = signum, interrupted
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM
        super().__init__(f"{signal.Signals(signum).name} stopped sweep {sweep}: {len(interrupted)} run(s) in flight "
                         f"marked interrupted in {index}; run the same sweep again to finish it")


class _SweepSignals:
    """While active (main thread only), SIGINT / SIGTERM raise KeyboardInterrupt once; later ones,
    while the sweep stops its workers, are logged and ignored (no traceback)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            log.warning("%s: already stopping the sweep", signal.Signals(signum).name)
            return
        self.signum = signum
        log.warning("%s: stopping the sweep and its runs", signal.Signals(signum).name)
        raise KeyboardInterrupt

    def __enter__(self) -> _SweepSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        if self.signum is None:  # after a stop they stay until the workers are stopped: `restore()`
            self.restore()

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


@dataclass
class SweepResult:
    sweep: Sweep
    folder: Path  # OUT/<sweep name>
    index: dict[str, Any]
    ran: list[str] = field(default_factory=list)  # run ids executed by this call
    skipped: list[str] = field(default_factory=list)  # already finished
    cross: list[CrossVerdict] = field(default_factory=list)
    plot: Path | None = None

    @property
    def failed_runs(self) -> list[str]:
        return [r.id for r in self.sweep.runs if self.index["runs"][r.id]["status"] != "done"]

    @property
    def failed_own(self) -> list[str]:
        """'run id: expectation id' for each scenario expectation that failed (or xpassed) in a run."""
        out = []
        for run in self.sweep.runs:
            for eid, v in self.index["runs"][run.id]["verdicts"].items():
                if v["exploratory"]:
                    continue
                if v["passed"] == bool(v["xfail"]):
                    out.append(f"{run.id}: {eid}")
        return out

    @property
    def ok(self) -> bool:
        """No run failed and every cross-run expectation holds (exploratory ones are reported, not
        counted). A run's own expectations are reported, not counted: axes may take a scenario
        outside their domain (an untied control's claims in a tied run); state what must hold as
        [[expect_all]]."""
        return not self.failed_runs and all(v.passed or v.exploratory for v in self.cross)


def _tasks(sweep: Sweep, runs: list[RunSpec], folder: Path, threads: int, device: str | None) -> list[RunTask]:
    out = []
    for run in runs:
        cross = [(per_run_expectation(e), definition_key(e)) for e in sweep.expect_all
                 if e.check in REGISTRY and selected(e, [run])]
        out.append(RunTask(run.id, run.scenario, folder, threads, device, sweep.run_expectations, cross))
    return out


def _record(entry: dict[str, Any], result: RunOutcome | BaseException) -> None:
    if isinstance(result, BaseException):
        entry.update(status="failed", error=f"{type(result).__name__}: {result}")
        return
    entry.update(status="failed" if result.error else "done", error=result.error, seconds=round(result.seconds, 3),
                 verdicts=result.verdicts, expect_all=result.expect_all)


def _pause_if_asked(finished: int) -> None:
    limit = os.environ.get(PAUSE_ENV, "").strip()
    if limit and finished >= int(limit):
        log.warning("%s=%s: %d runs finished; waiting to be killed", PAUSE_ENV, limit, finished)
        while True:
            time.sleep(3600)


def run_sweep(sweep: Sweep, out: str | Path, workers: int | None = None, ray: str | None = None,
              threads: int | None = None, device: str | None = None, progress: bool = True) -> SweepResult:
    """Run every unfinished run of `sweep` into OUT/<sweep name>/, then check [[expect_all]]."""
    folder = Path(out) / sweep.name
    folder.mkdir(parents=True, exist_ok=True)
    index = merged_index(sweep, folder)
    write_index(folder, index)
    result = SweepResult(sweep, folder, index)
    todo = [r for r in sweep.runs if index["runs"][r.id]["status"] != "done"]
    result.skipped = [r.id for r in sweep.runs if index["runs"][r.id]["status"] == "done"]
    if result.skipped:
        log.info("%s: %d of %d runs already finished; running %d", sweep.name, len(result.skipped), len(sweep.runs),
                 len(todo))
    if todo:
        _execute(sweep, todo, folder, index, result, workers, ray, threads, device, progress)
    finished = [RunFile(r.id, folder / index["runs"][r.id]["file"], r.scenario, index["runs"][r.id]["expect_all"])
                for r in sweep.runs if is_finished(folder, index["runs"][r.id])]
    result.cross = check_all(sweep.expect_all, finished, sweep.runs)
    write_index(folder, index)  # with any per-run verdicts checked just now
    result.plot = plot_radius(finished, folder / PLOT_NAME)
    return result


def _execute(sweep: Sweep, todo: list[RunSpec], folder: Path, index: dict[str, Any], result: SweepResult,
             workers: int | None, ray: str | None, threads: int | None, device: str | None, progress: bool) -> None:
    if threads is not None and threads != sweep.threads:
        log.warning("%s: --threads %d instead of the sweep's threads = %d: on a CPU these runs' bits may differ "
                    "from runs made with %d", sweep.name, threads, sweep.threads, sweep.threads)
    threads = threads or sweep.threads
    if ray is not None:
        backend: LocalPool | RayBackend = RayBackend(ray, threads)
        workers = workers or max(1, backend.cpus // threads)
    else:
        workers = workers or default_workers()
        backend = LocalPool(min(workers, len(todo)))
    log.info("%s: %d runs on %s (%d at a time, %d torch thread(s) each) -> %s", sweep.name, len(todo), backend.name,
             workers, threads, folder)
    queue = _tasks(sweep, todo, folder, threads, device)
    in_flight: dict[Any, str] = {}
    total, done_before = len(sweep.runs), len(sweep.runs) - len(todo)
    bar = progress_bar(total=total, initial=done_before, desc=f"sweep {sweep.name}", unit="run", progress=progress)
    signals = _SweepSignals()
    try:
        with logs_above(bar), signals:
            while queue or in_flight:
                while queue and len(in_flight) < workers:
                    task = queue.pop(0)
                    try:
                        in_flight[backend.submit(task)] = task.run_id
                        index["runs"][task.run_id].update(status="running", error=None, threads=task.threads)
                    except Exception as exc:  # a broken pool: this run fails, the sweep reports it
                        _record(index["runs"][task.run_id], exc)
                    write_index(folder, index)
                _pause_if_asked(len(result.ran))
                if not in_flight:
                    continue
                for handle, outcome in backend.wait(list(in_flight)):
                    rid = in_flight.pop(handle)
                    entry = index["runs"][rid]
                    _record(entry, outcome)
                    write_index(folder, index)
                    result.ran.append(rid)
                    bar.update(1)
                    seconds = f" in {entry['seconds']:.1f} s" if entry.get("seconds") is not None else ""
                    error = f" ({entry['error']})" if entry.get("error") else ""
                    log.info("run %d/%d %s: %s%s%s", done_before + len(result.ran), total, rid, entry["status"],
                             seconds, error)
    except KeyboardInterrupt:
        signum = signals.signum or signal.SIGINT  # outside the main thread: a plain Ctrl-C
        signals.signum = signum  # from here on, further signals are ignored
        stopped = list(in_flight.values())
        for rid in stopped:
            index["runs"][rid].update(status="interrupted", error=f"stopped by {signal.Signals(signum).name}")
        write_index(folder, index)
        try:
            backend.stop(list(in_flight))
        finally:
            signals.restore()
        raise SweepInterrupted(signum, sweep.name, stopped, folder / "index.json") from None
    finally:
        bar.close()
        backend.close()
