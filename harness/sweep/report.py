"""What a finished sweep shows: a summary table and a plot across runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from harness.scenario.cli import verdict_word
from harness.sweep.expect import CrossVerdict, RunFile, definition_key, radius_series
from harness.sweep.spec import ExpectAll

log = logging.getLogger(__name__)

PLOT_NAME = "radius.png"


def verdict_counts(entry: dict[str, Any], current: dict[str, str] | None = None) -> str:
    """"k/n pass" over a run's own verdicts and its cached [[expect_all]] verdicts. `current` (id ->
    definition key of the sweep file's [[expect_all]] tables now): cached verdicts of tables since
    removed or changed are left out."""
    cached = {k: v for k, v in entry.get("expect_all", {}).items()
              if current is None or current.get(k) == v.get("key")}
    verdicts = {**entry.get("verdicts", {}), **cached}
    if not verdicts:
        return "-"
    failed = [k for k, v in verdicts.items() if not v["passed"]]
    return f"{len(verdicts) - len(failed)}/{len(verdicts)} pass" + (f" (fail: {', '.join(failed)})" if failed else "")


def summary_table(index: dict[str, Any], run_ids: list[str], expect_all: list[ExpectAll] | None = None) -> str:
    """One line per run: id, status, seconds, verdicts (of the sweep file's `expect_all` tables, when given)."""
    current = None if expect_all is None else {e.id: definition_key(e) for e in expect_all}
    rows = [("run", "status", "seconds", "verdicts")]
    for rid in run_ids:
        e = index["runs"][rid]
        seconds = f"{e['seconds']:.1f}" if e.get("seconds") is not None else "-"
        status = e["status"] + (f": {e['error']}" if e.get("error") else "")
        rows.append((rid, status, seconds, verdict_counts(e, current)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r[:3], widths)) + "  " + r[3] for r in rows)


def cross_table(verdicts: list[CrossVerdict]) -> str:
    """One line per verdict: PASS / FAIL, or YES / NO for an exploratory one (which never fails the sweep)."""
    return "\n".join(f"{verdict_word(v.passed, '', v.exploratory):5s} {v.id}: {v.n_passed}/{v.n_runs} runs; "
                     f"{v.message}" + (f" (exploratory: {v.exploratory})" if v.exploratory else "") for v in verdicts)


def plot_radius(runs: list[RunFile], path: Path, tensor: str = "W", tokens: str = "dead") -> Path | None:
    """Mean radius of the dead cloud vs optimizer step, one line per run, relative to its start too."""
    if not runs:
        return None
    import matplotlib  # heavy: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: only the plot needs it

    fig, (ax, rel) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for run in runs:
        steps, radius = radius_series(run.path, tensor, tokens)
        ax.plot(steps, radius, label=run.id, lw=1)
        rel.plot(steps, radius / radius[0] - 1 if radius[0] else radius * 0, lw=1)
    ax.set(xlabel="optimizer step", ylabel=f"mean radius of the {tokens} cloud of {tensor} (‖x − centroid‖)",
           title=f"{tokens} cloud radius, {len(runs)} runs")
    rel.axhline(0, color="grey", lw=0.5)
    rel.set(xlabel="optimizer step", ylabel="radius relative to step 0 (r_t / r_0 − 1)", title="relative to the start")
    if len(runs) <= 16:
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
