"""The sweep index, `OUT/<sweep>/index.json`: what each run is and how far it got.

    {"sweep": "seeds", "file": ".../seeds.toml", "scenario": ".../flannel_2.toml", "scale": "smoke",
     "runs": {"seed=3-tied=false-1a2b3c4d": {
         "axes": {"init.seed": 3, "model.tied": false}, "overrides": ["init.seed=3", ...],
         "config_hash": "1a2b3c4d...", "status": "done", "file": "seed=3-tied=false-1a2b3c4d.h5",
         "seconds": 12.3, "verdicts": {"dead-E-zero_displacement": {"check": ..., "passed": true, "message": ...}},
         "expect_all": {...cached per-run verdicts of [[expect_all]] checks...}, "error": null}}}

Statuses: pending -> running -> done | failed, or interrupted when a SIGTERM / SIGINT stopped
the sweep while the run was in flight (it runs again, from scratch, when the sweep is invoked
again). It is rewritten atomically (a temporary file,
then os.replace) after every change, so a killed sweep leaves a readable index. A run counts
as finished only when its status is done *and* its file exists and was closed cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import h5py

from harness.sweep.spec import Sweep

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
STATUSES = ("pending", "running", "done", "failed", "interrupted")


def index_path(folder: Path) -> Path:
    return folder / INDEX_NAME


def read_index(folder: Path) -> dict[str, Any]:
    path = index_path(folder)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:  # only a hand edit can do this: writes are atomic
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it to start the sweep over") from exc


def write_index(folder: Path, index: dict[str, Any]) -> None:
    """Atomically: readers see the old index or the new one, never half of one."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, index_path(folder))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def closed_cleanly(path: Path) -> bool:
    """The trajectory exists and its writer finished (core/recorder.py's `closed_cleanly`)."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("closed_cleanly", False))
    except OSError:  # truncated or still open for writing
        return False


def is_finished(folder: Path, entry: dict[str, Any] | None) -> bool:
    return bool(entry) and entry.get("status") == "done" and closed_cleanly(folder / entry["file"])


def merged_index(sweep: Sweep, folder: Path) -> dict[str, Any]:
    """The index for this sweep: finished runs kept from disk, every other run pending.
    Runs of the old index that the sweep no longer has are kept as they were."""
    old = read_index(folder).get("runs", {})
    runs: dict[str, Any] = dict(old)
    for run in sweep.runs:
        entry = old.get(run.id)
        if is_finished(folder, entry):
            continue
        runs[run.id] = {"axes": run.axes, "overrides": run.overrides, "config_hash": run.config_hash,
                        "status": "pending", "file": f"{run.id}.h5", "threads": sweep.threads, "seconds": None, "verdicts": {},
                        "expect_all": {}, "error": None}
    return {"sweep": sweep.name, "file": str(sweep.path.resolve()), "scenario": str(sweep.scenario_path),
            "scale": sweep.scale, "mode": sweep.mode, "runs": runs}
