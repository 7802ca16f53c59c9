"""Where a sweep's runs execute: a local process pool, or Ray remote tasks. One run function.

`execute_run(task)` trains one run into its own file, then checks the scenario's
expectations and the sweep's per-run cross-run checks on it; it never raises (a failure is
a result with `error`). Both backends call exactly this function, with the same torch
thread count, so a run id gives the same trajectory wherever it ran.

Backends keep at most `workers` runs in flight, so an index entry marked "running" is running.
`stop(handles)` ends the runs in flight when the sweep is stopped (SIGTERM / SIGINT).
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.runner import applicable, evaluate, run_scenario
from harness.scenario.schema import Expectation, Scenario
from harness.sweep.expect import evaluate_run

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0  # a stopped sweep waits this long for its runs to close their files, then kills them


@dataclass
class RunTask:
    run_id: str
    scenario: Scenario  # resolved, with the run's overrides
    folder: Path  # OUT/<sweep>: the trajectory goes to folder/<run_id>.h5
    threads: int  # torch intra-op threads for this run
    device: str | None = None
    run_expectations: bool = True  # check the scenario's own [[expect]] tables
    expect_all: list[tuple[Expectation, str]] = field(default_factory=list)  # (per-run check, definition key)


@dataclass
class RunOutcome:
    run_id: str
    seconds: float
    verdicts: dict[str, dict[str, Any]]  # the scenario's own expectations
    expect_all: dict[str, dict[str, Any]]  # the sweep's per-run checks, each with its definition key
    error: str | None = None  # None: done


def execute_run(task: RunTask) -> RunOutcome:
    """Train, record and check one run. Runs in a pool worker or a Ray worker."""
    torch.set_num_threads(task.threads)
    start = time.perf_counter()
    path = task.folder / f"{task.run_id}.h5"
    try:
        run_scenario(task.scenario, task.folder, device=task.device, overwrite=True, progress=False, path=path)
        verdicts = {}
        if task.run_expectations and applicable(task.scenario):
            for e, v in evaluate(task.scenario, path, device=task.device):
                verdicts[e.id] = {"check": e.check, "passed": bool(v.passed), "message": v.message,
                                  "xfail": e.xfail, "exploratory": e.exploratory}
        cross = evaluate_run(path, task.scenario, [e for e, _ in task.expect_all])
        for e, key in task.expect_all:
            cross[e.id]["key"] = key
        return RunOutcome(task.run_id, time.perf_counter() - start, verdicts, cross)
    except Exception as exc:  # reported in the index; the sweep goes on
        log.debug("run %s failed:\n%s", task.run_id, traceback.format_exc())
        return RunOutcome(task.run_id, time.perf_counter() - start, {}, {}, f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------ backends
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with(parent: int) -> None:
    """A pool worker's initializer: the kernel kills the worker when the sweep that started it dies,
    even by SIGKILL (Linux PR_SET_PDEATHSIG; before, workers went on training for minutes and a
    rerun put a second writer on their files). Elsewhere the worker outlives a killed sweep."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the sweep died before the line above took effect
        os._exit(1)
    # A terminal's Ctrl-C reaches the whole process group: the sweep decides what stops (a run in
    # progress installs its own handler, harness/resume.py StopSignals); an idle worker printed a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalPool:
    """A ProcessPoolExecutor with the 'spawn' context (no forked torch state); its workers die with the sweep."""

    name = "local pool"

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=die_with, initargs=(os.getpid(),))

    def submit(self, task: RunTask) -> cf.Future:
        return self.pool.submit(execute_run, task)

    def wait(self, handles: list) -> list[tuple[Any, RunOutcome | BaseException]]:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            exc = fut.exception()
            out.append((fut, exc if exc is not None else fut.result()))
        return out

    def stop(self, handles: list, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every worker now: SIGTERM (a run stops after its step, closing its file), then SIGKILL
        whatever is left after `grace_s`. The pool is unusable afterwards."""
        workers = list(getattr(self.pool, "_processes", {}).values())  # CPython's ProcessPoolExecutor
        for proc in workers:
            for sig in (signal.SIGTERM, signal.SIGCONT):  # SIGCONT: a stopped worker handles it too
                try:
                    os.kill(proc.pid, sig)
                except (ProcessLookupError, TypeError):
                    pass
        deadline = time.monotonic() + grace_s
        for proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayBackend:
    """Ray remote tasks: `address` "local" starts a local instance; an existing ray.init() is reused."""

    name = "ray"

    def __init__(self, address: str | None, threads: int):
        try:
            import ray  # optional (the extra `ray`): only --ray needs it
        except ImportError as exc:
            raise RuntimeError("--ray needs Ray: pip install -e '.[ray]'") from exc
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            if address in (None, "local"):
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            self.started = True
        self.remote = ray.remote(num_cpus=threads, max_retries=0)(execute_run)
        self.cpus = int(ray.cluster_resources().get("CPU", 1))
        log.info("ray: %d CPUs in the cluster", self.cpus)

    def submit(self, task: RunTask):
        return self.remote.remote(task)

    def wait(self, handles: list) -> list[tuple[Any, RunOutcome | BaseException]]:
        ready, _ = self.ray.wait(handles, num_returns=1)
        out = []
        for ref in ready:
            try:
                out.append((ref, self.ray.get(ref)))
            except Exception as exc:  # a worker that died (RayTaskError, WorkerCrashedError)
                out.append((ref, exc))
        return out

    def stop(self, handles: list, grace_s: float = STOP_GRACE_S) -> None:
        """Cancel the in-flight tasks; force=True kills their worker processes (Ray cannot deliver a
        SIGTERM to a task, so its file is left as after a kill -9 and the rerun starts it over)."""
        for ref in handles:
            try:
                self.ray.cancel(ref, force=True)
            except Exception as exc:  # already finished, or the cluster is gone
                log.debug("ray.cancel: %s", exc)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1) // 2)
