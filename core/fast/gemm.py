"""How a step's GEMMs run: the Trainer's bits, faster; or float32 (opt-in).

On CPUs without bf16 matrix instructions (AVX2 only) torch's bf16 GEMMs take a slow
fallback path: on a 2-core AVX2 machine they are ~90 % of a Flannel step, the LM head's
three (B*T, 64) x (64, 10,000) products most of it, the blocks' 24 small ones
(attention and MLP projections, forward and backward) the rest.

Default (`matmul = "bf16"`), on a CPU where torch runs bf16 GEMMs through oneDNN (AVX-512
CPUs, onednn.py): torch's own calls, untouched (oneDNN's kernels are fast and
multi-threaded). On a CPU where it runs its fallback kernels: `RowSplitGemms`. Every
fallback kernel computes each output element as its own float32 dot product, whose order of additions depends
on K and the operands' layout, never on the number of rows M. Three of the four layouts
run on one thread (measured, torch 2.13: row-major @ row-major, column-major @ anything;
row-major @ column-major is already parallel). For those, the mode splits the output's
rows into one block per torch thread and runs the same kernel on each block in its own
thread: the same bits (tests/test_gemm.py; tests/test_parity_trainer.py runs the whole
step against the Trainer), ~2x faster on those GEMMs with 2 threads.
Row-major @ row-major and row-major @ column-major products (the head's forward and input
gradient, most of the blocks' GEMMs) go further: native.py's kernels repeat torch's
additions in torch's order, vectorized across outputs (checked bit for bit against torch
before first use; tests/test_native.py), also split by rows: the head's forward 1.8 s ->
~0.25 s, its input gradient ~2.4 s -> ~0.3 s on 2 cores.

Opt-in (`matmul = "fp32"`): `Float32Gemms`. Every `mm`, `addmm` and `bmm` whose matrix
operands are bf16 becomes the same call on their float32 copies, rounded to bf16: forward
and backward, the LM head included (its bits are then those of `logits_matmul = "fp32"`).
A product of two bf16 numbers is exact in float32 and both kernels accumulate in float32,
so only the order of the float32 additions changes: an output can differ by one bf16 ULP
where the sum lies next to a rounding boundary. Not bit-identical to the Trainer's step;
tests/test_lm_head.py states the difference allowed. Attention's fused scaled-dot-product
kernel, the optimizer and everything elementwise are untouched by either mode.

Both modes are active on the thread that enters them, and in the backward pass of a graph
built under them when `backward()` is called under them too.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core.fast import native, onednn

MATMULS = ("bf16", "fp32")

_aten = torch.ops.aten
_PRODUCTS = {_aten.mm.default: (0, 1), _aten.bmm.default: (0, 1), _aten.addmm.default: (1, 2)}  # op: its matrices
_OUT_VARIANTS = {_aten.mm.default: _aten.mm.out, _aten.addmm.default: _aten.addmm.out}
MIN_ROWS_PER_THREAD = 64  # below this a split costs more than it saves (and stays clear of gemv paths)


class Float32Gemms(TorchDispatchMode):
    """bf16 mm / bmm / addmm run as float32 GEMMs of the same operands, results rounded to bf16."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        matrices = _PRODUCTS.get(func)
        if matrices is not None and all(args[i].dtype == torch.bfloat16 for i in matrices):
            # addmm's bias (args[0]) and alpha/beta ride along: bias + a @ b in float32, rounded once.
            upcast = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
            return func(*upcast, **kwargs).to(torch.bfloat16)
        return func(*args, **kwargs)


def single_threaded_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether torch's CPU bf16 fallback runs a @ b on one thread: all layouts but
    row-major @ column-major (a's rows and b's columns both contiguous)."""
    return not (a.stride(1) == 1 and b.stride(0) == 1)


class RowSplitGemms(TorchDispatchMode):
    """CPU bf16 mm / addmm, the same bits faster: the layouts native.py's kernels take
    (where they were built and match torch) by those, the other single-threaded layouts by
    torch's kernel; either way the output rows split across `threads` threads."""

    _pools: dict[int, ThreadPoolExecutor] = {}
    _pools_lock = threading.Lock()
    total_splits = 0  # over every instance in this process: lets a test see that a step split its GEMMs
    total_native = 0  # GEMMs run by native.py's kernel, likewise

    def __init__(self, threads: int, use_native: bool = True):
        super().__init__()
        self.threads = threads
        self.native = use_native and native.kernel() is not None
        self.splits = 0  # GEMMs this mode split (torch's kernel), for tests and profiles
        self.native_calls = 0  # GEMMs run by native.py's kernel

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not kwargs and func in _OUT_VARIANTS:
            a, b = (args[0], args[1]) if func is _aten.mm.default else (args[1], args[2])
            if a.dtype == b.dtype == torch.bfloat16 and a.device.type == "cpu" and a.dim() == 2:
                bias = args[0] if func is _aten.addmm.default else None
                if self.native and native.layout_of(a, b) and (bias is None or bias.dtype == torch.bfloat16):
                    return self._native(a, b, bias)
                if self.threads > 1 and a.shape[0] >= MIN_ROWS_PER_THREAD * self.threads \
                        and single_threaded_layout(a, b):
                    return self._split(func, args, a, b)
        return func(*args, **(kwargs or {}))

    def _native(self, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        self.native_calls += 1
        RowSplitGemms.total_native += 1
        rows = a.shape[0]
        out = torch.empty((rows, b.shape[1]), dtype=torch.bfloat16)  # (M, N), row-major as torch's own result
        threads = self.threads if rows >= MIN_ROWS_PER_THREAD * self.threads else 1
        self._run_blocks(rows, threads, lambda lo, hi: native.product(a, b, bias, out=out, rows=(lo, hi)))
        return out

    def _split(self, func, args, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.splits += 1
        RowSplitGemms.total_splits += 1
        rows = a.shape[0]
        out = torch.empty((rows, b.shape[1]), dtype=torch.bfloat16)  # (M, N), row-major as the kernel's own result
        bias = args[0] if func is _aten.addmm.default else None
        out_variant = _OUT_VARIANTS[func]

        @torch.no_grad()  # below autograd already; a worker thread must not see requires_grad inputs to out=
        def block(lo: int, hi: int) -> None:
            if bias is None:
                out_variant(a[lo:hi], b, out=out[lo:hi])
            else:  # a 1-D bias broadcasts over rows; a 2-D one is split with them
                out_variant(bias[lo:hi] if bias.dim() == 2 and bias.shape[0] == rows else bias, a[lo:hi], b,
                            out=out[lo:hi])

        self._run_blocks(rows, self.threads, block)
        return out

    def _run_blocks(self, rows: int, threads: int, block) -> None:
        """block(lo, hi) for `threads` row ranges covering [0, rows), side by side."""
        bounds = [rows * i // threads for i in range(threads + 1)]
        futures = [self._pool().submit(block, bounds[i], bounds[i + 1]) for i in range(1, threads)]
        block(bounds[0], bounds[1])
        for future in futures:
            future.result()

    def _pool(self) -> ThreadPoolExecutor:
        with self._pools_lock:
            pool = self._pools.get(self.threads)
            if pool is None:
                pool = self._pools[self.threads] = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="gemm")
            return pool


def gemm_mode(matmul: str, device: torch.device, use_native: bool = True) -> contextlib.AbstractContextManager:
    """The context a step's forward and backward run in, for `matmul` ("bf16" or "fp32") on `device`;
    `use_native`: core/fast/native's kernels where they are built and checked."""
    if matmul == "fp32":
        return Float32Gemms()
    if matmul != "bf16":
        raise ValueError(f"Unknown matmul {matmul!r}. Available: {', '.join(MATMULS)}.")
    if device.type == "cpu" and not onednn.bf16_gemms_on_onednn() \
            and (torch.get_num_threads() > 1 or (use_native and native.kernel() is not None)):
        return RowSplitGemms(torch.get_num_threads(), use_native)
    return contextlib.nullcontext()
