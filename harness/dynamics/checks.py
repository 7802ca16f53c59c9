"""The dynamics definitions as checks: a scenario's `[[expect]]` or a sweep's `[[expect_all]]`
(with `min_fraction`) states an answer, e.g.

    [[expect_all]]
    check = "supernova_ends_by"
    step = 500
    min_fraction = 0.75        # in at least 6 of 8 seeds

Registered with `@check` (harness.checks.registry) when this module is imported, which
harness.scenario.expectations does. Each verdict says what it read (tensor, tokens, the
definition's parameters) and the measured value against the threshold; `Verdict.measured` holds
that value, so a sweep can state its range over the runs.
"""

from __future__ import annotations

import logging

from harness.checks.registry import CheckContext, Verdict, check
from harness.dynamics.collapse import Collapse, collapse
from harness.dynamics.flux import DEFAULT_RADIUS, flux
from harness.dynamics.freeze import DEFAULT_ABRUPT_BELOW, Freeze, freeze
from harness.dynamics.inhale import inhale
from harness.dynamics.outward import outward_share
from harness.dynamics.supernova import DEFAULT_FRACTION, supernova_end

log = logging.getLogger(__name__)

FREEZE_STATISTICS = {"range_10_90": "range_10_90_relative", "iqr": "iqr_relative"}
MEASURED_FROM = {"centroid": "their centroid", "origin": "the origin"}  # the centers, as a verdict names them
COLLAPSE_MEASURES = ("identical_rows", "identical_groups", "largest_identical_group", "near_rows", "near_clusters",
                     "largest_near_cluster", "largest_near_cluster_dead")


@check("supernova_ends_by")
def supernova_ends_by(ctx: CheckContext, step: int, tensor: str = "W", fraction: float = DEFAULT_FRACTION) -> Verdict:
    """The dead cloud's speed stays below `fraction` of its peak from optimizer step `step` on, or earlier."""
    s = supernova_end(ctx.traj, tensor, fraction)
    read = (f"dead cloud of {tensor}: speed peaks at {s.peak_speed:.4g} per step (step {s.peak_step}); it stays "
            f"below {fraction:g} of that ({s.threshold:.4g})")
    if s.end_step is None:
        return Verdict(False, f"{read}: never by the last step {int(s.steps[-1])}; expected from step {step} or "
                              "earlier", s.to_dict())
    return Verdict(s.end_step <= step, f"{read} from step {s.end_step}; expected from step {step} or earlier",
                   s.to_dict(), measured=s.end_step)


def _freeze_text(f: Freeze, tensor: str) -> str:
    spread = "-" if f.range_10_90_relative is None else f"{f.range_10_90_relative:.3f}"
    iqr = "-" if f.iqr_relative is None else f"{f.iqr_relative:.3f}"
    return (f"dead rows of {tensor}: {f.n_frozen} of {f.n_tokens} frozen before the last step ({f.still_moving} still "
            f"moving, {f.never_moved} never moved), freeze steps' 10-90 % range {spread} and IQR {iqr} of the run's "
            f"{f.run_steps} steps")


@check("freeze_spread_below")
def freeze_spread_below(ctx: CheckContext, spread: float, tensor: str = "W", statistic: str = "range_10_90") -> Verdict:
    """The dead tokens' freeze steps spread over less than `spread` of the run (statistic:
    range_10_90 or iqr, relative to the run's length in steps)."""
    if statistic not in FREEZE_STATISTICS:
        raise ValueError(f"freeze_spread_below: statistic = {statistic!r}: expected one of "
                         f"{', '.join(FREEZE_STATISTICS)}")
    f = freeze(ctx.traj, tensor)
    value = getattr(f, FREEZE_STATISTICS[statistic])
    text = f"{_freeze_text(f, tensor)}; expected {statistic} < {spread:g}"
    return Verdict(value is not None and value < spread, text if value is not None else text + " (none frozen)",
                   f.to_dict(), measured=value)


def _freeze_pattern(ctx: CheckContext, want: str, tensor: str, abrupt_below: float) -> Verdict:
    f = freeze(ctx.traj, tensor, abrupt_below)
    return Verdict(f.pattern == want, f"{_freeze_text(f, tensor)}: {f.pattern} (abrupt: 10-90 % range <= "
                                      f"{abrupt_below:g}); expected {want}", f.to_dict(),
                   measured=f.range_10_90_relative)


@check("freeze_is_abrupt")
def freeze_is_abrupt(ctx: CheckContext, tensor: str = "W", abrupt_below: float = DEFAULT_ABRUPT_BELOW) -> Verdict:
    """The dead tokens freeze together: their freeze steps' 10-90 % range is at most `abrupt_below` of the run."""
    return _freeze_pattern(ctx, "abrupt", tensor, abrupt_below)


@check("freeze_is_progressive")
def freeze_is_progressive(ctx: CheckContext, tensor: str = "W", abrupt_below: float = DEFAULT_ABRUPT_BELOW) -> Verdict:
    """The dead tokens freeze one by one: their freeze steps' 10-90 % range exceeds `abrupt_below` of the run."""
    return _freeze_pattern(ctx, "progressive", tensor, abrupt_below)


@check("inhale_happens")
def inhale_happens(ctx: CheckContext, tensor: str = "W", min_depth: float = 0.0, center: str = "centroid") -> Verdict:
    """The dead cloud's mean radius (distance of the dead rows from their centroid, or center
    "origin": from the origin) dips below its start (by more than `min_depth`, relative) before it
    first exceeds it."""
    i = inhale(ctx.traj, tensor, center=center)
    if i.first_dip_step is None:
        seen = "never dips below its start" + (f" before it exceeds it at step {i.first_growth_step}"
                                                if i.first_growth_step is not None else "")
    else:
        grows = (f"first above it at step {i.first_growth_step}" if i.first_growth_step is not None
                 else "never above it afterwards")
        seen = (f"dips below its start from step {i.first_dip_step} for {i.dip_frames} frame(s), by {i.depth:.3%} at "
                f"step {i.min_step}; {grows}")
    ok = i.happened and i.depth > min_depth
    return Verdict(ok, f"mean distance of the dead rows of {tensor} from {MEASURED_FROM[center]} (start "
                       f"{i.radius_start:.5g}) {seen}; expected an inhale deeper than {min_depth:.3%}", i.to_dict(),
                   measured=i.depth)


def _collapse_count(ctx: CheckContext, measure: str, tensor: str, step: int) -> tuple[Collapse, int]:
    if measure not in COLLAPSE_MEASURES:
        raise ValueError(f"collapse: measure = {measure!r}: expected one of {', '.join(COLLAPSE_MEASURES)}")
    c = collapse(ctx.traj, tensor, step)
    return c, int(getattr(c, measure))


def _collapse_text(c: Collapse, tensor: str, measure: str, value: int) -> str:
    return (f"dead rows of {tensor} at step {c.step}: {c.identical_rows} of {c.n_tokens} bit-identical to another row "
            f"(largest group {c.largest_identical_group}), {c.near_rows} within one ULP (largest cluster "
            f"{c.largest_near_cluster}); {measure} = {value}")


@check("collapse_at_most")
def collapse_at_most(ctx: CheckContext, count: int, tensor: str = "W", measure: str = "identical_rows",
                     step: int = -1) -> Verdict:
    """At optimizer step `step` (-1: the last frame) the collapse `measure` of the dead rows is at most `count`."""
    c, value = _collapse_count(ctx, measure, tensor, step)
    return Verdict(value <= count, f"{_collapse_text(c, tensor, measure, value)}, expected <= {count}", c.to_dict(),
                   measured=value)


@check("collapse_at_least")
def collapse_at_least(ctx: CheckContext, count: int, tensor: str = "W", measure: str = "identical_rows",
                      step: int = -1) -> Verdict:
    """At optimizer step `step` (-1: the last frame) the collapse `measure` of the dead rows is at least `count`."""
    c, value = _collapse_count(ctx, measure, tensor, step)
    return Verdict(value >= count, f"{_collapse_text(c, tensor, measure, value)}, expected >= {count}", c.to_dict(),
                   measured=value)


@check("outward_share_between")
def outward_share_between(ctx: CheckContext, low: float, high: float, tensor: str = "W", first_step: int = 0,
                          last_step: int = -1, center: str = "centroid") -> Verdict:
    """Of the dead rows' steps after `first_step` up to `last_step` (-1: the end) that moved, the
    share pointing away from the previous frame's dead centroid (center "origin": from the origin)
    is in [low, high]."""
    o = outward_share(ctx.traj, tensor, center=center)
    share, moving = o.share_between(first_step, last_step)
    until = "the end" if last_step == -1 else f"step {last_step}"
    read = f"dead rows of {tensor}, steps after {first_step} to {until}, outward from {MEASURED_FROM[center]}"
    if share is None:
        return Verdict(False, f"{read}: no row moved; expected an outward share in [{low:g}, {high:g}]", o.to_dict())
    return Verdict(low <= share <= high, f"{read}: {share:.3f} of {moving} moving steps point outward; expected "
                                         f"[{low:g}, {high:g}]", o.to_dict(), measured=share)


@check("live_flux_at_least")
def live_flux_at_least(ctx: CheckContext, crossings: int, tensor: str = "W", radius: str = DEFAULT_RADIUS) -> Verdict:
    """Live tokens enter or leave the dead cloud's ball (radius: the dead rows' `radius` distance)
    at least `crossings` times over the run."""
    f = flux(ctx.traj, tensor, radius)
    total = f.entries_total + f.exits_total
    return Verdict(total >= crossings, f"live rows of {tensor} through the dead cloud's {radius} ball: "
                                       f"{f.entries_total} entries and {f.exits_total} exits ({f.inside_first} inside "
                                       f"at the start, {f.inside_last} at the end); expected >= {crossings} crossings",
                   f.to_dict(), measured=total)
