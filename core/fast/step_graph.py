"""The forward and backward of a training step as one CUDA graph: captured once, replayed.

At the Flannel shape a GPU finishes each kernel of the step in microseconds, and eager
PyTorch spends longer launching the step's few hundred kernels from Python than the GPU
spends running them. A CUDA graph records the kernels once and replays them with one
launch (`train.cuda_graph = true`).

What the graph holds: `core.step.forward_backward`, i.e. forward, loss, backward, the
pre-clip gradient copies, the logits row and the clipping, reading the batch from static
input buffers. The optimizer stays outside, eager: the same `AdamW.step()` call, LR and
state as without a graph. The replay runs the kernels the eager pass runs, on the same
operands, so the trajectory is meant to be bit-identical to the eager CUDA step
(tests/test_step_graph.py compares them on a GPU).

Capture as PyTorch's docs prescribe for whole-network capture: warm-up passes on a side
stream (lazy cuBLAS and autograd initialisation happens there, not in the graph), the
gradients set to None so that the captured backward allocates them in the graph's private
memory pool (each replay writes them, nothing accumulates), then capture. The warm-up
passes change only gradients (the optimizer does not run), so the training state is the
same as before. Every replay binds each parameter's .grad to the graph's gradient
tensors again, so an eager step in between (a batch of another shape: the last, short
batch of an epoch) may use and drop gradients as usual.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

log = logging.getLogger(__name__)

WARMUP_PASSES = 3


class CudaStepGraph:
    """`body(inputs, targets)` captured on `inputs`' CUDA device; `replay` runs it on new batches.

    body: a function of (B, T) int64 inputs and targets that only launches device work
    (no host reads of device values, no value-dependent shapes). `params`: the tensors
    whose .grad the body's backward fills.
    """

    def __init__(
        self,
        body: Callable[[torch.Tensor, torch.Tensor], object],
        params: list[torch.nn.Parameter],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        warmup: int = WARMUP_PASSES,
    ):
        if inputs.device.type != "cuda":
            raise ValueError(f"A CUDA graph needs a CUDA device, got {inputs.device}.")
        self.device = inputs.device
        self.inputs = inputs.clone()  # (B, T) static: every replay reads the batch from here
        self.targets = targets.clone()
        self.params = params
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._drop_grads()
                body(self.inputs, self.targets)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._drop_grads()  # the captured backward allocates .grad in the graph's pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):  # the recorder thread may sync
            self.outputs = body(self.inputs, self.targets)
        self.grads = [p.grad for p in params]  # (the graph's pool) what each replay's backward writes
        missing = [i for i, g in enumerate(self.grads) if g is None]
        if missing:
            raise RuntimeError(f"The captured backward left no gradient for parameters {missing}.")
        log.info("captured the forward and backward as a CUDA graph on %s", self.device)

    def _drop_grads(self) -> None:
        for param in self.params:
            param.grad = None

    def fits(self, inputs: torch.Tensor, targets: torch.Tensor) -> bool:
        """Whether this batch has the captured shape (a graph replays one shape)."""
        return inputs.shape == self.inputs.shape and targets.shape == self.targets.shape

    def replay(self, inputs: torch.Tensor, targets: torch.Tensor):
        """Run the body on this batch; returns the body's outputs (static: the next replay
        overwrites them, so copy what must outlive it). The clipped gradients are in .grad."""
        if not self.fits(inputs, targets):
            raise ValueError(
                f"A CUDA graph replays one batch shape: captured {tuple(self.inputs.shape)}, "
                f"got {tuple(inputs.shape)}."
            )
        for param, grad in zip(self.params, self.grads):
            if param.grad is not grad:
                param.grad = grad
        self.inputs.copy_(inputs, non_blocking=True)
        self.targets.copy_(targets, non_blocking=True)
        self.graph.replay()
        return self.outputs
