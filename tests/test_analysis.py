"""harness.report.analysis on trajectories written through the real recorder, with known answers.

Frames are built from values on a coarse grid (multiples of 1/16, |x| < 8) so that every
sum below is exact in bfloat16 and the expected numbers are exact too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.recorder import RecordConfig, TrajectoryWriter
from core.token_tables import TokenTables
from harness.checks.measures import radius_dips_before_growing
from harness.report.analysis import analyse, auroc, summarize

V, D = 8, 4
DEAD = np.array([False, False, False, False, True, True, True, True])  # tokens 4-7 dead


def write(path, frames: list[dict[str, torch.Tensor]], tied: bool, chunk_steps=None) -> None:
    names = ["W"] if tied else ["E", "W"]
    tokens = TokenTables(DEAD, np.where(DEAD, 0, 5), [f"t{i}" for i in range(V)])
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=tied, config=RecordConfig(tensors=names),
                          tokens=tokens) as writer:
        for step, frame in enumerate(frames):
            writer.append(step, {n: frame[n].to(torch.bfloat16) for n in names}, loss=1.0)


def base() -> torch.Tensor:
    """(V, D): each set a symmetric cloud around its own centre, on the 1/16 grid."""
    x = torch.zeros(V, D)
    offsets = torch.tensor([[1, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0]], dtype=torch.float32) / 4
    x[:4] = offsets + torch.tensor([2.0, 0, 0, 0])
    x[4:] = offsets + torch.tensor([0.0, 0, 2.0, 0])
    return x


@pytest.mark.parametrize("chunk", [1, 2, 16])
def test_a_translation_moves_everything_but_nothing_in_the_comoving_frame(tmp_path, chunk):
    shift = torch.tensor([0.125, 0, -0.25, 0])  # |shift| = sqrt(0.078125)
    frames = [{"W": base() + k * shift} for k in range(5)]
    write(tmp_path / "t.h5", frames, tied=True)
    a = analyse(tmp_path / "t.h5", chunk=chunk)
    norm = float(shift.norm())
    for s in ("dead", "live"):
        np.testing.assert_allclose(a[f"W/{s}/displacement_mean"], [k * norm for k in range(5)], rtol=1e-6)
        np.testing.assert_allclose(a[f"W/{s}/step_mean"], [0] + [norm] * 4, rtol=1e-6)
        np.testing.assert_allclose(a[f"W/{s}/centroid_drift"], [k * norm for k in range(5)], rtol=1e-6)
        np.testing.assert_array_equal(a[f"W/{s}/comoving_mean"], 0)
        np.testing.assert_allclose(a[f"W/{s}/radius_mean"], 0.25, rtol=1e-6)
        np.testing.assert_allclose(a[f"W/{s}/radial_mean"][1:], 0, atol=1e-7)  # symmetric cloud: no net outward
        np.testing.assert_array_equal(a[f"W/{s}/moved_fraction"], [0, 1, 1, 1, 1])
    assert list(a.steps) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(a["W/last_moved_step"], 4)


def test_a_pure_radial_step_is_all_radial_and_outward(tmp_path):
    x0 = base()
    x1 = x0.clone()
    x1[4:] = x0[4:] + (x0[4:] - x0[4:].mean(0)) * 1  # every dead token doubles its distance from the centre
    write(tmp_path / "r.h5", [{"W": x0}, {"W": x1}], tied=True)
    a = analyse(tmp_path / "r.h5")
    np.testing.assert_allclose(a["W/dead/radial_mean"][1], 0.25, rtol=1e-6)
    np.testing.assert_allclose(a["W/dead/tangential_mean"][1], 0, atol=1e-7)
    assert a["W/dead/outward_fraction"][1] == 1.0
    np.testing.assert_allclose(a["W/dead/radius_mean"], [0.25, 0.5], rtol=1e-6)
    assert a["W/live/moved_fraction"][1] == 0 and math.isnan(a["W/live/outward_fraction"][1])


def test_a_frozen_token_and_one_ulp_moves_on_the_bf16_lattice(tmp_path):
    x = base().to(torch.bfloat16)
    frames = [x]
    for step in range(1, 6):
        nxt = frames[-1].clone()
        bits = nxt.view(torch.int16)
        bits[0, 0] += 1  # token 0: one ULP every step
        if step <= 2:
            bits[5, 1] += 3  # token 5 (dead): three ULPs, then frozen after step 2
        frames.append(nxt)
    write(tmp_path / "l.h5", [{"W": f} for f in frames], tied=True)
    a = analyse(tmp_path / "l.h5", chunk=2)
    last = a["W/last_moved_step"]
    assert last[0] == 5 and last[5] == 2 and (np.delete(last, [0, 5]) == 0).all()
    np.testing.assert_array_equal(a["W/live/changed_fraction"], [0] + [1 / (4 * D)] * 5)
    np.testing.assert_array_equal(a["W/live/changed_ulps_mean"][1:], 1)
    np.testing.assert_array_equal(a["W/live/one_ulp_fraction"][1:], 1)
    np.testing.assert_array_equal(a["W/dead/changed_ulps_mean"][1:3], 3)
    assert np.isnan(a["W/dead/changed_ulps_mean"][3:]).all()  # nothing changed: no ULP size
    s = summarize(a)["tensors"]["W"]["last_moved_step"]
    assert s["dead"] == {"never_moved": 3, "median": 0.0, "max": 2}


def test_untied_e_minus_w_is_the_known_matrix(tmp_path):
    m = torch.zeros(V, D)
    m[4, 0], m[6, 3], m[1, 2] = 0.5, -0.25, 0.125
    frames = [{"E": base(), "W": base()}, {"E": base(), "W": base() + m}]
    write(tmp_path / "u.h5", frames, tied=False)
    a = analyse(tmp_path / "u.h5")
    assert a.tensors == ["E", "W"] and not a.tied
    np.testing.assert_allclose(a["E-W/all/frobenius"], [0, math.sqrt(0.25 + 0.0625 + 0.015625)], rtol=1e-6)
    np.testing.assert_allclose(a["E-W/dead/frobenius"], [0, math.sqrt(0.25 + 0.0625)], rtol=1e-6)
    np.testing.assert_allclose(a["E-W/live/frobenius"], [0, 0.125], rtol=1e-6)
    np.testing.assert_array_equal(a["E/dead/displacement_mean"], 0)
    assert summarize(a)["E_minus_W"]["dead"] == pytest.approx(math.sqrt(0.3125))


def test_indicator_separates_a_dead_cloud_from_the_live_one(tmp_path):
    write(tmp_path / "i.h5", [{"W": base()}], tied=True)
    a = analyse(tmp_path / "i.h5")
    assert a["W/indicator_auroc"][0] == 1.0  # every dead row is closer in angle to the dead mean
    assert a["W/indicator_cosine"].shape == (V,)


def test_auroc_counts_ties_as_one_half():
    scores = torch.tensor([3.0, 1.0, 2.0, 2.0])
    positive = torch.tensor([True, False, True, False])
    assert auroc(scores, positive) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert auroc(scores, ~positive) == pytest.approx(1 - 3.5 / 4)


def test_radius_dip_detection():
    assert radius_dips_before_growing(np.array([1.0, 0.9, 0.95, 1.2]))["dips"]
    assert radius_dips_before_growing(np.array([1.0, 0.9, 0.95, 1.2]))["min_frame"] == 1
    assert not radius_dips_before_growing(np.array([1.0, 1.1, 0.9]))["dips"]
    never_grows = radius_dips_before_growing(np.array([1.0, 0.8]))
    assert never_grows["first_growth_frame"] is None and not never_grows["dips"]


def test_a_file_without_e_or_w_is_a_clear_error(tmp_path):
    with TrajectoryWriter(tmp_path / "g.h5", vocab_size=V, dim=D, tied=True,
                          config=RecordConfig(tensors=["grad_W"])) as writer:
        writer.append(0, {"grad_W": torch.zeros(V, D, dtype=torch.bfloat16)})
    with pytest.raises(ValueError, match="records neither E nor W"):
        analyse(tmp_path / "g.h5")


def _cloud_frames(radii: list[float]) -> list[dict[str, torch.Tensor]]:
    frames = []
    for r in radii:
        x = base()
        x[4:] = x[4:].mean(0) + (x[4:] - x[4:].mean(0)) * (r / 0.25)
        frames.append({"W": x})
    return frames


@pytest.mark.parametrize("radii, dips", [([0.25, 0.1875, 0.125, 0.375], True), ([0.25, 0.375, 0.125], False),
                                         ([0.25, 0.125, 0.125], False)])
def test_radius_check_reads_the_recorded_cloud(tmp_path, radii, dips):
    from core.trajectory import Trajectory
    from harness.checks import CheckContext, run_check

    write(tmp_path / "c.h5", _cloud_frames(radii), tied=True)
    with Trajectory(tmp_path / "c.h5") as traj:
        verdict = run_check("radius_dips_before_growing", CheckContext(traj, None), {"tensor": "W", "tokens": "dead"})
    assert verdict.passed == dips, verdict.message
    if dips:
        assert "minimum 0.125 at step 2 (-50.000%), first above the start (0.25) at step 3" in verdict.message
    else:
        assert verdict.message.startswith("expected a contraction before growth")
