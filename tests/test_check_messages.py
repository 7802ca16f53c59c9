"""Every registered check, run on a small trajectory written to fail it, says what it read: the
dataset, and the measured number that broke it. Driven by the registry: a new check without a
failing case here fails `test_every_registered_check_has_a_failing_case`.

The trajectories are real files written by core.recorder's TrajectoryWriter from tensors chosen
so that the number each check measures is known exactly (vocab 16, dim 4: milliseconds each).
They are also the fast guard of harness/checks in `nox -s mutants` (docs/testing.md).
"""

from __future__ import annotations

import re

import pytest
import torch

from check_files import D, DEAD, base, verdict, write
from harness.checks import REGISTRY, CheckContext, Verdict, check, get_check, run_check
from harness.checks.registry import check_parameters
from harness.sweep.expect import AGGREGATES, RunFile

# ------------------------------------------------------------------ one failing case per check
# Each builds a file in `tmp`, runs the check with arguments, and returns the verdict with the
# dataset the check must name and the measured number (as the message prints it) that broke it.
def fail_equal(tmp):
    def edit(step, t):  # one row of W off by 0.5 at the last frame
        if step == 3:
            t["W"][5] += 0.5
    v = verdict(write(tmp / "f.h5", edit=edit), "equal", a="W", b="E", step=-1)
    return v, "W", "largest |W - E| = 0.5 at tokens [5, 12, 13, 14, 15]"  # the dead rows differ by 3/8 (E's stay put)


def fail_zero_displacement(tmp):
    def edit(step, t):  # dead token 13's row of E moves by 2 from step 2
        if step >= 2:
            t["E"][13] += 2
    v = verdict(write(tmp / "f.h5", edit=edit), "zero_displacement", tensor="E", tokens="dead")
    return v, "E", "largest |displacement| 2"


def fail_nonzero_displacement(tmp):
    v = verdict(write(tmp / "f.h5"), "nonzero_displacement", tensor="E", tokens="dead", min_fraction=0.5)
    return v, "E", "0 of 4 dead rows"


def fail_zero_gradient(tmp):
    def edit(step, t):
        if step == 2:
            t["grad_E"][14, 1] = -0.75
    v = verdict(write(tmp / "f.h5", edit=edit), "zero_gradient", tensor="grad_E", tokens="dead")
    return v, "grad_E", "largest |grad_E| 0.75"


def fail_tied_identity(tmp):
    v = verdict(write(tmp / "f.h5", shared=True), "tied_identity")  # one parameter, yet E and W differ
    return v, "E", "largest |E - W| = 0.375"


def fail_finite(tmp):
    def edit(step, t):
        if step == 1:
            t["W"][3, :2] = float("inf")
    v = verdict(write(tmp / "f.h5", edit=edit), "finite", tensor="W")
    return v, "W", "2 non-finite values"


def fail_loss_decreases(tmp):
    v = verdict(write(tmp / "f.h5", frames=5, loss=[0, 9.5, 9.25, 9.5, 9.75]), "loss_decreases", window=2,
                min_drop=0.1)
    return v, "loss", "-0.2500"  # (9.5 + 9.25) / 2 - (9.5 + 9.75) / 2


def fail_deterministic(tmp):
    def edit(step, t):
        if step == 2:
            t["grad_E"][1, 0] = 8.0
    original, again = write(tmp / "a.h5"), write(tmp / "b.h5", edit=edit)
    v = verdict(original, "deterministic", rerun=lambda n: again, steps=3)
    return v, "grad_E", "step 2: 1 of 64 values"


def fail_decay_below_ulp_noop(tmp):
    v = verdict(write(tmp / "f.h5"), "decay_below_ulp_noop", tensor="E", tokens="dead")  # 0.01 * 0.5 >= 2^-9
    return v, "lr", "= 0.005"


def fail_displacement_exceeds(tmp):
    v = verdict(write(tmp / "f.h5"), "displacement_exceeds", tensor="E", tokens="dead", than="live")
    return v, "E", "live 0.75"  # |3/8| in each of 4 columns: norm 0.75


def spread_dead_rows(step, t):  # the dead cloud of W only grows: rows spread by 1 + step
    t["W"][DEAD] = (torch.tensor(DEAD, dtype=torch.float32)[:, None] * (1 + step)).expand(4, D).to(torch.bfloat16)


def fail_radius_dips_before_growing(tmp):
    v = verdict(write(tmp / "f.h5", edit=spread_dead_rows), "radius_dips_before_growing", tensor="W", tokens="dead")
    return v, "W", "minimum 2 at step 0"  # |t - 13.5| * 2 averaged over t = 12..15, times sqrt(D) = 2


# The dynamics checks (harness/dynamics/checks.py): registered when harness.scenario.expectations is imported.
def freezing(last):  # dead row DEAD[i] of W stops moving after step last[i]
    def edit(step, t):
        for row, k in zip(DEAD, last):
            t["W"][row] = base(min(step, k))[row]
    return edit


def fail_supernova_ends_by(tmp):  # every row drifts 1/8 a step: the cloud never slows down
    v = verdict(write(tmp / "f.h5", frames=6), "supernova_ends_by", step=0)
    return v, "W", "speed peaks at 0.25 per step (step 1)"  # 1/8 in each of 4 columns: norm 0.25


def fail_freeze_spread_below(tmp):
    v = verdict(write(tmp / "f.h5", frames=9, edit=freezing([1, 3, 5, 7])), "freeze_spread_below", spread=0.2)
    return v, "W", "10-90 % range 0.600"  # (6.4 - 1.6) / 8 steps


def fail_freeze_is_abrupt(tmp):
    v = verdict(write(tmp / "f.h5", frames=9, edit=freezing([1, 3, 5, 7])), "freeze_is_abrupt")
    return v, "W", "10-90 % range 0.600"


def fail_freeze_is_progressive(tmp):
    v = verdict(write(tmp / "f.h5", frames=9, edit=freezing([2, 2, 2, 2])), "freeze_is_progressive")
    return v, "W", "10-90 % range 0.000"


def fail_inhale_happens(tmp):  # the dead cloud translates rigidly: its radius never dips
    v = verdict(write(tmp / "f.h5", frames=6), "inhale_happens")
    return v, "W", "(start 2) never dips below its start"


def fail_collapse_at_most(tmp):
    def edit(step, t):  # dead token 13's row of W is 12's
        t["W"][13] = t["W"][12]
    v = verdict(write(tmp / "f.h5", edit=edit), "collapse_at_most", count=0)
    return v, "W", "identical_rows = 2"


def fail_collapse_at_least(tmp):
    v = verdict(write(tmp / "f.h5"), "collapse_at_least", count=3)
    return v, "W", "identical_rows = 0"


def fail_outward_share_between(tmp):
    v = verdict(write(tmp / "f.h5", frames=6), "outward_share_between", low=0.9, high=1.0)
    return v, "W", "0.500 of 20 moving steps"


def fail_live_flux_at_least(tmp):
    v = verdict(write(tmp / "f.h5", frames=6), "live_flux_at_least", crossings=100)
    return v, "W", "0 entries and 0 exits"


FAILING = {name[len("fail_"):]: fn for name, fn in globals().items() if name.startswith("fail_")}


def test_every_registered_check_has_a_failing_case():
    assert set(REGISTRY) <= set(FAILING), f"add a fail_<check> case here for {sorted(set(REGISTRY) - set(FAILING))}"


@pytest.mark.parametrize("name", sorted(FAILING))
def test_a_failure_names_the_dataset_and_the_measured_number(tmp_path, name):
    result, dataset, number = FAILING[name](tmp_path)
    assert not result.passed, result.message
    assert re.search(rf"\b{dataset}\b", result.message), (dataset, result.message)
    assert number in result.message, (number, result.message)


def test_the_same_files_pass_where_they_should(tmp_path):
    """The fixture is not broken everywhere: its dead rows of E stay put, its live rows move."""
    path = write(tmp_path / "ok.h5")
    assert verdict(path, "zero_displacement", tensor="E", tokens="dead").passed
    assert verdict(path, "zero_gradient", tensor="grad_E", tokens="dead").passed
    assert verdict(path, "nonzero_displacement", tensor="W", tokens="live").passed
    assert verdict(path, "displacement_exceeds", tensor="E", tokens="live", than="dead").passed
    assert verdict(path, "finite", tensor="W").passed and verdict(path, "finite", tensor="loss").passed
    assert verdict(path, "equal", a="W", b="E", step=0).passed
    assert verdict(path, "deterministic", rerun=lambda n: path, steps=3).passed


def test_cross_run_aggregates_name_what_they_read(tmp_path):
    """A sweep's aggregates (harness.sweep.expect) on runs built to fail them: dataset, steps, the number."""
    assert set(AGGREGATES) == {"mean_radius_dips_before_growing", "inhale_fraction", "supernova_ends_between",
                               "pooled_outward_share_between"}, "add a failing case here for a new aggregate"
    runs = [RunFile(f"r{i}", write(tmp_path / f"r{i}.h5", edit=spread_dead_rows), None) for i in range(2)]
    passed, per_run, text = AGGREGATES["mean_radius_dips_before_growing"](runs, tensor="W", tokens="dead")
    assert not passed and per_run == {"r0": False, "r1": False}
    assert text.startswith("expected the mean radius to dip") and "dead radius of W over 2 runs" in text
    assert "minimum 2 at step 0" in text and "read the 4 steps 0..3" in text, text
    drifting = [RunFile(f"d{i}", write(tmp_path / f"d{i}.h5", frames=6), None) for i in range(2)]
    for name, args, number in [("inhale_fraction", {}, "in 0 of 2 runs"),
                               ("supernova_ends_between", dict(low=0, high=2), "never settles in 2"),
                               ("pooled_outward_share_between", dict(low=0.9, high=1.0), "pooled 0.500 of 40 steps")]:
        passed, per_run, text = AGGREGATES[name](drifting, **args)
        assert not passed and per_run == {"d0": False, "d1": False}, (name, text)
        assert "dead" in text and re.search(r"\bW\b", text) and number in text, (name, text)


def test_loss_decreases_needs_two_recorded_losses(tmp_path):
    one = verdict(write(tmp_path / "one.h5", frames=2, loss=[0, 9.0]), "loss_decreases")
    assert (one.passed, one.message) == (False, "need at least 2 recorded steps with a loss, have 1")
    two = verdict(write(tmp_path / "two.h5", frames=3, loss=[0, 9.0, 8.5]), "loss_decreases", window=10, min_drop=0.4)
    assert two.passed and two.message == ("mean loss of the first 1 recorded steps (1..1) 9.0000, of the last 1 (2..2) "
                                          "8.5000 (drop 0.5000)")


def test_a_check_is_registered_once_under_its_name():
    def always(ctx, level: int = 1) -> Verdict:
        return Verdict(True, f"level {level}")

    try:
        assert check("test_only_always")(always) is always
        assert get_check("test_only_always") is always and list(check_parameters(always)) == ["level"]
        assert run_check("test_only_always", CheckContext(None, None), {"level": 3}).message == "level 3"
        with pytest.raises(ValueError, match=r"^Check 'test_only_always' is already registered \(by test_check_messag"):
            check("test_only_always")(always)
    finally:
        REGISTRY.pop("test_only_always", None)
    with pytest.raises(KeyError, match="Unknown check 'test_only_always'. Available: .*decay_below_ulp_noop, deterministic, "):
        get_check("test_only_always")
