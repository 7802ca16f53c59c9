"""Comparing trajectory files bit for bit, for the tests of resume and sweeps."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from core.bf16 import is_hdf5_bfloat16


def dataset_names(group: h5py.Group, prefix: str = "") -> list[str]:
    """Every dataset by every name (hard-linked tied aliases too; visititems sees them once)."""
    names = []
    for key, item in group.items():
        names += dataset_names(item, f"{prefix}{key}/") if isinstance(item, h5py.Group) else [prefix + key]
    return sorted(names)


def raw_values(dset: h5py.Dataset) -> bytes | list:
    """A dataset's values as bytes (bf16 as raw bits, no conversion), strings as a list."""
    if is_hdf5_bfloat16(dset.id.get_type()):
        bits = np.empty(dset.shape, dtype=np.uint16)
        if bits.size:
            dset.id.read(h5py.h5s.ALL, h5py.h5s.ALL, bits, mtype=dset.id.get_type())
        return bits.tobytes()
    values = dset[()]
    return values.tolist() if values.dtype == object else values.tobytes()


def differing_attributes(got: Path, want: Path) -> set[str]:
    """Asserts every dataset of two files is bit-identical (names, shapes, HDF5 types,
    values); returns the names of the file attributes that differ."""
    with h5py.File(got, "r") as a, h5py.File(want, "r") as b:
        assert dataset_names(a) == dataset_names(b), f"{got.name}: datasets differ"
        for name in dataset_names(a):
            assert a[name].shape == b[name].shape, f"{got.name}: {name}: shape {a[name].shape} != {b[name].shape}"
            assert a[name].id.get_type().equal(b[name].id.get_type()), f"{got.name}: {name}: HDF5 types differ"
            assert raw_values(a[name]) == raw_values(b[name]), f"{got.name}: {name}: values differ"
        keys = set(a.attrs) | set(b.attrs)
        return {k for k in keys if k not in a.attrs or k not in b.attrs or not np.array_equal(a.attrs[k], b.attrs[k])}
