"""A model, its optimizer and its batches, advanced one optimizer step at a time (core/step.py).

    training = Training(ids, ModelConfig(), InitConfig(), DataConfig(), OptimConfig(), TrainConfig())
    result = training.step()           # StepResult: loss, grad_norm, lr (on the device)
    training.tensor("W")               # (V, D) bf16, by its trajectory name

The step runs the reference kernels unless handed others (`kernels=`, core/fast).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from core.data import Batches, DataConfig
from core.device import resolve_device
from core.format import PARAM_TENSORS
from core.model import InitConfig, ModelConfig, build_model, embedding, is_tied, unembedding
from core.optim import OptimConfig, build_optimizer, lr_factor
from core.step import REFERENCE, StepKernels, StepResult, train_step

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 1000  # Flannel 1/2: 1,000; Flannel 7: 500; Thimble 7: 6,000
    device: str = "auto"  # auto = cuda > mps > cpu


class Training:
    """A model, its optimizer and its batches, advanced one optimizer step at a time."""

    def __init__(
        self,
        ids: np.ndarray | torch.Tensor,
        model_cfg: ModelConfig | None = None,
        init_cfg: InitConfig | None = None,
        data_cfg: DataConfig | None = None,
        optim_cfg: OptimConfig | None = None,
        train_cfg: TrainConfig | None = None,
        kernels: StepKernels = REFERENCE,
    ):
        self.model_cfg = model_cfg or ModelConfig()
        self.init_cfg = init_cfg or InitConfig()
        self.data_cfg = data_cfg or DataConfig()
        self.optim_cfg = optim_cfg or OptimConfig()
        self.train_cfg = train_cfg or TrainConfig()
        if self.data_cfg.seq_len > self.model_cfg.n_positions:
            raise ValueError(
                f"seq_len {self.data_cfg.seq_len} exceeds the model's n_positions {self.model_cfg.n_positions}."
            )
        if self.train_cfg.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.train_cfg.steps}.")
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.numel() and int(ids.max()) >= self.model_cfg.vocab_size:
            raise ValueError(
                f"The corpus has token id {int(ids.max())}, outside the model's vocab of {self.model_cfg.vocab_size}."
            )
        self.device = resolve_device(self.train_cfg.device)
        self.kernels = kernels
        self.batches = Batches(ids, self.data_cfg)
        self.model = build_model(self.model_cfg, self.init_cfg, self.device)
        self.optimizer = build_optimizer(self.model, self.optim_cfg)
        self.steps_done = 0
        self.last: StepResult | None = None

    @property
    def tied(self) -> bool:
        return is_tied(self.model)

    def lr_at(self, step: int) -> float:
        """LR of 0-based optimizer step `step`."""
        cfg = self.optim_cfg
        return cfg.lr * lr_factor(step, self.train_cfg.steps, cfg.schedule)

    def step(self, capture_grads: tuple[str, ...] = (), capture_logits: bool = False) -> StepResult:
        if self.steps_done >= self.train_cfg.steps:
            raise RuntimeError(f"The run is complete: {self.steps_done} of {self.train_cfg.steps} steps done.")
        inputs, targets = self.batches[self.steps_done]
        inputs = inputs.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        step, lr = self.steps_done + 1, self.lr_at(self.steps_done)
        result = train_step(self.model, self.optimizer, inputs, targets, lr, self.optim_cfg.max_grad_norm, step,
                            capture_grads, capture_logits, self.kernels)
        self.steps_done += 1
        self.last = result
        return result

    def tensor(self, name: str) -> torch.Tensor:
        """A parameter-shaped tensor by its trajectory name, (V, D) bf16 on the device.

        E, W: the matrices now. exp_avg_*, exp_avg_sq_*: Adam moments now (zeros before the
        first step). grad_*: the pre-clip gradient of the last step, if it was captured.
        """
        if name not in PARAM_TENSORS:
            raise KeyError(f"Unknown tensor {name!r}. Available: {', '.join(PARAM_TENSORS)}.")
        param = embedding(self.model) if name.endswith("E") else unembedding(self.model)
        if name in ("E", "W"):
            return param.detach()
        if name.startswith("grad_"):
            if self.last is None:
                return torch.zeros_like(param)
            if name not in self.last.grads:
                raise KeyError(f"{name} was not captured at step {self.last.step}; pass capture_grads.")
            return self.last.grads[name]
        moment = name.rsplit("_", 1)[0]  # exp_avg or exp_avg_sq
        state = self.optimizer.state.get(param, {})
        return state[moment] if moment in state else torch.zeros_like(param)
