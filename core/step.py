"""One training step as the notebooks ran it, in plain torch ops.

Step k (1-based), exactly as transformers' Trainer(bf16=True, optim="adamw_torch"):
  forward under bf16 autocast -> logits (B, T, V) bf16 -> upcast to float32 ->
  cross-entropy, mean over the targets that exist -> backward -> clip the global grad
  norm -> AdamW step with lr * factor(k - 1) -> zero the gradients.

`StepKernels` is the one seam where speed machinery plugs in: how the logits, the loss and
the GEMMs are computed, and how forward + backward are run. This base class is the
reference (the Trainer's own expressions); core/fast subclasses it with kernels that give
the same bits faster (or, opt-in, float32 GEMMs), and `core.fast.choose_kernels` picks them.
Nothing here needs core/fast to run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from core.data import IGNORE_INDEX
from core.model import embedding, unembedding
from core.optim import clip_gradients, set_lr


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """transformers' ForCausalLMLoss on pre-shifted targets: float32 logits, mean over targets.

    logits (..., V) any dtype; targets (...) with IGNORE_INDEX where there is none.
    """
    return F.cross_entropy(
        logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=IGNORE_INDEX, reduction="mean"
    )


@dataclass
class Backward:
    """What a step has computed when the optimizer takes over (tensors on the device)."""

    loss: torch.Tensor  # () float32
    grad_norm: torch.Tensor  # () pre-clip global grad norm
    grads: dict[str, torch.Tensor]  # pre-clip "grad_E"/"grad_W" copies, (V, D) bf16
    logits_row: torch.Tensor | None  # (V,) bf16: sequence 0, last position


@dataclass
class StepResult:
    step: int  # optimizer steps done, 1-based
    loss: torch.Tensor  # () float32, on the device
    grad_norm: torch.Tensor  # () pre-clip global grad norm, on the device
    lr: float  # the LR this step used, read back from the optimizer's first param group
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # pre-clip "grad_E"/"grad_W", (V, D) bf16
    logits_row: torch.Tensor | None = None  # (V,) bf16: sequence 0, last position (as the notebooks sampled)


class StepKernels:
    """How a step computes; this class is the reference: the Trainer's expressions, torch's kernels."""

    name = "reference"

    def gemms(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The context forward and backward run in (core/fast: GEMM dispatch modes)."""
        return contextlib.nullcontext()

    def logits(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """(B, T, V) bf16 logits for (B, T) ids; called under bf16 autocast."""
        return model(input_ids=inputs).logits

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return causal_lm_loss(logits, targets)

    def forward_backward(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                         max_grad_norm: float, capture_grads: tuple[str, ...] = (),
                         capture_logits: bool = False) -> Backward:
        """Forward, loss, backward, clipping (core/fast: replayed from a CUDA graph)."""
        return forward_backward(model, inputs, targets, max_grad_norm, self, capture_grads, capture_logits)

    def describe(self) -> dict[str, str]:
        """What ran, for the trajectory's metadata (attribute `kernels`)."""
        return {"kernels": self.name}


REFERENCE = StepKernels()


def forward_backward(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    max_grad_norm: float,
    kernels: StepKernels = REFERENCE,
    capture_grads: tuple[str, ...] = (),
    capture_logits: bool = False,
    autocast_cache: bool = True,
) -> Backward:
    """A step up to the optimizer: forward, loss, backward, gradient copies, clipping.

    inputs, targets: (B, T) int64 on the model's device. Leaves the clipped gradients in
    the parameters' .grad. Asks nothing of the host (no .item(), no shape that depends on
    values), so a CUDA graph can capture it (core/fast/step_graph.py).
    """
    with kernels.gemms(inputs.device):  # forward and backward
        with torch.autocast(device_type=inputs.device.type, dtype=torch.bfloat16, cache_enabled=autocast_cache):
            logits = kernels.logits(model, inputs)  # (B, T, V) bf16
            loss = kernels.loss(logits, targets)
        loss.backward()
    grads = {}
    for name in capture_grads:  # the notebooks recorded gradients before clipping
        param = embedding(model) if name == "grad_E" else unembedding(model)
        grads[name] = param.grad.detach().clone()
    logits_row = logits[0, -1].detach().clone() if capture_logits else None
    grad_norm = clip_gradients(model, max_grad_norm)
    return Backward(loss.detach(), grad_norm.detach(), grads, logits_row)


def update(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The AdamW step on the clipped gradients, at `lr`."""
    set_lr(optimizer, lr)
    optimizer.step()


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    lr: float,
    max_grad_norm: float,
    step: int,
    capture_grads: tuple[str, ...] = (),
    capture_logits: bool = False,
    kernels: StepKernels = REFERENCE,
) -> StepResult:
    """One optimizer step on a batch. inputs, targets: (B, T) int64 on the model's device."""
    out = kernels.forward_backward(model, inputs, targets, max_grad_norm, capture_grads, capture_logits)
    update(optimizer, lr)
    optimizer.zero_grad(set_to_none=True)
    ran_at = optimizer.param_groups[0]["lr"]  # as the optimizer held it (what a check of the file reads)
    return StepResult(step, out.loss, out.grad_norm, ran_at, out.grads, out.logits_row)
