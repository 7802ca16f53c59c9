"""The fast `StepKernels`: what `core.fast.choose_kernels` hands the reference step.

    FastKernels       the blockwise CPU loss (loss.py), the GEMM path for this CPU (gemm.py),
                      the opt-in float32 head (lm_head.py)
    CudaGraphKernels  the same, with forward + backward captured once as a CUDA graph and
                      replayed (step_graph.py); a batch of another shape runs eagerly
"""

from __future__ import annotations

import contextlib

import torch

from core.fast import onednn
from core.fast.gemm import gemm_mode
from core.fast.lm_head import lm_logits
from core.fast.loss import causal_lm_loss as blockwise_causal_lm_loss
from core.fast.step_graph import CudaStepGraph
from core.step import Backward, StepKernels, causal_lm_loss, forward_backward


class FastKernels(StepKernels):
    """The reference's bits, faster (unless matmul or logits_matmul asks for float32)."""

    name = "fast"

    def __init__(self, matmul: str = "bf16", logits_matmul: str = "bf16", blockwise_loss: bool = True,
                 native: bool = True, host_memory: bool = False, gemms: str = "torch"):
        self.matmul, self.logits_matmul = matmul, logits_matmul
        self.blockwise_loss, self.native, self.host_memory, self.gemms_path = blockwise_loss, native, host_memory, gemms

    @staticmethod
    def cpu_gemm_path(matmul: str, native: bool) -> str:
        """Which kernels run a CPU step's bf16 GEMMs (as gemm_mode picks them): fp32 | onednn (torch's own) |
        native | row-split | torch (its fallback kernels, one thread)."""
        if matmul == "fp32":
            return "fp32"
        if onednn.bf16_gemms_on_onednn():
            return "onednn"
        return "native" if native else "row-split" if torch.get_num_threads() > 1 else "torch"

    def gemms(self, device: torch.device) -> contextlib.AbstractContextManager:
        return gemm_mode(self.matmul, device, self.native)

    def logits(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return lm_logits(model, inputs, self.logits_matmul)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (blockwise_causal_lm_loss if self.blockwise_loss else causal_lm_loss)(logits, targets)

    def describe(self) -> dict[str, str]:
        return {"kernels": self.name, "loss": "blockwise" if self.blockwise_loss else "reference",
                "gemms": self.gemms_path, "logits_matmul": self.logits_matmul, "matmul": self.matmul,
                "host_memory": "reuse" if self.host_memory else "system"}


class CudaGraphKernels(FastKernels):
    """Forward + backward replayed from a CUDA graph captured at the first step; the optimizer eager."""

    name = "fast+cuda_graph"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.graph: CudaStepGraph | None = None

    def forward_backward(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                         max_grad_norm: float, capture_grads: tuple[str, ...] = (),
                         capture_logits: bool = False) -> Backward:
        if self.graph is None:
            def body(x: torch.Tensor, y: torch.Tensor) -> Backward:
                return forward_backward(model, x, y, max_grad_norm, self, ("grad_E", "grad_W"), True,
                                        autocast_cache=False)
            self.graph = CudaStepGraph(body, list(model.parameters()), inputs, targets)
        if not self.graph.fits(inputs, targets):  # a batch of another shape (the short last batch of an epoch)
            return super().forward_backward(model, inputs, targets, max_grad_norm, capture_grads, capture_logits)
        out: Backward = self.graph.replay(inputs, targets)
        # Copies: the next replay overwrites the graph's outputs, and the recorder reads these later.
        return Backward(out.loss.clone(), out.grad_norm.clone(), {n: out.grads[n].clone() for n in capture_grads},
                        out.logits_row.clone() if capture_logits else None)
