"""The bf16 AdamW step as transformers' Trainer ran it: param groups, clipping, LR schedule.

- `torch.optim.AdamW` on the bf16 parameters, so both moments are bf16 too (optim
  "adamw_torch"). Trainer's two groups: weight decay on every weight except biases and
  LayerNorm parameters, which get 0.
- Global grad-norm clipping with `torch.nn.utils.clip_grad_norm_` (Trainer default
  max_grad_norm = 1.0; 0 turns it off).
- LR schedule: "linear" decays from lr to 0 over the run with no warmup (Trainer default
  lr_scheduler_type = "linear"); "constant" keeps lr. Evaluated with the same float
  expression as transformers' get_linear_schedule_with_warmup.

In pure bf16 two things follow: decoupled decay `p *= 1 - lr * wd` rounds to no change
whenever lr * wd is below half a bf16 ULP of 1 (2^-9), and a row whose gradient is exactly
zero keeps both moments at zero and never moves (without decay).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

SCHEDULES = ("linear", "constant")


@dataclass
class OptimConfig:
    lr: float = 1e-3  # notebooks: LEARNING_RATE = 1e-3 (Thimble: 3e-4)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0  # notebooks: WEIGHT_DECAY = 0.0 (Thimble: 0.1)
    max_grad_norm: float = 1.0  # Trainer default; 0 = no clipping
    schedule: str = "linear"  # Trainer default lr_scheduler_type, no warmup


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameters the Trainer exempts from weight decay: biases and LayerNorm weights."""
    names = set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, nn.LayerNorm) or "bias" in param_name:
                names.add(full)
    return names


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with the Trainer's parameter groups (decay group first, then no-decay)."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {cfg.schedule!r}. Available: {', '.join(SCHEDULES)}.")
    for key, value in (("lr", cfg.lr), ("eps", cfg.eps)):
        if not value > 0:  # NaN too
            raise ValueError(f"optimizer {key} must be > 0, got {value}.")
    for key, value in (("weight_decay", cfg.weight_decay), ("max_grad_norm", cfg.max_grad_norm)):  # 0: no clipping
        if not value >= 0:
            raise ValueError(f"optimizer {key} must be >= 0, got {value}.")
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        raise ValueError(f"beta1 and beta2 must lie in [0, 1), got {cfg.beta1}, {cfg.beta2}.")
    exempt = no_decay_names(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n not in exempt], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in named if n in exempt], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def describe_groups(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[dict]:
    """Each param group as the live optimizer holds it: its settings and its parameters' names
    (a tied run's shared E/W under both names). For the trajectory's metadata: checks read these,
    never the scenario."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return [{"lr": group["lr"], "weight_decay": group["weight_decay"], "betas": list(group["betas"]),
             "eps": group["eps"], "params": [n for p in group["params"] for n in names.get(id(p), ["?"])]}
            for group in optimizer.param_groups]


def lr_factor(step: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the base LR for 0-based optimizer step `step` of `total_steps`."""
    if schedule == "constant":
        return 1.0
    # transformers.get_linear_schedule_with_warmup with num_warmup_steps = 0.
    return max(0.0, float(total_steps - step) / float(max(1, total_steps)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(model: nn.Module, max_grad_norm: float) -> torch.Tensor:
    """Clip the global grad norm to `max_grad_norm` in place; returns the pre-clip norm.

    With max_grad_norm = 0 nothing is clipped and the norm is still returned.
    """
    params = [p for p in model.parameters() if p.grad is not None]
    if max_grad_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params])
