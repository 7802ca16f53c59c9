"""Checks that a broken run cannot pass: four sabotaged cores, each run as a real smoke-scale seed
scenario (real model, data, files), each failing the expectation that guards against it.

The sabotage is done in-process on the real objects, through run_scenario's `prepare` hook:
gradients negated after backward (gradient ascent), the model built untied while the scenario
says tied, the optimizer's weight decay dropped, the learning rate zero. The same scenarios pass
unsabotaged in `pytest scenarios` (the smoke-scale expectations of every seed scenario).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from core.optim import build_optimizer
from core.step import Backward, StepKernels
from core.train import Training
from harness.runner import evaluate, run_scenario
from harness.scenario.load import load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


class GradientAscent(StepKernels):
    """The chosen kernels, with every gradient negated after backward and clipping."""

    name = "sabotaged: gradient ascent"

    def __init__(self, inner: StepKernels):
        self.inner = inner

    def forward_backward(self, model, inputs, targets, max_grad_norm, capture_grads=(), capture_logits=False
                         ) -> Backward:
        out = self.inner.forward_backward(model, inputs, targets, max_grad_norm, capture_grads, capture_logits)
        for param in model.parameters():
            if param.grad is not None:
                param.grad.neg_()
        return out


def negate_gradients(training: Training) -> None:
    training.kernels = GradientAscent(training.kernels)


def build_untied(training: Training) -> None:
    model = training.model
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    training.optimizer = build_optimizer(model, training.optim_cfg)
    assert not training.tied


def drop_weight_decay(training: Training) -> None:
    for group in training.optimizer.param_groups:
        group["weight_decay"] = 0.0


def zero_learning_rate(training: Training) -> None:
    training.optim_cfg = dataclasses.replace(training.optim_cfg, lr=0.0)


SABOTAGES = {  # (scenario, sabotage, the check that must fail, words its failure must hold)
    "gradients-negated": ("flannel_1", negate_gradients, "loss_decreases", "expected the loss to drop"),
    "built-untied": ("flannel_1", build_untied, "tied_identity", "embeddings_shared = False"),
    "weight-decay-dropped": ("untied_decay_below_ulp", drop_weight_decay, "decay_below_ulp_noop",
                             "weight decay for transformer.wte.weight was 0.0"),
    "learning-rate-zero": ("flannel_2", zero_learning_rate, "loss_decreases", "expected the loss to drop"),
}


@pytest.mark.parametrize("sabotage", list(SABOTAGES))
def test_a_sabotaged_core_fails_a_smoke_scale_expectation(sabotage, tmp_path):
    name, prepare, guard, words = SABOTAGES[sabotage]
    scenario = load_scenario(SCENARIOS / f"{name}.toml", scale="smoke")
    result = run_scenario(scenario, tmp_path, progress=False, prepare=prepare)
    verdicts = {e.id: (e.check, v) for e, v in evaluate(scenario, result.path) if e.check != "deterministic"}
    failed = {check: verdict.message for check, verdict in verdicts.values() if not verdict.passed}
    assert guard in failed, f"{sabotage}: every expectation passed but determinism: {verdicts}"
    assert words in failed[guard], failed[guard]
