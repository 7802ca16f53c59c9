"""One training step as the notebooks ran it, and the state that repeats it.

Step k (1-based), exactly as transformers' Trainer(bf16=True, optim="adamw_torch"):
  forward under bf16 autocast -> logits (B, T, V) bf16 -> upcast to float32 ->
  cross-entropy, mean over the targets that exist (core/loss.py) -> backward -> clip the global grad
  norm -> AdamW step with lr * factor(k - 1) -> zero the gradients.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from core.data import Batches, DataConfig
from core.device import resolve_device
from core.gemm import gemm_mode
from core.host_memory import reuse_freed_host_memory
from core.lm_head import lm_logits
from core.loss import causal_lm_loss
from core.model import InitConfig, ModelConfig, build_model, embedding, is_tied, unembedding
from core.optim import OptimConfig, build_optimizer, clip_gradients, lr_factor, set_lr
from core.step_graph import CudaStepGraph

log = logging.getLogger(__name__)

# Tensors a run can hand out per step (parameter-shaped, (vocab, dim)).
PARAM_TENSORS = ("E", "W", "grad_E", "grad_W", "exp_avg_E", "exp_avg_W", "exp_avg_sq_E", "exp_avg_sq_W")


@dataclass
class TrainConfig:
    steps: int = 1000  # Flannel 1/2: 1,000; Flannel 7: 500; Thimble 7: 6,000
    device: str = "auto"  # auto = cuda > mps > cpu
    logits_matmul: str = "bf16"  # bf16 = the Trainer's step (bit-identical); fp32 = faster on AVX2 CPUs (core/lm_head.py)
    matmul: str = "bf16"  # bf16 = the Trainer's kernels; fp32 = every GEMM, head included, in float32 (core/gemm.py)
    cuda_graph: bool = False  # CUDA: forward + backward replayed as one CUDA graph (core/step_graph.py); else ignored


@dataclass
class StepResult:
    step: int  # optimizer steps done, 1-based
    loss: torch.Tensor  # () float32, on the device
    grad_norm: torch.Tensor  # () pre-clip global grad norm, on the device
    lr: float  # the LR this step used
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # pre-clip "grad_E"/"grad_W", (V, D) bf16
    logits_row: torch.Tensor | None = None  # (V,) bf16: sequence 0, last position (as the notebooks sampled)


@dataclass
class Backward:
    """What a step has computed when the optimizer takes over (tensors on the device)."""

    loss: torch.Tensor  # () float32
    grad_norm: torch.Tensor  # () pre-clip global grad norm
    grads: dict[str, torch.Tensor]  # pre-clip "grad_E"/"grad_W" copies, (V, D) bf16
    logits_row: torch.Tensor | None  # (V,) bf16: sequence 0, last position


def forward_backward(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    max_grad_norm: float,
    capture_grads: tuple[str, ...] = (),
    capture_logits: bool = False,
    logits_matmul: str = "bf16",
    matmul: str = "bf16",
    autocast_cache: bool = True,
) -> Backward:
    """A step up to the optimizer: forward, loss, backward, gradient copies, clipping.

    inputs, targets: (B, T) int64 on the model's device. Leaves the clipped gradients in
    the parameters' .grad. Asks nothing of the host (no .item(), no shape that depends on
    values), so a CUDA graph can capture it (core/step_graph.py).
    """
    with gemm_mode(matmul, inputs.device):  # forward and backward
        with torch.autocast(device_type=inputs.device.type, dtype=torch.bfloat16, cache_enabled=autocast_cache):
            logits = lm_logits(model, inputs, logits_matmul)  # (B, T, V) bf16
            loss = causal_lm_loss(logits, targets)
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
    logits_matmul: str = "bf16",
    matmul: str = "bf16",
) -> StepResult:
    """One optimizer step on a batch. inputs, targets: (B, T) int64 on the model's device."""
    out = forward_backward(model, inputs, targets, max_grad_norm, capture_grads, capture_logits, logits_matmul, matmul)
    update(optimizer, lr)
    optimizer.zero_grad(set_to_none=True)
    return StepResult(step, out.loss, out.grad_norm, lr, out.grads, out.logits_row)


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
        if self.device.type == "cpu":
            reuse_freed_host_memory()  # the step's large temporaries: no fresh pages every step
            gemm_mode(self.train_cfg.matmul, self.device)  # which GEMM kernels run: probed, built, before step 1
        self.batches = Batches(ids, self.data_cfg)
        self.model = build_model(self.model_cfg, self.init_cfg, self.device)
        self.optimizer = build_optimizer(self.model, self.optim_cfg)
        self.steps_done = 0
        self.last: StepResult | None = None
        self._graph: CudaStepGraph | None = None  # captured at the first step, when train.cuda_graph on CUDA
        if self.train_cfg.cuda_graph and self.device.type != "cuda":
            log.warning("train.cuda_graph is ignored on %s: CUDA graphs need a CUDA device; the step runs eagerly.",
                        self.device)

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
        graph = self._step_graph(inputs, targets)
        if graph is not None and graph.fits(inputs, targets):
            result = self._graph_step(graph, inputs, targets, lr, step, capture_grads, capture_logits)
        else:  # eager; with a graph, only a batch of another shape (the short last batch of an epoch)
            if graph is not None:
                self.optimizer.zero_grad(set_to_none=True)  # the graph's gradients stay bound between replays
            result = train_step(self.model, self.optimizer, inputs, targets, lr, self.optim_cfg.max_grad_norm, step,
                                capture_grads, capture_logits, self.train_cfg.logits_matmul, self.train_cfg.matmul)
        self.steps_done += 1
        self.last = result
        return result

    def _step_graph(self, inputs: torch.Tensor, targets: torch.Tensor) -> CudaStepGraph | None:
        """The CUDA graph of forward + backward, captured on the first call; None unless
        train.cuda_graph on a CUDA device."""
        cfg = self.train_cfg
        if self._graph is None and cfg.cuda_graph and self.device.type == "cuda":
            body = functools.partial(forward_backward, self.model, max_grad_norm=self.optim_cfg.max_grad_norm,
                                     capture_grads=("grad_E", "grad_W"), capture_logits=True,
                                     logits_matmul=cfg.logits_matmul, matmul=cfg.matmul, autocast_cache=False)
            self._graph = CudaStepGraph(body, list(self.model.parameters()), inputs, targets)
        return self._graph

    def _graph_step(self, graph: CudaStepGraph, inputs: torch.Tensor, targets: torch.Tensor, lr: float, step: int,
                    capture_grads: tuple[str, ...], capture_logits: bool) -> StepResult:
        """The step with its forward and backward replayed from the CUDA graph, then the eager update."""
        out: Backward = graph.replay(inputs, targets)
        update(self.optimizer, lr)
        # Copies: the next replay overwrites the graph's outputs, and the recorder reads these later.
        grads = {name: out.grads[name].clone() for name in capture_grads}
        logits_row = out.logits_row.clone() if capture_logits else None
        return StepResult(step, out.loss.clone(), out.grad_norm.clone(), lr, grads, logits_row)

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
