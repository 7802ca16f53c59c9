"""Cross-run aggregates over the dynamics definitions (harness.dynamics), for `[[expect_all]]`:

    [[expect_all]]
    check = "inhale_fraction"          # the inhale happens in at least 3 of 4 seeds
    min_fraction = 0.75
    exploratory = "is the inhale universal?"

Each says what it read and, beside the pass/fail, the distribution across runs (median and
range), so an exploratory verdict is an answer too. Registered with `@aggregate`
(harness.sweep.aggregates) when this module is imported, which harness.sweep.expect does.
"""

from __future__ import annotations

import logging

import numpy as np

from harness.dynamics import inhale, outward_share, supernova_end
from harness.dynamics.checks import MEASURED_FROM
from harness.dynamics.supernova import DEFAULT_FRACTION
from harness.sweep.aggregates import RunFile, aggregate

log = logging.getLogger(__name__)


def spread(values: list[float], fmt: str = "{:.4g}") -> str:
    """'median M [min, max]' of the finite values, or 'none'."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not v.size:
        return "none"
    return f"median {fmt.format(float(np.median(v)))} [{fmt.format(float(v.min()))}, {fmt.format(float(v.max()))}]"


def fraction_text(n_ok: int, n: int, min_fraction: float) -> str:
    return f"{n_ok} of {n} runs ({n_ok / n:.0%}, need {min_fraction:.0%})"


@aggregate("inhale_fraction")
def inhale_fraction(runs: list[RunFile], min_fraction: float = 1.0, tensor: str = "W", min_depth: float = 0.0,
                    center: str = "centroid"):
    """At least `min_fraction` of the runs inhale: the dead cloud's mean radius (from its centroid,
    or center "origin": from the origin) dips below its start (deeper than `min_depth`, relative)
    before it first exceeds it (harness.dynamics.inhale)."""
    seen = {r.id: inhale(r.path, tensor, center=center) for r in runs}
    ok = {rid: i.happened and i.depth > min_depth for rid, i in seen.items()}
    dipped = [i for i in seen.values() if i.happened]
    text = (f"inhale of the dead cloud of {tensor} (mean distance from {MEASURED_FROM[center]} below its start before "
            f"it first exceeds it, deeper than {min_depth:.3%}) in {fraction_text(sum(ok.values()), len(runs), min_fraction)}; depth "
            f"{spread([i.depth for i in dipped], '{:.3%}')}, minimum at step {spread([i.min_step for i in dipped])}, "
            f"frames below {spread([i.dip_frames for i in dipped])}")
    return sum(ok.values()) >= min_fraction * len(runs) - 1e-9, ok, text


@aggregate("supernova_ends_between")
def supernova_ends_between(runs: list[RunFile], low: int = 0, high: int = -1, min_fraction: float = 1.0,
                           tensor: str = "W", fraction: float = DEFAULT_FRACTION):
    """In at least `min_fraction` of the runs the supernova ends (harness.dynamics.supernova_end:
    the dead cloud's speed stays below `fraction` of its peak) at a step in [low, high] (high -1: no bound)."""
    ends = {r.id: supernova_end(r.path, tensor, fraction) for r in runs}
    ok = {rid: s.end_step is not None and low <= s.end_step and (high == -1 or s.end_step <= high)
          for rid, s in ends.items()}
    never = [rid for rid, s in ends.items() if s.end_step is None]
    span = f"[{low}, {high}]" if high != -1 else f"at step {low} or later"
    text = (f"supernova end of the dead cloud of {tensor} (speed below {fraction:g} of its peak for good) "
            f"{span} in {fraction_text(sum(ok.values()), len(runs), min_fraction)}; end step "
            f"{spread([s.end_step for s in ends.values()])}, "
            f"peak at step {spread([s.peak_step for s in ends.values()])}"
            + (f"; never settles in {len(never)}" if never else ""))
    return sum(ok.values()) >= min_fraction * len(runs) - 1e-9, ok, text


@aggregate("pooled_outward_share_between")
def pooled_outward_share_between(runs: list[RunFile], low: float = 0.0, high: float = 1.0, tensor: str = "W",
                                 first_step: int = 0, last_step: int = -1, center: str = "centroid"):
    """Pooled over the runs, the share of the dead rows' moving steps (after `first_step`, up to
    `last_step`, -1: the end) that point away from the previous frame's dead centroid (center
    "origin": from the origin) is in [low, high] (harness.dynamics.outward_share); a run's own share
    must be in it too for the run to count as ok."""
    shares = {r.id: outward_share(r.path, tensor, center=center).share_between(first_step, last_step) for r in runs}
    moving = sum(n for _, n in shares.values())
    outward = sum(s * n for s, n in shares.values() if s is not None)
    pooled = outward / moving if moving else None
    ok = {rid: s is not None and low <= s <= high for rid, (s, _) in shares.items()}
    until = "the end" if last_step == -1 else f"step {last_step}"
    text = (f"outward share (from {MEASURED_FROM[center]}) of the dead rows' moving steps of {tensor} after step "
            f"{first_step} to {until}: pooled "
            + (f"{pooled:.3f} of {moving} steps" if pooled is not None else "none moved")
            + f", expected [{low:g}, {high:g}]; per run {spread([s for s, _ in shares.values()], '{:.3f}')}")
    return pooled is not None and low <= pooled <= high, ok, text
