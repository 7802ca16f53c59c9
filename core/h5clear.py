"""Clear an HDF5 file's consistency flags, as `h5clear -s` does, so a killed writer's file reopens.

A file written with `libver="latest"` (superblock version 2 or 3) carries "file
consistency flags" in its superblock: set while a writer (or SWMR writer) has it open,
cleared on a clean close. A writer killed with SIGKILL leaves them set, and HDF5 then
refuses to open the file for writing ("file is already open for write/SWMR write (may
use <h5clear file> to clear file consistency flags)"). Readers in SWMR mode are not
affected. `h5clear` ships with the HDF5 tools, which an ordinary `pip install h5py` does
not provide, so this module does the same edit: zero the flags byte and recompute the
superblock's Jenkins lookup3 checksum. Only call it on a file no process has open.

Superblock v2/v3 layout (HDF5 file format spec, section II.A):
  signature (8) | version (1) | size of offsets O (1) | size of lengths (1) | flags (1) |
  base address (O) | extension address (O) | end-of-file address (O) | root group address (O) |
  checksum (4), over every byte before it.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

log = logging.getLogger(__name__)

SIGNATURE = b"\x89HDF\r\n\x1a\n"
FLAGS_OFFSET = 11
_FORMATS = {4: "I", 8: "Q"}  # struct codes of the superblock's address sizes
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 `hashlittle`, as HDF5's H5_checksum_lookup3 computes it."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    k = 0
    while length > 12:
        a = (a + int.from_bytes(data[k : k + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[k + 4 : k + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[k + 8 : k + 12], "little")) & _MASK
        a = (a - c) & _MASK; a ^= _rot(c, 4); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 6); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 8); b = (b + a) & _MASK  # noqa: E702
        a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 4); b = (b + a) & _MASK  # noqa: E702
        length -= 12
        k += 12
    if length == 0:
        return c
    tail = data[k : k + length] + b"\0" * (12 - length)  # the fall-through switch adds zeros beyond
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    c ^= b; c = (c - _rot(b, 14)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _MASK  # noqa: E702
    return c


def clear_status_flags(path: str | os.PathLike) -> bool:
    """Zero the superblock's consistency flags of `path`; True if they were set.

    A file shorter than the end-of-file address its superblock names (the writer was
    killed between allocating space and writing it) is extended with zeros up to it, as
    `h5clear --increment` would; those bytes lie past every frame the file names complete.

    Raises ValueError (naming the file) for anything but an HDF5 file with a version 2/3
    superblock at offset 0 whose checksum is intact.
    """
    path = Path(path)
    with path.open("r+b") as f:
        head = f.read(12)
        if len(head) < 12 or head[:8] != SIGNATURE:
            raise ValueError(f"{path} is not an HDF5 file (no superblock signature at offset 0).")
        version, size_of_offsets = head[8], head[9]
        if version not in (2, 3):
            raise ValueError(f"{path} has an HDF5 superblock of version {version}; only 2 and 3 carry flags.")
        if size_of_offsets not in _FORMATS:
            raise ValueError(f"{path}: HDF5 addresses of {size_of_offsets} bytes are not supported.")
        end = 12 + 4 * size_of_offsets
        f.seek(0)
        block = f.read(end + 4)
        body, (stored,) = block[:end], struct.unpack("<I", block[end : end + 4])
        if lookup3(body) != stored:
            raise ValueError(f"{path}: the HDF5 superblock checksum does not match; the file is damaged.")
        base, _, eof = struct.unpack(f"<3{_FORMATS[size_of_offsets]}", body[12 : 12 + 3 * size_of_offsets])
        size = f.seek(0, os.SEEK_END)
        if eof != 2 ** (8 * size_of_offsets) - 1 and size < base + eof:  # space the writer allocated but never wrote: HDF5 calls the file truncated
            f.truncate(base + eof)
            log.warning("%s was %d bytes short of its end-of-file address; extended with zeros", path,
                        base + eof - size)
        if body[FLAGS_OFFSET] == 0:
            return False
        cleared = body[:FLAGS_OFFSET] + b"\0" + body[FLAGS_OFFSET + 1 :]
        f.seek(0)
        f.write(cleared + struct.pack("<I", lookup3(cleared)))
        f.flush()
        os.fsync(f.fileno())
    log.info("cleared the HDF5 consistency flags of %s (its writer did not close it)", path)
    return True
