"""bfloat16 in HDF5 and numpy: a true HDF5 float type with bf16's bit layout, raw 16-bit I/O.

numpy has no bfloat16, and h5py stores an opaque 2-byte type for it that no other reader
understands. Instead every bf16 dataset uses an HDF5 IEEE-style float type of 16 bits:
sign bit 15, exponent bits 7-14 (bias 127), mantissa bits 0-6 (implied leading 1). HDF5
knows how to convert it, so plain h5py (`f["W"][k]` reads float32) and h5dump read the
exact values, while the harness moves the raw 16 bits with no conversion at all.
"""

from __future__ import annotations

import h5py
import numpy as np
import torch


def hdf5_bfloat16() -> h5py.h5t.TypeFloatID:
    """A new HDF5 datatype with bfloat16's layout (little-endian)."""
    t = h5py.h5t.IEEE_F32LE.copy()
    t.set_fields(15, 7, 8, 0, 7)  # sign position, exponent position/size, mantissa position/size
    t.set_precision(16)
    t.set_size(2)
    t.set_ebias(127)
    return t


def is_hdf5_bfloat16(tid: h5py.h5t.TypeID) -> bool:
    """True if an HDF5 datatype has bfloat16's layout."""
    return (
        isinstance(tid, h5py.h5t.TypeFloatID)
        and tid.get_size() == 2
        and tid.get_fields() == (15, 7, 8, 0, 7)
        and tid.get_ebias() == 127
    )


def to_bits(t: torch.Tensor) -> np.ndarray:
    """The raw bits of a CPU bf16 tensor as a uint16 numpy array (a view, no copy)."""
    if t.dtype != torch.bfloat16:
        raise TypeError(f"expected a bfloat16 tensor, got {t.dtype}")
    return t.contiguous().view(torch.int16).numpy().view(np.uint16)


def from_bits(bits: np.ndarray) -> torch.Tensor:
    """A bf16 tensor over raw uint16 bits (a view, no copy)."""
    return torch.from_numpy(np.ascontiguousarray(bits).view(np.int16)).view(torch.bfloat16)
