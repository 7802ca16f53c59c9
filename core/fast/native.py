"""The bf16 GEMM kernels of core/fast/csrc/bf16_gemm.c: compiled on first use, checked against
torch, used only if they give torch's bits.

The kernels repeat the additions of torch's CPU kernels for bf16 `row-major @ row-major`
products (the LM head's input gradient, the blocks' forward projections) and `row-major @
column-major` ones (the LM head's forward, the blocks' input gradients) in the same order,
vectorized over output columns. (Column-major @ row-major, the weight gradients: torch sums
each output in one sequential accumulator, and its own kernel split by rows is as fast as
a kernel here was; core/fast/gemm.py splits it.)
They are compiled with the machine's C compiler (`cc`, or `$CC`) into a cache folder keyed
by the source, the flags and the CPU, and loaded with ctypes (whose calls release the GIL,
so threads can run them on row blocks side by side).

Before first use they are run against torch on problems that cover their branches (every
part of each kernel's blocking, 1-D and 2-D biases, strided rows, exact cancellations that
expose any other order of additions, an overflow that exposes a missing fused multiply-add);
a single differing bit disables them for the process with a warning, and the step runs
torch's own kernels. So does a missing compiler. `DEAD_TOKEN_HARNESS_NATIVE=off` keeps
`core.fast.choose_kernels` from asking for them. x86-64 only (torch's ARM kernels differ), and only where torch runs its fallback
kernels: where it hands bf16 GEMMs to oneDNN (AVX-512 CPUs, onednn.py) they are
neither built nor used.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from core.fast import onednn
from core.fast.cpu_info import cpu_description

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "bf16_gemm.c"


def flags() -> list[str]:
    """Compiler flags: no reassociation, no contraction; fused multiply-adds (the kernels'
    MAC, explicit fmaf) exactly where torch's own kernels have them. Its AVX2 and AVX-512
    builds fuse `sum += a * b` (seen in the bits: an overflowing product added to +inf gives
    +inf, not NaN); its baseline build cannot."""
    fused = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    return ["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared",
            *(["-DFUSED"] if fused else [])]


_lock = threading.Lock()
_kernel: ctypes.CDLL | None = None
_tried = False


def cache_dir() -> Path:
    root = os.environ.get("DEAD_TOKEN_HARNESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dead-token-harness")
    return Path(root) / "native"


def _compile() -> Path:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc, gcc or $CC) found")
    source = SOURCE.read_bytes()
    options = flags()
    key = hashlib.sha256(b"\0".join([source, " ".join(options).encode(), compiler.encode(), cpu_description().encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    target = cache_dir() / f"bf16_gemm-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # build beside, then rename: atomic
        built = Path(tmp) / target.name
        result = subprocess.run([compiler, *options, str(SOURCE), "-lm", "-o", str(built)], capture_output=True,
                                text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {SOURCE}: {result.stderr.strip()[:500]}")
        os.replace(built, target)
    return target


def _load() -> ctypes.CDLL:
    return bind(ctypes.CDLL(str(_compile())))


def bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the kernels' signatures on a loaded library."""
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for name, restype in (("bf16_gemm_rowrow", None), ("bf16_gemm_rowcol", ctypes.c_int)):
        function = getattr(lib, name)
        function.argtypes = [i64, i64, i64, ptr, i64, ptr, i64, ptr, i64, i64, ptr, i64]
        function.restype = restype
    return lib


def kernel() -> ctypes.CDLL | None:
    """The checked kernel, or None where it cannot be built or does not give torch's bits."""
    global _kernel, _tried
    with _lock:
        if _tried:
            return _kernel
        _tried = True
        if platform.machine().lower() not in ("x86_64", "amd64"):
            return None  # checked on x86-64 only; elsewhere torch's kernel
        if onednn.bf16_gemms_on_onednn():
            log.info("torch runs bf16 GEMMs through oneDNN on this CPU: the bf16 GEMM kernel (modelled on torch's "
                     "fallback kernels) is not used")
            return None
        try:
            lib = _load()
        except Exception as exc:  # no compiler, a read-only cache: torch's kernel, same bits, slower
            log.warning("bf16 GEMM kernel unavailable (%s); using torch's kernel", exc)
            return None
        _kernel = lib
        mismatch = _self_check()
        if mismatch:
            _kernel = None
            log.warning("bf16 GEMM kernel disabled: it does not give torch %s's bits (%s)", torch.__version__,
                        mismatch)
        return _kernel


def _self_check() -> str | None:
    """What differs from torch on problems that cover the kernels' branches (None: nothing).

    The values include exact cancellations (+-2^20 beside small terms), so that any other
    order of additions shows in the bits, and an overflowing product added to +inf, which
    tells a fused multiply-add from a separate one."""
    inf = float("inf")  # +inf, then 3e38 * -1.5 into the same partial sum (row@row) / register lane (row@col)
    for layout, k, first, second in (("row@row", 8, 3, 7), ("row@col", 128, 0, 64)):
        a, b = torch.ones(3, k), torch.zeros(k, 3)
        a[:, first], b[first], a[:, second], b[second] = inf, 1.0, 3e38, -1.5
        a, b = arrange(layout, a.bfloat16(), b.bfloat16())
        if not torch.equal((a @ b).view(torch.int16), product(a, b).view(torch.int16)):
            return f"{layout}: an overflowing product added to +inf (fused multiply-add or not)"
    gen = torch.Generator().manual_seed(0)
    choices = torch.tensor([2.0**20, -(2.0**20), 1.0, -1.0, 2.0**-5, 3.0])
    for m, k, n in ((7, 3, 5), (33, 67, 70), (130, 64, 64), (9, 72, 17), (5, 200, 129), (6, 1003, 20)):
        for data in ("normal", "cancelling"):
            def draw(*shape):
                if data == "normal":
                    return torch.randn(shape, generator=gen).bfloat16()
                return choices[torch.randint(len(choices), shape, generator=gen)].bfloat16()

            a_rows, b_rows = draw(m, k + 2)[:, 1:-1], draw(k, n)  # a: strided rows
            bias, bias2 = draw(n), draw(m, n)
            for layout in LAYOUTS:
                a, b = arrange(layout, a_rows, b_rows)
                for name, want, got in (("mm", a @ b, product(a, b)),
                                        ("addmm 1-D bias", torch.addmm(bias, a, b), product(a, b, bias)),
                                        ("addmm 2-D bias", torch.addmm(bias2, a, b), product(a, b, bias2))):
                    if not torch.equal(want.view(torch.int16), got.view(torch.int16)):
                        return f"{layout} {name} of ({m}, {k}) @ ({k}, {n}), {data} values"
    return None


LAYOUTS = ("row@row", "row@col")  # what the kernels take (with or without addmm's bias)


def arrange(layout: str, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same values stored in `layout` ("row@col": b column-major, and so on)."""
    first, second = layout.split("@")
    col = lambda x: x.t().contiguous().t()  # noqa: E731
    return (col(a) if first == "col" else a), (col(b) if second == "col" else b)


def layout_of(a: torch.Tensor, b: torch.Tensor) -> str | None:
    """The `LAYOUTS` entry of a @ b, or None where no kernel takes it: not 2-D, another
    layout, or a dimension of 1 (torch then picks vector kernels, and a stride of a size-1
    dimension says nothing about the layout)."""
    if a.dim() != 2 or b.dim() != 2 or min(a.shape[0], a.shape[1], b.shape[1]) < 2:
        return None
    if a.stride(1) != 1:
        return None
    if b.stride(1) == 1:
        return "row@row"
    if b.stride(0) == 1:
        return "row@col"
    return None


def product(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, out: torch.Tensor | None = None,
            rows: tuple[int, int] | None = None) -> torch.Tensor:
    """bf16 (a @ b + bias) with torch's bits, for CPU a (M, K) and b (K, N) of a `layout_of`.

    bias: None, or bf16 broadcastable to (M, N). `rows` = (lo, hi) computes only those rows
    of `out` (threads split a product this way). Requires `kernel()` to be available.
    """
    lib = _kernel
    if lib is None:
        raise RuntimeError("the bf16 GEMM kernel is not loaded (core.fast.native.kernel())")
    layout = layout_of(a, b)
    if layout is None:
        raise ValueError(f"no kernel for a @ b with strides {a.stride()} @ {b.stride()}")
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = torch.empty((m, n), dtype=torch.bfloat16)
    lo, hi = rows if rows is not None else (0, m)
    if hi <= lo:
        return out
    es = 2  # bytes per bf16 element
    bias_ptr, bias_rs, bias_cs = None, 0, 0
    if bias is not None:
        bias = bias.expand(m, n)  # a 1-D bias: row stride 0
        bias_rs, bias_cs = bias.stride()
        bias_ptr = bias.data_ptr() + es * lo * bias_rs
    a_ptr = a.data_ptr() + es * lo * a.stride(0)
    c_ptr, ldc = out.data_ptr() + es * lo * out.stride(0), out.stride(0)
    if layout == "row@row":
        lib.bf16_gemm_rowrow(hi - lo, n, k, a_ptr, a.stride(0), b.data_ptr(), b.stride(0), bias_ptr, bias_rs,
                             bias_cs, c_ptr, ldc)
        return out
    status = lib.bf16_gemm_rowcol(hi - lo, n, k, a_ptr, a.stride(0), b.data_ptr(), b.stride(1), bias_ptr,
                                  bias_rs, bias_cs, c_ptr, ldc)  # b.t(): (N, K) row-major
    if status != 0:
        raise MemoryError(f"bf16 GEMM kernel ({layout}): out of memory for a ({m}, {k}) @ ({k}, {n}) product")
    return out
