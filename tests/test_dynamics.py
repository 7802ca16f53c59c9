"""harness.dynamics on trajectories written through the real recorder with known answers, and
once on a real (smoke-scale) training run.

Coordinates are multiples of 1/16 with |x| < 8 (or bit patterns set directly), so every value
is exact in bfloat16 and every expected number below is exact or close to it.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.recorder import RecordConfig, TrajectoryWriter
from core.token_tables import TokenTables
from core.trajectory import Trajectory
from harness.checks import CheckContext, run_check
from harness.dynamics import (collapse, dynamics_summary, flux, freeze, inhale, measure_dynamics, outward_share,
                              supernova_end)
from harness.dynamics.collapse import one_ulp_links
from harness.dynamics.flux import ball_radius
from harness.runner import run_scenario
from harness.scenario.load import load_scenario
from harness.sweep.dynamics import inhale_fraction, pooled_outward_share_between, supernova_ends_between
from harness.sweep.aggregates import RunFile
from harness.sweep.report import cross_table
from harness.sweep.run import load_sweep, run_sweep
from harness.sweep.spec import SweepError

D = 4
CROSS = torch.tensor([[1, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0]], dtype=torch.float32)  # (4, D)


def write(path, frames: list[torch.Tensor], n_dead: int, steps: list[int] | None = None):
    """Frames (V, D) into a tied trajectory whose last `n_dead` tokens are dead; returns the path."""
    v = frames[0].shape[0]
    dead = np.arange(v) >= v - n_dead
    tokens = TokenTables(dead, np.where(dead, 0, 5), [f"t{i}" for i in range(v)])
    with TrajectoryWriter(path, vocab_size=v, dim=D, tied=True, config=RecordConfig(tensors=["W"]),
                          tokens=tokens) as writer:
        for step, frame in zip(steps or range(len(frames)), frames):
            writer.append(step, {"W": frame.to(torch.bfloat16)}, loss=1.0)
    return path


def live_and_dead(dead_rows: torch.Tensor, n_live: int = 4) -> torch.Tensor:
    """(n_live + n_dead, D): live rows far away on the last axis, then the dead rows."""
    live = torch.zeros(n_live, D)
    live[:, 3] = 6 + torch.arange(n_live, dtype=torch.float32) / 4
    return torch.cat([live, dead_rows])


def check(path, name: str, **args):
    with Trajectory(path) as traj:
        return run_check(name, CheckContext(traj, None), args)


# ------------------------------------------------------------------ supernova
POSITIONS = [0, 1, 3, 3.5, 3.75, 3.875, 4.0]  # dead cloud's x: step lengths 1, 2, 0.5, 0.25, 0.125, 0.125


def translated(positions) -> list[torch.Tensor]:
    return [live_and_dead(CROSS + torch.tensor([p, 0, 0, 0])) for p in positions]


@pytest.mark.parametrize("chunk", [1, 2, 16])
def test_supernova_ends_after_the_last_step_above_a_tenth_of_the_peak(tmp_path, chunk):
    path = write(tmp_path / "s.h5", translated(POSITIONS), n_dead=4)
    s = supernova_end(path, chunk=chunk)
    np.testing.assert_allclose(s.speed[1:], [1, 2, 0.5, 0.25, 0.125, 0.125])
    assert math.isnan(s.speed[0])
    assert (s.peak_step, s.peak_speed, s.threshold) == (2, 2.0, pytest.approx(0.2))
    assert s.end_step == 4  # the step-4 move (0.25) is the last one above 0.2
    assert s.to_dict()["settled_frames"] == 2
    assert supernova_end(path, fraction=0.2).end_step == 3  # above 0.4: the step-3 move (0.5) is the last
    assert supernova_end(path, fraction=0.3).end_step == 2  # above 0.6: the peak itself is the last
    json.dumps(s.to_dict())


def test_supernova_speed_is_per_optimizer_step_when_frames_are_apart(tmp_path):
    path = write(tmp_path / "every.h5", translated(POSITIONS), n_dead=4, steps=[0, 10, 20, 30, 40, 50, 60])
    s = supernova_end(path)
    np.testing.assert_allclose(s.speed[1:], np.array([1, 2, 0.5, 0.25, 0.125, 0.125]) / 10)
    assert s.end_step == 40 and s.to_dict()["settled_frames"] == 2  # the frames at steps 50 and 60


def test_a_cloud_still_at_its_peak_speed_has_not_ended(tmp_path):
    path = write(tmp_path / "on.h5", translated([0, 1, 2, 3]), n_dead=4)
    s = supernova_end(path)
    assert s.end_step is None and s.peak_speed == 1.0 and s.to_dict()["settled_frames"] == 0
    v = check(path, "supernova_ends_by", step=3)
    assert not v.passed and "never by the last step 3" in v.message and v.measured is None
    moving = write(tmp_path / "ends.h5", translated(POSITIONS), n_dead=4)
    assert check(moving, "supernova_ends_by", step=4).passed
    v = check(moving, "supernova_ends_by", step=3)
    assert not v.passed and "from step 4; expected from step 3 or earlier" in v.message and v.measured == 4
    with pytest.raises(ValueError, match="fraction"):
        supernova_end(moving, fraction=1.5)


# ------------------------------------------------------------------ freeze
def ulp_walk(last_change: list[int], steps: int) -> list[torch.Tensor]:
    """Dead token k moves one ULP (coordinate 0) at every step up to last_change[k], then stays."""
    n = len(last_change)
    rows = live_and_dead(torch.arange(1, n + 1, dtype=torch.float32)[:, None] * torch.tensor([[1.0, 0.5, 0, 0]]))
    frames = [rows.to(torch.bfloat16)]
    for step in range(1, steps + 1):
        nxt = frames[-1].clone()
        for k, last in enumerate(last_change):
            if step <= last:
                nxt.view(torch.int16)[4 + k, 0] += 1
        frames.append(nxt)
    return frames


@pytest.mark.parametrize("chunk", [3, 16])
def test_an_abrupt_freeze_vs_a_progressive_one(tmp_path, chunk):
    abrupt = write(tmp_path / "a.h5", ulp_walk([10, 10, 11, 10, 11, 10, 10, 11], 40), n_dead=8)
    f = freeze(abrupt, chunk=chunk)
    assert f.pattern == "abrupt" and f.n_frozen == 8 and f.still_moving == 0 and f.run_steps == 40
    assert f.freeze_steps.tolist() == [10, 10, 11, 10, 11, 10, 10, 11]
    assert f.range_10_90_relative == pytest.approx(1 / 40)
    assert sum(f.histogram_counts) == 8 and f.histogram_counts[5] == 8  # bins of 2 steps: [10, 12)
    np.testing.assert_array_equal(f.moving_fraction[[0, 1, 10, 11, 12]], [0, 1, 1, 3 / 8, 0])

    progressive = write(tmp_path / "p.h5", ulp_walk([3 * (k + 1) for k in range(8)] + [0, 40], 40), n_dead=10)
    f = freeze(progressive, chunk=chunk)
    assert f.pattern == "progressive" and f.never_moved == 1 and f.still_moving == 1
    assert f.freeze_steps.tolist() == [3, 6, 9, 12, 15, 18, 21, 24, 0, 40]
    frozen = np.array([3, 6, 9, 12, 15, 18, 21, 24])  # not the token that never moved
    p10, p90 = np.percentile(frozen, [10, 90])
    assert f.n_frozen == 8 and f.range_10_90_relative == pytest.approx((p90 - p10) / 40)
    assert f.median_step == 13.5

    assert check(abrupt, "freeze_is_abrupt").passed and not check(abrupt, "freeze_is_progressive").passed
    v = check(progressive, "freeze_is_abrupt")
    assert not v.passed and "progressive" in v.message and "8 of 10 frozen" in v.message
    assert v.measured == f.range_10_90_relative
    assert check(progressive, "freeze_spread_below", spread=0.05, statistic="iqr").measured == f.iqr_relative
    assert check(progressive, "freeze_is_progressive").passed
    assert check(progressive, "freeze_is_abrupt", abrupt_below=0.9).passed  # the threshold is the stated one
    assert check(abrupt, "freeze_spread_below", spread=0.05).passed
    assert not check(progressive, "freeze_spread_below", spread=0.05, statistic="iqr").passed


def test_a_change_is_bit_level_so_a_zero_changing_sign_is_a_move(tmp_path):
    frames = [live_and_dead(CROSS).to(torch.bfloat16) for _ in range(4)]
    for f in frames[2:]:
        f[4, 3] = -0.0  # dead token 0's coordinate 3: +0 -> -0 at step 2, equal as values
    f = freeze(write(tmp_path / "z.h5", frames, n_dead=4))
    assert f.freeze_steps.tolist() == [2, 0, 0, 0] and f.n_frozen == 1 and f.never_moved == 3
    assert f.pattern == "abrupt" and f.range_10_90_relative == 0


def test_a_cloud_still_moving_at_the_end_or_never_moving_has_not_frozen(tmp_path):
    path = write(tmp_path / "m.h5", ulp_walk([5, 5], 5), n_dead=2)
    f = freeze(path)
    assert f.pattern == "none frozen" and f.still_moving == 2 and f.range_10_90_relative is None
    assert not check(path, "freeze_spread_below", spread=1.0).passed
    still = freeze(write(tmp_path / "still.h5", ulp_walk([0, 0, 0], 5), n_dead=3))
    assert still.pattern == "none frozen" and still.never_moved == 3 and still.n_frozen == 0


# ------------------------------------------------------------------ flux
def test_flux_counts_live_tokens_crossing_the_dead_ball(tmp_path):
    # dead: the unit cross around (3, 0, 0, 0), every distance 1 (so p90 = mean = 1); live tokens on
    # the z axis through that centre. The ball is the dead rows' own, wherever they sit.
    z = [[2, 0.5, 0.5, 3, 0.25],  # live 0: out, in, in, out, in
         [0.5] * 5,  # live 1: always inside
         [5] * 5,  # live 2: always outside
         [0.75, 0.75, 1.5, 1.5, 1.5],  # live 3: in, in, out, out, out
         [1] * 5]  # live 4: on the sphere, which is inside
    offset = torch.tensor([3.0, 0, 0, 0])
    frames = []
    for t in range(5):
        live = torch.zeros(5, D)
        live[:, 2] = torch.tensor([row[t] for row in z])
        frames.append(torch.cat([live, CROSS]) + offset)
    path = write(tmp_path / "f.h5", frames, n_dead=4)
    for chunk in (1, 2, 16):
        f = flux(path, chunk=chunk)
        assert f.inside.tolist() == [3, 4, 3, 2, 3]
        assert f.entries.tolist() == [0, 1, 0, 0, 1]
        assert f.exits.tolist() == [0, 0, 1, 1, 0]
        assert (f.entries_total, f.exits_total, f.n_live, f.n_dead) == (2, 2, 5, 4)
        assert (f.inside_first, f.inside_last, f.inside_max, f.radius_statistic, f.tensor) == (3, 3, 4, "p90", "W")
        assert f.steps.tolist() == [0, 1, 2, 3, 4]
        assert f.inside.dtype == f.entries.dtype == f.exits.dtype == np.int64  # counts, as the dataclass says
        np.testing.assert_allclose(f.radius, 1.0)
    assert flux(path, radius="mean").entries.tolist() == [0, 1, 0, 0, 1]
    assert check(path, "live_flux_at_least", crossings=4).passed
    v = check(path, "live_flux_at_least", crossings=5)
    assert not v.passed and "2 entries and 2 exits" in v.message and v.measured == 4
    with pytest.raises(ValueError, match="radius = 'q9'"):
        flux(path, radius="q9")


def test_the_ball_radius_is_the_named_statistic_of_the_dead_distances():
    distances = torch.tensor([[1.0, 2.0, 3.0, 4.0, 10.0], [2.0, 2.0, 2.0, 2.0, 2.0]])  # (C, n)
    expected = {"mean": [4.0, 2.0], "median": [3.0, 2.0], "max": [10.0, 2.0], "p0": [1.0, 2.0], "p100": [10.0, 2.0],
                "p90": [7.6, 2.0], "p12.5": [1.5, 2.0]}  # percentiles interpolate: p90 = 4 + 0.6 (10 - 4)
    for statistic, want in expected.items():
        np.testing.assert_allclose(ball_radius(distances, statistic).numpy(), want, rtol=1e-6, err_msg=statistic)
    for bad in ("q9", "p101", "p-1", "p", "p9.9.9", "pmax", "MEAN", ""):
        with pytest.raises(ValueError, match=rf"^flux: radius = {re.escape(repr(bad))}: expected mean, median, max "
                                             r"or pNN \(a percentile, e\.g\. p90\)\.$"):
            ball_radius(distances, bad)


def test_a_shrinking_ball_sweeps_resting_live_tokens_out(tmp_path):
    live = torch.zeros(4, D)
    live[:, 2] = torch.tensor([0.25, 0.5, 0.75, 1.5])
    frames = [torch.cat([live, CROSS * s]) for s in (1, 0.625, 0.375)]  # radius 1, 0.625, 0.375
    f = flux(write(tmp_path / "b.h5", frames, n_dead=4))
    assert f.inside.tolist() == [3, 2, 1] and f.exits.tolist() == [0, 1, 1] and f.entries_total == 0


# ------------------------------------------------------------------ inhale
def breathing(radii, centre=(0.0, 0.0, 2.0, 0.0)) -> list[torch.Tensor]:
    return [live_and_dead(CROSS * r + torch.tensor(centre)) for r in radii]


@pytest.mark.parametrize("chunk", [1, 16])
def test_an_inhale_of_known_depth_and_timing(tmp_path, chunk):
    path = write(tmp_path / "i.h5", breathing([1, 0.75, 0.5, 0.75, 1.25, 2]), n_dead=4)
    i = inhale(path, chunk=chunk)
    assert i.happened and i.depth == pytest.approx(0.5)
    assert (i.first_dip_step, i.min_step, i.dip_frames, i.first_growth_step) == (1, 2, 3, 4)
    np.testing.assert_allclose(i.radius, [1, 0.75, 0.5, 0.75, 1.25, 2])
    assert check(path, "inhale_happens", min_depth=0.4).passed
    v = check(path, "inhale_happens", min_depth=0.6)
    assert not v.passed and "by 50.000% at step 2" in v.message and v.measured == pytest.approx(0.5)


def test_steps_not_frames_and_no_inhale(tmp_path):
    apart = write(tmp_path / "a.h5", breathing([1, 0.875, 1, 0.5, 2]), n_dead=4, steps=[0, 5, 10, 15, 20])
    i = inhale(apart)
    # below at step 5, back to the start (not above) at 10, below again at 15, above at 20
    assert i.happened and (i.first_dip_step, i.min_step, i.dip_frames, i.first_growth_step) == (5, 15, 1, 20)
    grows = inhale(write(tmp_path / "g.h5", breathing([1, 1.5, 0.5]), n_dead=4))
    assert not grows.happened and grows.first_dip_step is None and grows.first_growth_step == 1
    shrinks = inhale(write(tmp_path / "s.h5", breathing([1, 0.75, 0.5]), n_dead=4))
    assert not shrinks.happened and shrinks.depth == pytest.approx(0.5) and shrinks.first_growth_step is None
    assert not check(tmp_path / "s.h5", "inhale_happens").passed


def test_an_inhale_measured_from_the_origin_is_not_the_centroid_one(tmp_path):
    """A rigid cloud carried towards the origin, then away: its centroid radius never changes (no
    inhale about the centroid), while its rows' mean distance from the origin dips, then grows."""
    centres = [(0.0, 0.0, 4.0, 0.0), (0.0, 0.0, 3.0, 0.0), (0.0, 0.0, 2.0, 0.0), (0.0, 0.0, 5.0, 0.0)]
    path = write(tmp_path / "o.h5", [live_and_dead(CROSS * 0.5 + torch.tensor(c)) for c in centres], n_dead=4)
    about_centroid = inhale(path)
    assert not about_centroid.happened and about_centroid.first_dip_step is None
    np.testing.assert_allclose(about_centroid.radius, 0.5)
    i = inhale(path, center="origin")
    norms = [np.hypot(0.5, z) for z in (4, 3, 2, 5)]  # every row 0.5 off the z axis
    np.testing.assert_allclose(i.radius, norms, rtol=1e-6)
    assert i.center == "origin" and i.to_dict()["center"] == "origin"
    assert i.happened and (i.first_dip_step, i.min_step, i.dip_frames, i.first_growth_step) == (1, 2, 2, 3)
    assert i.depth == pytest.approx(1 - norms[2] / norms[0])
    v = check(path, "inhale_happens", center="origin")
    assert v.passed and "from the origin" in v.message and "at step 2" in v.message
    v = check(path, "inhale_happens")
    assert not v.passed and "from their centroid" in v.message and "never dips below its start" in v.message
    with pytest.raises(ValueError, match="center = 'middle': expected one of centroid, origin"):
        inhale(path, center="middle")


def collapsed_frame() -> torch.Tensor:
    """20 rows, 10 live (0-9) and 10 dead (10-19): dead 10, 11, 12 and live 1 share one vector,
    dead 13 equals live 0, dead 14-18 form a chain each one ULP from the next in coordinate 0 (so
    14 and 16 are two apart: a chain, not a clique), dead 19 is alone."""
    g = torch.Generator().manual_seed(0)
    rows = (torch.randn(20, D, generator=g) * 2).to(torch.bfloat16)
    rows[[10, 11, 12]] = rows[1].clone()
    rows[13] = rows[0].clone()
    for k in range(15, 19):
        rows[k] = rows[k - 1].clone()
        rows[k].view(torch.int16)[0] += 1
    return rows


def test_collapse_counts_identical_rows_and_one_ulp_clusters(tmp_path):
    rows = collapsed_frame()
    start = (torch.arange(20 * D, dtype=torch.float32).reshape(20, D) / 8 - 4).to(torch.bfloat16)
    path = write(tmp_path / "c.h5", [start, rows], n_dead=10)
    c = collapse(path)
    assert c.step == 1 and c.n_tokens == 10
    assert (c.identical_rows, c.identical_groups, c.largest_identical_group) == (4, 2, 4)
    assert (c.near_rows, c.near_clusters, c.largest_near_cluster, c.largest_near_cluster_dead) == (9, 3, 5, 5)
    assert collapse(path, step=0).near_rows == 0  # the start: rows 1/8 apart, far more than one ULP
    assert check(path, "collapse_at_least", count=4).passed
    v = check(path, "collapse_at_most", count=3)
    assert not v.passed and "4 of 10 bit-identical" in v.message and "expected <= 3" in v.message and v.measured == 4
    assert check(path, "collapse_at_least", count=6, measure="largest_near_cluster").measured == 5
    assert check(path, "collapse_at_least", count=5, measure="largest_near_cluster").passed
    assert not check(path, "collapse_at_least", count=6, measure="largest_near_cluster").passed
    with pytest.raises(ValueError, match="measure = 'rows'"):
        check(path, "collapse_at_most", count=1, measure="rows")


@pytest.mark.parametrize("pairs", [1, 7, 10**6])  # sources checked one at a time, in small runs, all at once
def test_one_ulp_links_are_every_pair_within_one_in_every_coordinate(pairs):
    """Against brute force: random ordinals 0..4 in 3 coordinates, so neighbours differ by -1, 0 and
    +1 in the sorted coordinate and many rows are linked."""
    gen = torch.Generator().manual_seed(0)
    ords = torch.randint(0, 5, (60, 3), generator=gen, dtype=torch.int32)
    sources = np.arange(0, 60, 2)
    src, dst = one_ulp_links(ords, sources, pairs)
    close = (ords[:, None, :] - ords[None, :, :]).abs().amax(-1) <= 1  # (n, n)
    expected = {(int(i), int(j)) for i in sources for j in range(60) if j != i and close[i, j]}
    assert src.dtype == dst.dtype == np.int64 and len(src) == len(expected) > 100
    assert set(zip(src.tolist(), dst.tolist())) == expected


def test_a_token_that_last_moves_at_step_1_froze_at_step_1(tmp_path):
    f = freeze(write(tmp_path / "early.h5", ulp_walk([1, 2, 5, 0], 10), n_dead=4))
    assert f.freeze_steps.tolist() == [1, 2, 5, 0] and (f.n_frozen, f.never_moved, f.still_moving) == (3, 1, 0)


def test_cluster_sizes_count_rows_and_dead_rows_not_patterns(tmp_path):
    """Dead 19 one ULP from the shared vector of dead 10-12 and live 1: a cluster of two patterns,
    5 rows, 4 of them dead. The chain breaks into 14-15 and 16-18. Live 5 and 6, identical and
    far from every dead row, are no cluster of dead rows."""
    rows = collapsed_frame()
    rows[19] = rows[10].clone()
    rows[19].view(torch.int16)[1] += 1
    rows[16:19].view(torch.int16)[:, 0] += 1
    rows[6] = rows[5].clone()
    c = collapse(write(tmp_path / "c3.h5", [rows], n_dead=10))
    assert (c.identical_rows, c.identical_groups, c.largest_identical_group) == (4, 2, 4)
    assert (c.near_rows, c.near_clusters, c.largest_near_cluster, c.largest_near_cluster_dead) == (10, 4, 5, 4)
    assert (c.tensor, c.tokens) == ("W", "dead")
    alone = collapse(write(tmp_path / "c4.h5", [torch.arange(20 * D).reshape(20, D).to(torch.bfloat16)], n_dead=10))
    assert (alone.identical_rows, alone.identical_groups, alone.largest_identical_group, alone.near_rows) == (0, 0, 0, 0)


def test_two_ulps_apart_is_not_near(tmp_path):
    rows = collapsed_frame()
    rows[15:19].view(torch.int16)[:, 0] += 1  # 14-15 now two ULPs apart: the chain breaks into 14 | 15-18
    c = collapse(write(tmp_path / "c2.h5", [rows], n_dead=10))
    assert (c.near_rows, c.near_clusters, c.largest_near_cluster) == (8, 3, 4)


# ------------------------------------------------------------------ outward share
def outward_frames() -> list[torch.Tensor]:
    scale = torch.tensor([1.0, 1, 1, 1])  # per dead row (the cross around 0): distance from the centre
    side = torch.zeros(4, D)  # tangential offsets
    frames = [live_and_dead(CROSS)]
    for rows in (lambda: scale[:2].mul_(2),  # 1: rows 0, 1 outward
                 lambda: scale[2:].mul_(0.5),  # 2: rows 2, 3 inward
                 lambda: (scale[:2].add_(1), side[2, 0].add_(0.5), side[3, 0].sub_(0.5)),  # 3: 2 out, 2 tangential
                 lambda: None):  # 4: nothing moves
        rows()
        frames.append(live_and_dead(CROSS * scale[:, None] + side))
    return frames


@pytest.mark.parametrize("chunk", [1, 16])
def test_outward_share_per_step_pooled_and_windowed(tmp_path, chunk):
    path = write(tmp_path / "o.h5", outward_frames(), n_dead=4)
    o = outward_share(path, windows=4, chunk=chunk)
    assert o.moving.tolist() == [0, 2, 2, 4, 0] and o.outward.tolist() == [0, 2, 0, 2, 0]
    np.testing.assert_array_equal(o.series, [np.nan, 1, 0, 0.5, np.nan])
    assert o.share == 0.5 and (o.outward_steps, o.moving_steps) == (4, 8)
    assert o.window_edges == [0, 1, 2, 3, 4] and o.window_share == [1.0, 0.0, 0.5, None]
    assert o.share_between(0, 1) == (1.0, 2) and o.share_between(1, -1) == (pytest.approx(2 / 6), 6)
    assert check(path, "outward_share_between", low=0.4, high=0.6).passed
    v = check(path, "outward_share_between", low=0.6, high=1.0, first_step=2)
    assert not v.passed and "0.500 of 4 moving steps" in v.message and v.measured == 0.5
    json.dumps(o.to_dict())


def test_a_drifting_cloud_steps_outward_from_the_origin_but_not_from_its_centroid(tmp_path):
    """Every dead row moves by the same step +z while the cloud sits at z > 0: from the origin all
    4 rows step outward at each frame; about the previous centroid the step is tangential to every
    row (none outward). A drift along +x instead is outward about the centroid for the +x row only,
    and from the origin for the rows at x > 0."""
    frames = [live_and_dead(CROSS + torch.tensor([0.0, 0.0, 1.0 + k, 0.0])) for k in range(4)]
    path = write(tmp_path / "d.h5", frames, n_dead=4)
    origin = outward_share(path, center="origin")
    assert origin.center == "origin" and origin.share == 1.0 and origin.moving.tolist() == [0, 4, 4, 4]
    assert outward_share(path).share == 0.0  # CROSS rows lie in x/y: the z step is tangential to each about the centre
    tilted = [live_and_dead(CROSS + torch.tensor([k, 0.0, 1.0, 0.0])) for k in range(3)]
    t = outward_share(write(tmp_path / "t.h5", tilted, n_dead=4), center="centroid")
    assert t.outward.tolist() == [0, 1, 1]  # the +x row steps away from the centre, the -x row towards it
    # from the origin: x = 1 only at frame 0 (the +x row); x = 2, 1, 1 (and 0) at frame 1
    assert outward_share(tmp_path / "t.h5", center="origin").outward.tolist() == [0, 1, 3]
    v = check(path, "outward_share_between", low=0.9, high=1.0, center="origin")
    assert v.passed and "outward from the origin: 1.000 of 12 moving steps" in v.message
    v = check(path, "outward_share_between", low=0.9, high=1.0)
    assert not v.passed and "outward from their centroid: 0.000 of 12" in v.message
    runs = [RunFile("d", path, None)]
    passed, _, text = pooled_outward_share_between(runs, low=0.9, high=1.0, center="origin")
    assert passed and "from the origin" in text and "pooled 1.000 of 12 steps" in text
    with pytest.raises(ValueError, match="center = 'zero'"):
        outward_share(path, center="zero")


def test_aggregates_state_a_fraction_of_runs_and_the_spread(tmp_path):
    inhales = write(tmp_path / "in.h5", breathing([1, 0.75, 0.5, 0.75, 1.25, 2]), n_dead=4)
    grows = write(tmp_path / "out.h5", breathing([1, 1.5, 0.5]), n_dead=4)
    runs = [RunFile("a", inhales, None), RunFile("b", grows, None)]
    passed, ok, text = inhale_fraction(runs, min_fraction=0.5)
    assert passed and ok == {"a": True, "b": False}
    assert "in 1 of 2 runs (50%, need 50%)" in text and "depth median 50.000%" in text
    assert not inhale_fraction(runs, min_fraction=1.0)[0]
    assert not inhale_fraction(runs, min_fraction=0.5, min_depth=0.6)[0]

    ends = write(tmp_path / "ends.h5", translated(POSITIONS), n_dead=4)
    never = write(tmp_path / "never.h5", translated([0, 1, 2, 3]), n_dead=4)
    runs = [RunFile("ends", ends, None), RunFile("never", never, None)]
    passed, ok, text = supernova_ends_between(runs, low=3, high=4, min_fraction=0.5)
    assert passed and ok == {"ends": True, "never": False} and "never settles in 1" in text
    assert not supernova_ends_between(runs, low=0, high=3, min_fraction=0.5)[0]
    passed, _, text = supernova_ends_between(runs, low=4, min_fraction=0.5)  # high -1: no upper bound
    assert passed and "at step 4 or later in 1 of 2 runs" in text and not supernova_ends_between(runs, low=5)[0]

    out = [RunFile(k, write(tmp_path / f"o{k}.h5", outward_frames(), n_dead=4), None) for k in "xy"]
    passed, ok, text = pooled_outward_share_between(out, low=0.45, high=0.55)
    assert passed and "pooled 0.500 of 16 steps" in text
    assert not pooled_outward_share_between(out, low=0.9, high=1, first_step=1)[0]


SWEEP = """\
name = "dyn"
scenario = "scenarios/tiny.toml"
set = {{"train.steps" = 3}}

[axes]
"init.seed" = [0, 1]

[[expect_all]]
id = "settles-at-once"
check = "supernova_ends_by"
step = 1
exploratory = "does the cloud settle after one step?"

[[expect_all]]
check = "outward_share_between"
low = 0
high = 1
{extra}
"""


def test_an_exploratory_expectation_is_reported_and_never_fails_the_sweep(write_scenario, tmp_path):
    write_scenario(tied=True, tensors='["W", "loss"]')
    path = tmp_path / "dyn.toml"
    path.write_text(SWEEP.format(extra='[[expect_all]]\ncheck = "inhale_fraction"\nmin_fraction = 0.5\n'
                                       'exploratory = true\n'), encoding="utf-8")
    result = run_sweep(load_sweep(path), tmp_path / "out", workers=1, progress=False)
    by_id = {v.id: v for v in result.cross}
    settles = by_id["settles-at-once"]
    assert not settles.passed and settles.exploratory == "does the cloud settle after one step?"
    assert "never by the last step 3" in settles.message
    assert by_id["W-outward_share_between"].passed and not by_id["W-outward_share_between"].exploratory
    assert by_id["W-inhale_fraction"].exploratory == "exploratory" and "of 2 runs" in by_id["W-inhale_fraction"].message
    assert result.ok, "a failed exploratory expectation must not fail the sweep"
    table = cross_table(result.cross)
    assert "NO    settles-at-once: 0/2 runs" in table and "(exploratory: does the cloud settle" in table
    assert "PASS  W-outward_share_between: 2/2 runs" in table

    path.write_text(SWEEP.format(extra="").replace("exploratory = \"does", "# ").replace(
        'after one step?"', ""), encoding="utf-8")
    strict = run_sweep(load_sweep(path), tmp_path / "out", workers=1, progress=False)  # the same runs, done
    assert not strict.ran and not strict.ok  # not exploratory: the same verdict fails the sweep


@pytest.mark.parametrize("extra, message", [
    ('[[expect_all]]\ncheck = "inhale_fraction"\nexploratory = 3\n', "exploratory = 3: expected true, false or"),
    ('[[expect_all]]\ncheck = "mean_radius_dips_before_growing"\nmin_fraction = 0.5\n',
     "min_fraction applies to per-run checks and to aggregates that take it"),
    ('[[expect_all]]\ncheck = "supernova_ends_between"\nlow = true\n', "low = True: expected int"),
])
def test_bad_dynamics_expectations_name_the_table(write_scenario, tmp_path, extra, message):
    write_scenario(tied=True, tensors='["W", "loss"]')
    path = tmp_path / "dyn.toml"
    path.write_text(SWEEP.format(extra=extra), encoding="utf-8")
    with pytest.raises(SweepError, match=rf"dyn.toml: expect_all\[2\].*{message}"):
        load_sweep(path)


# ------------------------------------------------------------------ the stated definitions
@pytest.mark.parametrize("module", ["supernova", "freeze", "flux", "inhale", "collapse", "outward"])
def test_each_definition_is_one_sentence_in_its_module_and_in_the_docs(module):
    doc = importlib.import_module(f"harness.dynamics.{module}").__doc__
    sentence = " ".join(re.search(r"Definition: (.*?)\n\n", doc, re.S).group(1).split())
    assert sentence.endswith(".") and sentence.count(". ") == 0, sentence
    page = " ".join((Path(__file__).parent.parent / "docs" / "dynamics.md").read_text(encoding="utf-8").split())
    assert sentence[0].upper() + sentence[1:] in page, f"docs/dynamics.md lacks the definition of {module}"


def test_the_command_writes_every_definition_as_json_and_names_a_bad_input(tmp_path):
    path = write(tmp_path / "i.h5", breathing([1, 0.75, 0.5, 0.75, 1.25, 2]), n_dead=4)
    run = [sys.executable, "-m", "harness.dynamics", str(path)]
    done = subprocess.run([*run, "--out", str(tmp_path / "d.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    assert written == {str(path): dynamics_summary(path)} and written[str(path)]["inhale"]["depth"] == 0.5
    bad = subprocess.run([*run, "--tensor", "grad_W"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and f"{path} has no 'grad_W'" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------ a real run
def test_every_definition_on_a_real_smoke_run(write_scenario, tmp_path):
    scenario = load_scenario(write_scenario(tied=True, steps=6, tensors='["W", "loss"]'))
    path = run_scenario(scenario, tmp_path / "runs", progress=False).path
    with Trajectory(path) as traj:
        frames, n_dead, n_live = len(traj), len(traj.dead), len(traj.live)
    assert frames == 7 and n_dead > 0 and n_live > 0
    summary = dynamics_summary(path)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["frames"] == 7 and summary["last_step"] == 6
    series = measure_dynamics(path).series()
    assert all(v.shape == (7,) for v in series.values()) and series["steps"].tolist() == list(range(7))
    s = supernova_end(path)
    assert s.speed.shape == (7,) and np.isfinite(s.speed[1:]).all() and s.peak_speed > 0
    f = freeze(path)
    assert f.freeze_steps.shape == (n_dead,) and f.n_frozen + f.still_moving == n_dead
    fl = flux(path)
    assert fl.inside.shape == fl.entries.shape == (7,) and (fl.inside <= n_live).all() and np.isfinite(fl.radius).all()
    i = inhale(path)
    assert i.radius.shape == (7,) and np.isfinite(i.radius).all() and 0 <= i.depth < 1
    c = collapse(path)
    assert c.n_tokens == n_dead and 0 <= c.identical_rows <= c.near_rows <= n_dead
    o = outward_share(path)
    assert o.moving.shape == (7,) and o.moving_steps > 0 and 0 <= o.share <= 1
