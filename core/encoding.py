"""How frames are stored: raw bf16 chunks, zstd-compressed, or XOR-delta coded (opt-in).

    none        every frame one raw chunk (the default; any HDF5 reader reads it)
    zstd        byte shuffle + zstd per frame, same datasets and types as `none`:
                plain h5py reads it after `import hdf5plugin`
    delta-zstd  E, W and the Adam moments change by a few bf16 ULPs per step, so frame k
                is stored as its bits XOR frame k-1's bits (mostly zero high bytes), then
                shuffle + zstd. Every `keyframe_every`-th frame is stored whole, so reading
                frame k decodes at most keyframe_every frames. These datasets live under
                /delta/ with uint16 type (a plain reader cannot mistake XOR bits for
                values); gradients and logits, which do not change slowly, get plain zstd.

Decoding /delta/W by hand: bits = f["delta/W"][k0:k+1] (k0 = the keyframe at or before k),
then `np.bitwise_xor.accumulate(bits, axis=0)[-1].view(<bf16>)`.
Lossless in every mode: the harness reads back the exact bits it was given.
"""

from __future__ import annotations

import h5py
import hdf5plugin  # registers the zstd filter with HDF5 (writing and reading)
import numpy as np

COMPRESSIONS = ("none", "zstd", "delta-zstd")
DELTA_GROUP = "delta"
ZSTD_LEVEL = 1  # on Flannel 1's XOR-coded W, level 3 was ~20 % slower and no smaller
DELTA_CODED = ("E", "W", "exp_avg_E", "exp_avg_W", "exp_avg_sq_E", "exp_avg_sq_W")


def is_delta_coded(name: str, compression: str) -> bool:
    return compression == "delta-zstd" and name in DELTA_CODED


def dataset_path(name: str, compression: str) -> str:
    """Where frame tensor `name` is stored in the file."""
    return f"{DELTA_GROUP}/{name}" if is_delta_coded(name, compression) else name


def set_filters(dcpl: h5py.h5p.PropDCID, compression: str) -> None:
    """Add the compression's HDF5 filters (byte shuffle, then zstd) to a dataset creation list."""
    if compression == "none":
        return
    dcpl.set_shuffle()
    dcpl.set_filter(hdf5plugin.ZSTD_ID, h5py.h5z.FLAG_MANDATORY, (ZSTD_LEVEL,))


class DeltaEncoder:
    """XOR of each frame's bits with the previous frame's, restarting at every keyframe."""

    def __init__(self, keyframe_every: int):
        self.keyframe_every = keyframe_every
        self._previous: dict[str, np.ndarray] = {}

    def continue_from(self, name: str, bits: np.ndarray) -> None:
        """Resume a stream: `bits` are the decoded last frame already stored."""
        self._previous[name] = bits.copy()

    def encode(self, name: str, frame: int, bits: np.ndarray) -> np.ndarray:
        """What to store as frame number `frame` of `name` (uint16 bits, any shape)."""
        previous = self._previous.get(name)
        if previous is None:
            previous = self._previous[name] = np.empty_like(bits)
        out = bits if frame % self.keyframe_every == 0 else np.bitwise_xor(bits, previous)
        np.copyto(previous, bits)  # the writer reuses `bits`' buffer for later frames
        return out


def decode(stored: np.ndarray, first: int, keyframe_every: int, previous: np.ndarray | None = None) -> np.ndarray:
    """Decode, in place, stored frames first, first+1, ... (axis 0) back to their bits.

    `previous` is frame first-1 decoded; it is needed unless `first` is a keyframe.
    """
    for i in range(len(stored)):
        if (first + i) % keyframe_every == 0:
            continue  # a keyframe is stored whole
        if i == 0:
            if previous is None:
                raise ValueError(f"frame {first} is not a keyframe: decoding it needs frame {first - 1}")
            np.bitwise_xor(stored[0], previous, out=stored[0])
        else:
            np.bitwise_xor(stored[i], stored[i - 1], out=stored[i])
    return stored


def read_decoded(dataset: h5py.Dataset, start: int, stop: int, keyframe_every: int,
                 previous: np.ndarray | None = None) -> np.ndarray:
    """Frames [start, stop) of a delta-coded dataset as their bits: (stop - start, ...) uint16.

    Reads back from the keyframe at or before `start`, unless `previous` (frame start-1,
    decoded) is given, as a reader streaming frames in order has it.
    """
    first = start if previous is not None or start % keyframe_every == 0 else start - start % keyframe_every
    stored = dataset[first:stop]  # HDF5 undoes zstd and the shuffle
    if len(stored):
        decode(stored, first, keyframe_every, previous if first == start else None)
    return stored[start - first:]
