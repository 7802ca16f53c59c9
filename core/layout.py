"""A new trajectory file's datasets and attributes, before its first frame (the layout: core/format.py)."""

from __future__ import annotations

import json
from typing import Any

import h5py

from core.bf16 import hdf5_bfloat16
from core.encoding import dataset_path, is_delta_coded, set_filters
from core.environment import environment
from core.format import FORMAT_VERSION, PARAM_TENSORS, SCALARS, tied_name
from core.netcdf import label_axes
from core.token_tables import TokenTables, write_token_tables

def create_layout(f: h5py.File, paths: dict[str, str], vocab: int, dim: int, tied: bool, compression: str,
                  keyframe_every: int, attrs: dict[str, Any], tokens: TokenTables | None) -> None:
    """Every dataset and attribute of a new trajectory file (core/format.py), no frame yet.

    `paths`: each stored frame tensor's dataset path (TrajectoryWriter.stored_names); `attrs`: the
    writer's (record_every, tensors) and the caller's metadata, dicts and lists stored as JSON."""
    for name, where in paths.items():
        shape = (vocab,) if name == "logits" else (vocab, dim)
        space = h5py.h5s.create_simple((0,) + shape, (h5py.h5s.UNLIMITED,) + shape)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((1,) + shape)  # one frame per chunk
        set_filters(dcpl, compression)
        delta = is_delta_coded(name, compression)
        lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
        lcpl.set_create_intermediate_group(True)
        h5py.h5d.create(f.id, where.encode(), h5py.h5t.STD_U16LE if delta else hdf5_bfloat16(), space, dcpl=dcpl,
                        lcpl=lcpl)
        if delta:
            f[where].attrs.update(encoding="bfloat16 bits, XOR the previous frame's bits except at keyframes",
                                  keyframe_every=keyframe_every)
    if tied:
        for name, where in paths.items():
            for alias in {n for n in PARAM_TENSORS if tied_name(n) == name} - {name}:
                f[dataset_path(alias, compression)] = f[where]  # hard link: one dataset, two names
    for name, dtype in SCALARS.items():
        f.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(4096,), dtype=dtype)
    if tokens is not None:
        write_token_tables(f, tokens, vocab)
    label_axes(f, vocab, dim)
    written = {
        "format_version": FORMAT_VERSION,
        "tied": tied,
        "vocab_size": vocab,
        "dim": dim,
        "compression": compression,
        "keyframe_every": keyframe_every,
        "environment": json.dumps(environment()),
        **{k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in attrs.items()},
        "frames_complete": 0,
        "closed_cleanly": False,
    }
    for key, value in written.items():
        f.attrs[key] = "null" if value is None else value
