"""Each check's verdict, word for word, on small trajectory files written to pass or fail it: every
branch of harness/checks/library.py and the measures it uses, with the numbers known in advance
(tests/check_files.py says what the files hold). Fast: the guard of harness/checks in
`nox -s mutants` (docs/testing.md), where a changed message, threshold or branch must fail a test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from check_files import D, DEAD, base, verdict, write
from harness.checks.library import SHOW, _ids_text, frame_for
from harness.checks.measures import bf16_ordinal, center_of, cloud_radius, radius_dips_before_growing, token_ids
from core.trajectory import Trajectory


def move_dead_e(step, t):  # dead token 13's row of E moves by 2 from step 2; live token 3 never moves
    if step >= 2:
        t["E"][13] += 2
    t["E"][3] = 3.0


def grad_on_dead(step, t):
    if step == 2:
        t["grad_E"][14, 1] = -0.75
        t["grad_E"][12, 0] = 0.5


def non_finite(step, t):
    if step == 1:
        t["W"][3, :2] = float("inf")
    if step == 3:
        t["W"][0, 0] = float("nan")


def late_events(step, t):  # 40 frames, two streamed blocks: dead row 13 of E moves, grad and W go bad at 35
    if step >= 35:
        t["E"][13] += 1
    if step == 35:
        t["grad_E"][14, 0] = 1.0
        t["W"][2, 0] = float("nan")


def non_finite_in_both_blocks(step, t):
    non_finite(step, t)
    late_events(step, t)


def dead_cloud_dips_late(step, t):  # the dead cloud of W: spread 2, then 1 from step 33, 3 from step 36
    spread = 2 if step < 33 else 1 if step < 36 else 3
    t["W"][DEAD] = (torch.tensor(DEAD, dtype=torch.float32)[:, None] * spread).expand(4, D).to(torch.bfloat16)


def w_is_e(step, t):
    t["W"] = t["E"].clone()


def dip_then_grow(step, t):  # the dead cloud of W: spread 2, 1, 3, 4 (x 2 per unit): dips at step 1
    t["W"][DEAD] = (torch.tensor(DEAD, dtype=torch.float32)[:, None] * (2, 1, 3, 4)[step]).expand(4, D).to(torch.bfloat16)


def shrink(step, t):  # the dead cloud of W only shrinks
    t["W"][DEAD] = (torch.tensor(DEAD, dtype=torch.float32)[:, None] * (4, 3, 2, 1)[step]).expand(4, D).to(torch.bfloat16)


ONE_GROUP = [{"lr": 0.01, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8,
              "params": ["transformer.wte.weight", "lm_head.weight"]}]
TWICE = ONE_GROUP + [{**ONE_GROUP[0], "weight_decay": 0.1}]
SMALL_DECAY = [{**ONE_GROUP[0], "weight_decay": 0.1}]

# (case id, write() arguments, check, check arguments)
CASES = [
    ("equal-defaults", {}, "equal", {}),
    ("zero_displacement-defaults", {}, "zero_displacement", {}),
    ("nonzero_displacement-defaults", {}, "nonzero_displacement", {}),
    ("zero_gradient-defaults", {}, "zero_gradient", {}),
    ("finite-defaults", {}, "finite", {}),
    ("loss_decreases-defaults", {}, "loss_decreases", {}),
    ("decay_below_ulp_noop-defaults", {}, "decay_below_ulp_noop", {}),
    ("displacement_exceeds-defaults", {}, "displacement_exceeds", {}),
    ("radius_dips_before_growing-defaults", {}, "radius_dips_before_growing", {}),
    ("equal-pass", {}, "equal", {"a": "E", "b": "W", "step": 0}),
    ("equal-step-2", {}, "equal", {"a": "E", "b": "W", "step": 2}),
    ("zero_displacement-pass", {}, "zero_displacement", {"tensor": "E", "tokens": "dead"}),
    ("zero_displacement-fail", {"edit": move_dead_e}, "zero_displacement", {"tensor": "E", "tokens": [13, 12, 3]}),
    ("zero_displacement-live", {"frames": 3}, "zero_displacement", {"tensor": "W", "tokens": "live"}),
    ("zero_displacement-40-frames", {"frames": 40, "edit": late_events}, "zero_displacement", {"tensor": "E", "tokens": "dead"}),
    ("zero_gradient-40-frames", {"frames": 40, "edit": late_events}, "zero_gradient", {"tensor": "grad_E", "tokens": "dead"}),
    ("finite-40-frames", {"frames": 40, "edit": late_events}, "finite", {"tensor": "W"}),
    ("radius-40-frames", {"frames": 40, "edit": dead_cloud_dips_late}, "radius_dips_before_growing", {"tensor": "W", "tokens": "dead"}),
    ("tied_identity-apart-differ-40-frames", {"shared": True, "frames": 40}, "tied_identity", {}),
    ("loss_decreases-defaults-40-frames", {"frames": 40, "loss": [0] + [10 - i / 8 for i in range(1, 40)]},
     "loss_decreases", {}),
    ("decay_below_ulp_noop-defaults-below", {"groups": SMALL_DECAY}, "decay_below_ulp_noop", {}),
    ("decay-lr-nan-7-steps", {"groups": SMALL_DECAY, "lr": float("nan"), "frames": 8}, "decay_below_ulp_noop", {}),
    ("decay-moved-two-tokens", {"groups": SMALL_DECAY, "edit": move_dead_e}, "decay_below_ulp_noop",
     {"tensor": "E", "tokens": [12, 13]}),
    ("radius-two-tokens", {"edit": dip_then_grow}, "radius_dips_before_growing", {"tensor": "W", "tokens": [12, 15]}),
    ("finite-40-frames-both-blocks", {"frames": 40, "edit": non_finite_in_both_blocks}, "finite", {"tensor": "W"}),
    ("zero_displacement-empty", {}, "zero_displacement", {"tensor": "E", "tokens": []}),
    ("nonzero_displacement-pass", {}, "nonzero_displacement", {"tensor": "W", "tokens": "all"}),
    ("nonzero_displacement-fraction", {}, "nonzero_displacement", {"tensor": "E", "tokens": "all", "min_fraction": 0.75}),
    ("nonzero_displacement-all-without-W", {"tensors": ["E"]}, "nonzero_displacement",
     {"tensor": "E", "tokens": "all", "min_fraction": 0.75}),
    ("zero_displacement-never-input", {}, "zero_displacement", {"tensor": "E", "tokens": "never_input"}),
    ("nonzero_displacement-fail", {}, "nonzero_displacement", {"tensor": "E", "tokens": "all", "min_fraction": 0.8}),
    ("nonzero_displacement-empty", {}, "nonzero_displacement", {"tensor": "E", "tokens": []}),
    ("zero_gradient-pass", {}, "zero_gradient", {"tensor": "grad_E", "tokens": "dead"}),
    ("zero_gradient-fail", {"edit": grad_on_dead}, "zero_gradient", {"tensor": "grad_E", "tokens": "dead"}),
    ("zero_gradient-live", {}, "zero_gradient", {"tensor": "grad_E", "tokens": [0, 1, 2, 12]}),
    ("zero_gradient-empty", {}, "zero_gradient", {"tensor": "grad_E", "tokens": []}),
    ("tied_identity-unrecorded", {"shared": None}, "tied_identity", {}),
    ("tied_identity-untied", {"shared": False}, "tied_identity", {}),
    ("tied_identity-no-E", {"shared": True, "tensors": ["W"]}, "tied_identity", {}),
    ("tied_identity-linked", {"shared": True, "tied": True, "tensors": ["E", "W"]}, "tied_identity", {}),
    ("tied_identity-apart-equal", {"shared": True, "edit": w_is_e}, "tied_identity", {}),
    ("tied_identity-apart-differ", {"shared": True}, "tied_identity", {}),
    ("tied_identity-apart-40-frames", {"shared": True, "edit": w_is_e, "frames": 40}, "tied_identity", {}),  # 2 blocks
    ("finite-W", {"edit": non_finite}, "finite", {"tensor": "W"}),
    ("finite-E", {"edit": non_finite}, "finite", {"tensor": "E"}),
    ("finite-loss", {"loss": [0, 9.0, float("inf"), 9.0]}, "finite", {"tensor": "loss"}),
    ("finite-lr", {}, "finite", {"tensor": "lr"}),
    ("loss_decreases-pass", {"frames": 7, "loss": [0, 9.5, 9.25, 9.0, 8.75, 8.5, 8.0]}, "loss_decreases",
     {"window": 3, "min_drop": 0.5}),
    ("loss_decreases-at-margin", {"frames": 7, "loss": [0, 9.5, 9.5, 9.5, 9.0, 9.0, 9.0]}, "loss_decreases",
     {"window": 3, "min_drop": 0.5}),
    ("loss_decreases-window", {"frames": 7, "loss": [0, 9.5, 9.25, 9.0, 8.75, 8.5, 8.0]}, "loss_decreases", {}),
    ("decay-unrecorded", {"groups": None}, "decay_below_ulp_noop", {"tensor": "E", "tokens": "dead"}),
    ("decay-twice", {"groups": TWICE}, "decay_below_ulp_noop", {"tensor": "W", "tokens": "dead"}),
    ("decay-none", {"groups": ONE_GROUP}, "decay_below_ulp_noop", {"tensor": "E", "tokens": "dead"}),
    ("decay-lr-nan", {"groups": SMALL_DECAY, "lr": float("nan")}, "decay_below_ulp_noop", {"tensor": "E", "tokens": "dead"}),
    ("decay-lr-none", {"groups": SMALL_DECAY, "frames": 1}, "decay_below_ulp_noop", {"tensor": "E", "tokens": "dead"}),
    ("decay-pass", {"groups": SMALL_DECAY}, "decay_below_ulp_noop", {"tensor": "E", "tokens": "dead"}),
    ("decay-moved", {"groups": SMALL_DECAY, "edit": move_dead_e}, "decay_below_ulp_noop", {"tensor": "E", "tokens": "dead"}),
    ("decay-W", {"groups": SMALL_DECAY}, "decay_below_ulp_noop", {"tensor": "W", "tokens": "dead"}),
    ("decay-at-half-ulp", {"lr": 2.0**-8}, "decay_below_ulp_noop", {"tensor": "E", "tokens": "dead"}),  # 2^-8 * 0.5
    ("displacement_exceeds-pass", {}, "displacement_exceeds", {"tensor": "E", "tokens": "live", "than": "dead"}),
    ("displacement_exceeds-step", {"edit": move_dead_e}, "displacement_exceeds", {"tensor": "E", "tokens": "dead", "than": "live", "step": 2}),
    ("displacement_exceeds-equal", {}, "displacement_exceeds", {"tensor": "W", "tokens": "dead", "than": "live"}),
    ("displacement_exceeds-empty", {}, "displacement_exceeds", {"tensor": "W", "tokens": "dead", "than": []}),
    ("radius-pass", {"edit": dip_then_grow}, "radius_dips_before_growing", {"tensor": "W", "tokens": "dead"}),
    ("radius-shrink", {"edit": shrink}, "radius_dips_before_growing", {"tensor": "W", "tokens": "dead"}),
    ("radius-one-token", {}, "radius_dips_before_growing", {"tensor": "W", "tokens": [3]}),
]

EXPECTED = {
    'finite-40-frames-both-blocks': (False, 'expected finite W over 40 frames; 4 non-finite values, at steps [1, 3, 35]'),
    'decay-lr-nan-7-steps': (False, 'the recorded lr holds 7 steps, not all finite: [nan, nan, nan, nan, nan]'),
    'decay-moved-two-tokens': (False, "dataset lr, steps 1..3: largest recorded lr 0.01 * weight decay 0.1 of transformer.wte.weight's group = 0.001 < 2^-9: expected E rows of [12, 13] tokens never to move; read 4 frames (steps 0..3): 1 of 2 moved, first at step 2; largest |displacement| 2; tokens that moved most: [13]; steps of first moves: [2]"),
    'radius-two-tokens': (True, 'mean radius of the 2 [12, 15] rows of W over 4 frames: minimum 3 at step 1 (-50.000%), first above the start (6) at step 2'),
    'decay_below_ulp_noop-defaults-below': (True, "dataset lr, steps 1..3: largest recorded lr 0.01 * weight decay 0.1 of transformer.wte.weight's group = 0.001 < 2^-9: 4 dead rows of E never moved over 4 frames"),
    'equal-defaults': (True, 'E and W are bit-identical at step 0'),
    'zero_displacement-defaults': (True, '4 dead rows of E never moved over 4 frames'),
    'nonzero_displacement-defaults': (True, '4 of 4 dead rows of W (100.0%) moved by step 3'),
    'zero_gradient-defaults': (True, 'grad_E rows of 4 dead tokens are zero in all 4 frames'),
    'finite-defaults': (True, 'all values of W are finite'),
    'loss_decreases-defaults': (False, 'expected the loss to drop by more than 0.0; mean loss of the first 1 recorded steps (1..1) 9.0000, of the last 1 (3..3) 9.0000 (drop 0.0000)'),
    'decay_below_ulp_noop-defaults': (False, "dataset lr, steps 1..3: largest recorded lr 0.01 * weight decay 0.5 of transformer.wte.weight's group = 0.005: not below 2^-9 = 0.00195"),
    'displacement_exceeds-defaults': (False, 'expected dead to move further than live; mean displacement of W rows from step 0 to 3: 4 dead 0.75, 12 live 0.75 (ratio 1)'),
    'radius_dips_before_growing-defaults': (False, 'expected a contraction before growth; mean radius of the 4 dead rows of W over 4 frames: minimum 2 at step 0 (+0.000%), never above the start (2)'),
    'tied_identity-apart-differ-40-frames': (False, 'expected E == W (embeddings_shared = True); they differ in 39 of 40 frames, at steps [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... 29 more]; largest |E - W| = 4.88'),
    'loss_decreases-defaults-40-frames': (True, 'mean loss of the first 10 recorded steps (1..10) 9.3125, of the last 10 (30..39) 5.6875 (drop 3.6250)'),
    'zero_displacement-40-frames': (False, 'expected E rows of dead tokens never to move; read 40 frames (steps 0..39): 1 of 4 moved, first at step 35; largest |displacement| 1; tokens that moved most: [13]; steps of first moves: [35]'),
    'zero_gradient-40-frames': (False, 'expected zero grad_E rows for 4 dead tokens over 40 frames; 1 tokens had nonzero gradient [14] at steps [35]; largest |grad_E| 1'),
    'finite-40-frames': (False, 'expected finite W over 40 frames; 1 non-finite values, at steps [35]'),
    'radius-40-frames': (True, 'mean radius of the 4 dead rows of W over 40 frames: minimum 2 at step 33 (-50.000%), first above the start (4) at step 36'),
    'equal-pass': (True, 'E and W are bit-identical at step 0'),
    'equal-step-2': (False, 'expected E == W bit for bit at step 2; 4 rows differ, largest |E - W| = 0.25 at tokens [12, 13, 14, 15]'),
    'zero_displacement-pass': (True, '4 dead rows of E never moved over 4 frames'),
    'zero_displacement-fail': (False, 'expected E rows of [13, 12, 3] tokens never to move; read 4 frames (steps 0..3): 1 of 3 moved, first at step 2; largest |displacement| 2; tokens that moved most: [13]; steps of first moves: [2]'),
    'zero_displacement-live': (False, 'expected W rows of live tokens never to move; read 3 frames (steps 0..2): 12 of 12 moved, first at step 1; largest |displacement| 0.25; tokens that moved most: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... 2 more]; steps of first moves: [1]'),
    'zero_displacement-empty': (False, 'the token set [] is empty: nothing to check'),
    'nonzero_displacement-pass': (True, '16 of 16 all rows of W (100.0%) moved by step 3'),
    'nonzero_displacement-fraction': (True, '12 of 16 all rows of E (75.0%) moved by step 3'),
    'nonzero_displacement-all-without-W': (True, '12 of 16 all rows of E (75.0%) moved by step 3'),
    'zero_displacement-never-input': (False, 'expected E rows of never_input tokens never to move; read 4 frames (steps 0..3): 1 of 5 moved, first at step 1; largest |displacement| 0.375; tokens that moved most: [11]; steps of first moves: [1]'),
    'nonzero_displacement-fail': (False, 'expected at least 80.0% to move; 12 of 16 all rows of E (75.0%) moved by step 3; unmoved: [12, 13, 14, 15]'),
    'nonzero_displacement-empty': (False, 'the token set [] is empty: nothing to check'),
    'zero_gradient-pass': (True, 'grad_E rows of 4 dead tokens are zero in all 4 frames'),
    'zero_gradient-fail': (False, 'expected zero grad_E rows for 4 dead tokens over 4 frames; 2 tokens had nonzero gradient [12, 14] at steps [2]; largest |grad_E| 0.75'),
    'zero_gradient-live': (False, 'expected zero grad_E rows for 4 [0, 1, 2, 12] tokens over 4 frames; 3 tokens had nonzero gradient [0, 1, 2] at steps [1, 2, 3]; largest |grad_E| 0.25'),
    'zero_gradient-empty': (False, 'the token set [] is empty: nothing to check'),
    'tied_identity-unrecorded': (False, "the file does not record whether the run's E and W were one parameter (attribute embeddings_shared, recorded since 2026-12-03): run the scenario again"),
    'tied_identity-untied': (False, "expected a tied model; the run's E and W were separate parameters (attribute embeddings_shared = False)"),
    'tied_identity-no-E': (False, 'expected both E and W in the file (record E or W in a tied run)'),
    'tied_identity-linked': (True, 'E and W are one dataset over 4 frames'),
    'tied_identity-apart-equal': (True, 'E and W stored apart but equal at all 4 frames'),
    'tied_identity-apart-40-frames': (True, 'E and W stored apart but equal at all 40 frames'),
    'tied_identity-apart-differ': (False, 'expected E == W (embeddings_shared = True); they differ in 3 of 4 frames, at steps [1, 2, 3]; largest |E - W| = 0.375'),
    'finite-W': (False, 'expected finite W over 4 frames; 3 non-finite values, at steps [1, 3]'),
    'finite-E': (True, 'all values of E are finite'),
    'finite-loss': (False, 'expected finite loss over 4 frames; 1 non-finite values, at steps [2]'),
    'finite-lr': (True, 'all values of lr are finite'),
    'loss_decreases-pass': (True, 'mean loss of the first 3 recorded steps (1..3) 9.2500, of the last 3 (4..6) 8.4167 (drop 0.8333)'),
    'loss_decreases-at-margin': (False, 'expected the loss to drop by more than 0.5; mean loss of the first 3 recorded steps (1..3) 9.5000, of the last 3 (4..6) 9.0000 (drop 0.5000)'),
    'loss_decreases-window': (True, 'mean loss of the first 3 recorded steps (1..3) 9.2500, of the last 3 (4..6) 8.4167 (drop 0.8333)'),
    'decay-unrecorded': (False, "the file does not record the optimizer's param groups (attribute optimizer_groups, recorded since 2026-12-03): run the scenario again"),
    'decay-twice': (False, 'lm_head.weight is in 2 of the recorded optimizer groups, not one'),
    'decay-none': (False, "the optimizer's weight decay for transformer.wte.weight was 0.0 (attribute optimizer_groups): no decay to round away"),
    'decay-lr-nan': (False, 'the recorded lr holds 3 steps, not all finite: [nan, nan, nan]'),
    'decay-lr-none': (False, 'the recorded lr holds 0 steps, not all finite: []'),
    'decay-pass': (True, "dataset lr, steps 1..3: largest recorded lr 0.01 * weight decay 0.1 of transformer.wte.weight's group = 0.001 < 2^-9: 4 dead rows of E never moved over 4 frames"),
    'decay-moved': (False, "dataset lr, steps 1..3: largest recorded lr 0.01 * weight decay 0.1 of transformer.wte.weight's group = 0.001 < 2^-9: expected E rows of dead tokens never to move; read 4 frames (steps 0..3): 1 of 4 moved, first at step 2; largest |displacement| 2; tokens that moved most: [13]; steps of first moves: [2]"),
    'decay-W': (False, "dataset lr, steps 1..3: largest recorded lr 0.01 * weight decay 0.1 of lm_head.weight's group = 0.001 < 2^-9: expected W rows of dead tokens never to move; read 4 frames (steps 0..3): 4 of 4 moved, first at step 1; largest |displacement| 0.375; tokens that moved most: [12, 13, 14, 15]; steps of first moves: [1]"),
    'decay-at-half-ulp': (False, "dataset lr, steps 1..3: largest recorded lr 0.00391 * weight decay 0.5 of transformer.wte.weight's group = 0.00195: not below 2^-9 = 0.00195"),
    'displacement_exceeds-pass': (True, 'mean displacement of E rows from step 0 to 3: 12 live 0.75, 4 dead 0'),
    'displacement_exceeds-step': (True, 'mean displacement of E rows from step 0 to 2: 4 dead 1, 12 live 0.4583 (ratio 2.18)'),
    'displacement_exceeds-equal': (False, 'expected dead to move further than live; mean displacement of W rows from step 0 to 3: 4 dead 0.75, 12 live 0.75 (ratio 1)'),
    'displacement_exceeds-empty': (False, 'the token set [] is empty: nothing to compare'),
    'radius-pass': (True, 'mean radius of the 4 dead rows of W over 4 frames: minimum 2 at step 1 (-50.000%), first above the start (4) at step 2'),
    'radius-shrink': (False, 'expected a contraction before growth; mean radius of the 4 dead rows of W over 4 frames: minimum 2 at step 3 (-75.000%), never above the start (8)'),
    'radius-one-token': (False, 'the token set [3] has 1 tokens: no cloud'),
}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_verdict_word_for_word(tmp_path, case):
    case_id, written, name, args = case
    result = verdict(write(tmp_path / "run.h5", **written), name, **args)
    assert (result.passed, result.message) == EXPECTED[case_id]


def test_worst_lists_name_the_offending_tokens_and_steps(tmp_path):
    moved = verdict(write(tmp_path / "a.h5", edit=move_dead_e), "zero_displacement", tensor="E", tokens=[3, 12, 13])
    assert moved.worst == {"tokens": [13], "first_steps": [2]}
    grads = verdict(write(tmp_path / "b.h5", edit=grad_on_dead), "zero_gradient", tensor="grad_E", tokens="dead")
    assert grads.worst == {"tokens": [12, 14], "steps": [2]}
    unmoved = verdict(write(tmp_path / "c.h5"), "nonzero_displacement", tensor="E", tokens="all")
    assert unmoved.worst == {"tokens": DEAD}
    bad = verdict(write(tmp_path / "d.h5", edit=non_finite), "finite", tensor="W")
    assert bad.worst == {"steps": [1, 3]}
    differ = verdict(write(tmp_path / "e.h5"), "equal", a="E", b="W", step=-1)
    assert differ.worst == {"tokens": DEAD}
    radius = verdict(write(tmp_path / "f.h5", edit=shrink), "radius_dips_before_growing", tensor="W", tokens="dead")
    assert radius.worst["radius"] == pytest.approx([8.0, 6.0, 4.0, 2.0])
    decay = verdict(write(tmp_path / "g.h5", groups=SMALL_DECAY, edit=move_dead_e), "decay_below_ulp_noop")
    assert decay.worst == {"tokens": [13], "first_steps": [2]}
    long = write(tmp_path / "long.h5", frames=102)  # lists in a verdict stop at 100 entries (101 steps with a gradient)
    assert len(verdict(long, "radius_dips_before_growing").worst["radius"]) == 100
    assert len(verdict(long, "zero_gradient", tokens="live").worst["steps"]) == 100


def two_movers(step, t):  # dead rows of E move from step 1: token 12 by 1, token 13 (later in the ids) by 2
    if step >= 1:
        t["E"][12] += 1
        t["E"][13] += 2


def test_the_rows_that_moved_most_come_first(tmp_path):
    v = verdict(write(tmp_path / "m.h5", edit=two_movers), "zero_displacement", tensor="E", tokens="dead")
    assert v.worst == {"tokens": [13, 12], "first_steps": [1]} and "largest |displacement| 2;" in v.message


def first_and_last(step, t):  # dead row 12 of E moves at step 1 only, dead row 13 at the last step (3) only
    if step >= 1:
        t["E"][12] += 1
    if step == 3:
        t["E"][13] += 1


def test_nonzero_displacement_compares_the_first_frame_with_the_last(tmp_path):
    v = verdict(write(tmp_path / "fl.h5", edit=first_and_last), "nonzero_displacement", tensor="E", tokens=[12, 13])
    assert v.passed and v.message.startswith("2 of 2 ")


WIDE = 128  # tokens: more than the 100 a verdict lists


def wide_gaps(step, t):  # E never moves; W = E + 1 (even tokens) or + 2 (odd) from step 1: ties in the gaps
    t["E"] = base(0, WIDE)
    if step >= 1:
        t["W"] = base(0, WIDE) + (torch.arange(WIDE) % 2 + 1)[:, None].to(torch.bfloat16)


def staggered(step, t):  # token t's row of E moves first at step t; W[0, 0] is NaN from step 1
    t["E"] = base(0, WIDE)
    t["E"][1 : step + 1] = -1
    if step >= 1:
        t["W"][0, 0] = float("nan")


def test_worst_lists_stop_at_100_entries(tmp_path):
    wide = write(tmp_path / "wide.h5", frames=2, edit=wide_gaps, vocab=WIDE)
    differ = verdict(wide, "equal", a="E", b="W", step=-1)  # named largest gap first, ties in token order
    assert differ.worst == {"tokens": list(range(100))}
    assert "largest |E - W| = 2 at tokens [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, ... 118 more]" in differ.message
    moved = verdict(wide, "zero_displacement", tensor="W", tokens="all")
    assert len(moved.worst["tokens"]) == 100 and moved.worst["first_steps"] == [1]
    assert len(verdict(wide, "nonzero_displacement", tensor="E", tokens="all").worst["tokens"]) == 100
    assert len(verdict(wide, "zero_gradient", tensor="grad_E", tokens="all").worst["tokens"]) == 100
    long = write(tmp_path / "long.h5", frames=110, edit=staggered, vocab=WIDE)
    assert verdict(long, "zero_displacement", tensor="E", tokens="all").worst["first_steps"] == list(range(1, 101))
    assert verdict(long, "finite", tensor="W").worst == {"steps": list(range(1, 101))}


def test_deterministic_compares_every_dataset_of_a_rerun_bounded_by_the_recorded_steps(tmp_path):
    path = write(tmp_path / "run.h5")
    asked = []

    def rerun(n):
        asked.append(n)
        return path

    assert verdict(path, "deterministic", rerun=rerun, steps=10).message == (
        "a second run of 3 steps reproduced all 8 datasets bit for bit")
    assert asked == [3]  # the 3 steps the file recorded, not the 10 asked for
    assert verdict(path, "deterministic", rerun=rerun).passed and asked == [3, 2]  # by default the first 2 steps
    none = verdict(path, "deterministic")
    assert (none.passed, none.message) == (False, "no rerun available in this context")
    fewer = write(tmp_path / "fewer.h5", tensors=["W"])
    other = verdict(path, "deterministic", rerun=lambda n: fewer, steps=2)
    assert (other.passed, other.message) == (False, "expected a second run to record the same datasets; it recorded "
                                             "['W', 'grad_norm', 'loss', 'lr', 'step'], this run ['E', 'W', 'grad_E', "
                                             "'grad_norm', 'logits', 'loss', 'lr', 'step']")
    loss = write(tmp_path / "loss.h5", loss=[0, 9.0, 9.0, 8.0])
    differ = verdict(path, "deterministic", rerun=lambda n: loss, steps=3)
    assert (differ.passed, differ.message) == (False, "expected a second run to reproduce loss bit for bit over 4 "
                                               "frames; it differs first at step 3: 1 of 1 values")
    nan = write(tmp_path / "nan.h5", loss=[0, 9.0, float("nan"), 9.0])  # NaN where this run has 9.0
    assert verdict(path, "deterministic", rerun=lambda n: nan, steps=3).message.endswith("first at step 2: 1 of 1 values")
    assert verdict(nan, "deterministic", rerun=lambda n: nan, steps=3).passed  # NaN where both have NaN: the same


def test_helpers_name_ids_and_frames(tmp_path):
    assert _ids_text(range(3)) == "[0, 1, 2]" and _ids_text([], total=5) == "[] of 5"
    assert _ids_text(range(SHOW + 2), total=99) == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... 2 more] of 99"
    assert _ids_text(range(SHOW)) == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
    assert _ids_text(range(SHOW + 1)) == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... 1 more]"
    with Trajectory(write(tmp_path / "run.h5")) as traj:
        assert (frame_for(traj, -1), frame_for(traj, 0), frame_for(traj, 2)) == (3, 0, 2)
        assert token_ids(traj, []).dtype == token_ids(traj, [3, 1]).dtype == np.int64  # ids index rows, even none
        assert token_ids(traj, "all").tolist() == list(range(16))


def test_bf16_ordinal_distance_is_ulps_across_zero_and_the_whole_range():
    x = torch.tensor([1.0, -1.0, 0.0, -0.0], dtype=torch.bfloat16)
    up = (x.view(torch.int16) + 1).view(torch.bfloat16)  # next magnitude: +1 ULP away from zero
    assert (bf16_ordinal(up) - bf16_ordinal(x)).abs().tolist() == [1, 1, 1, 1]
    tiny = torch.tensor([-(2.0 ** -130), 2.0 ** -130], dtype=torch.bfloat16)
    assert int(bf16_ordinal(tiny)[1] - bf16_ordinal(tiny)[0]) > 0
    big = torch.finfo(torch.bfloat16).max
    ends = torch.tensor([-big, -1.0, -0.0, 0.0, 1.0, big], dtype=torch.bfloat16)
    ordinal = bf16_ordinal(ends)
    assert ordinal.dtype == torch.int32 and ordinal.tolist() == [-32640, -16257, -1, 0, 16256, 32639]
    assert int(ordinal[-1] - ordinal[0]) == 65279  # 32,639 ULPs from 0 to the largest value on each side, 1 from -0 to +0


def test_radius_dip_measure_on_known_series():
    assert radius_dips_before_growing(np.array([2.0, 1.0, 3.0])) == {
        "dips": True, "min_frame": 1, "min_relative": -0.5, "first_growth_frame": 2}
    assert radius_dips_before_growing(np.array([2.0, 2.0, 1.0])) == {
        "dips": False, "min_frame": 2, "min_relative": -0.5, "first_growth_frame": None}
    assert radius_dips_before_growing(np.array([2.0, 3.0, 1.0])) == {
        "dips": False, "min_frame": 0, "min_relative": 0.0, "first_growth_frame": 1}
    assert radius_dips_before_growing(np.array([2.0, 0.0]))["min_relative"] == -1.0
    assert radius_dips_before_growing(np.array([0.0, 0.0])) == {
        "dips": False, "min_frame": 0, "min_relative": 0.0, "first_growth_frame": None}


def test_cloud_radius_from_the_centroid_and_from_the_origin(tmp_path):
    """Dead rows of W are t + step/8 in each of 4 columns (t = 12..15): 2 |t - 13.5| from their
    centroid (mean 2 at every step), 2 (t + step/8) from the origin (mean 27 + step/4)."""
    ids = np.array(DEAD)
    with Trajectory(write(tmp_path / "run.h5")) as traj:
        for chunk in (1, 3):  # frame by frame, and blocks that end mid-run
            assert cloud_radius(traj, "W", ids, chunk=chunk).tolist() == [2.0] * 4
            assert cloud_radius(traj, "W", ids, chunk=chunk, center="origin").tolist() == [27.0, 27.25, 27.5, 27.75]
    for frames in (4, 0):  # a bad center is refused before any frame is read, even when there is none
        with Trajectory(write(tmp_path / f"f{frames}.h5", frames=frames)) as traj:
            with pytest.raises(ValueError, match=r"^center = 'middle': expected one of centroid, origin$"):
                cloud_radius(traj, "W", ids, center="middle")
    rows = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)  # (C, n, D)
    assert torch.equal(center_of(rows, "centroid"), rows.mean(1, keepdim=True))
    assert torch.equal(center_of(rows, "origin"), torch.zeros(2, 1, 4))
