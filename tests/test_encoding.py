"""Opt-in compression of trajectories (core/encoding.py): lossless, random access, resumable."""

from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401  (what a plain reader of a compressed file imports)
import numpy as np
import pytest
import torch

from core.bf16 import from_bits, to_bits
from core.encoding import DeltaEncoder, decode
from core.recorder import RecordConfig, RecorderError, TrajectoryWriter
from core.reopen import resume_trajectory
from core.trajectory import Trajectory

V, D = 1000, 64


def adam_like_frames(n: int, seed: int = 0) -> list[torch.Tensor]:
    """A W that moves like a trained one: ~lr per coordinate per step on live rows, dead rows still."""
    gen = torch.Generator().manual_seed(seed)
    w = (torch.randn(V, D, generator=gen) * 0.02).to(torch.bfloat16)
    live = torch.rand(V, 1, generator=gen) < 0.7
    frames = [w]
    for _ in range(n - 1):
        step = 1e-3 * torch.sign(torch.randn(V, D, generator=gen)) * live
        w = (w.float() - step).to(torch.bfloat16)
        frames.append(w)
    return frames


def write(path, frames, compression, keyframe_every=4, **kw):
    config = RecordConfig(tensors=["W"], compression=compression, keyframe_every=keyframe_every, **kw)
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, config=config) as w:
        for step, frame in enumerate(frames):
            w.append(step, {"W": frame})


@pytest.mark.parametrize("compression", ["zstd", "delta-zstd"])
def test_random_access_in_any_order_is_bit_exact(tmp_path, compression):
    frames = adam_like_frames(11)
    write(tmp_path / "c.h5", frames, compression)
    order = np.random.default_rng(1).permutation(len(frames))
    with Trajectory(tmp_path / "c.h5") as traj:
        view = traj["W"]
        for k in order:  # cold reads: each decodes from its keyframe
            assert torch.equal(view[int(k)], frames[k]), f"frame {k}"
        for k in range(len(frames)):  # in order: each read XORs the previous decoded frame
            assert torch.equal(view[k], frames[k]), f"frame {k}"
        assert torch.equal(view[-1], frames[-1])
        assert torch.equal(view[3:10], torch.stack(frames[3:10]))  # crosses keyframes 4 and 8
        assert torch.equal(view[1:11:3, 5:9], torch.stack(frames[1:11:3])[:, 5:9])
        assert torch.equal(view[[9, 2, 5]], torch.stack([frames[9], frames[2], frames[5]]))
        blocks = [block for _, block in traj.iter_frames("W", chunk=3)]
        assert torch.equal(torch.cat(blocks), torch.stack(frames))


def test_delta_coding_beats_plain_zstd_on_slowly_moving_weights(tmp_path):
    """Every live coordinate moves ~8 ULPs a step here, harsher than training: a trained W
    compresses more (the benchmark measures that on a real trajectory)."""
    frames = adam_like_frames(64)
    sizes = {}
    for compression in ("none", "zstd", "delta-zstd"):
        write(tmp_path / f"{compression}.h5", frames, compression, keyframe_every=64)
        sizes[compression] = (tmp_path / f"{compression}.h5").stat().st_size
    assert sizes["zstd"] < sizes["none"]
    assert 2 * sizes["delta-zstd"] < sizes["zstd"], sizes
    assert sizes["none"] / sizes["delta-zstd"] > 2.5, sizes


def test_plain_h5py_reads_both_compressed_layouts(tmp_path):
    frames = adam_like_frames(6)
    write(tmp_path / "z.h5", frames, "zstd")
    write(tmp_path / "d.h5", frames, "delta-zstd")
    with h5py.File(tmp_path / "z.h5", "r") as f:  # same dataset and type as uncompressed
        np.testing.assert_array_equal(f["W"][5], frames[5].float().numpy())
    with h5py.File(tmp_path / "d.h5", "r") as f:  # the recipe in core/encoding.py's docstring
        assert "W" not in f  # XOR bits are never served as values
        assert f.attrs["compression"] == "delta-zstd" and f["delta/W"].attrs["keyframe_every"] == 4
        bits = np.bitwise_xor.accumulate(f["delta/W"][4:6], axis=0)[-1]
        assert torch.equal(from_bits(bits), frames[5])


def test_tied_delta_file_serves_e_and_w(tmp_path):
    frames = adam_like_frames(5)
    config = RecordConfig(tensors=["E", "W"], compression="delta-zstd", keyframe_every=2)
    with TrajectoryWriter(tmp_path / "t.h5", vocab_size=V, dim=D, tied=True, config=config) as w:
        for step, frame in enumerate(frames):
            w.append(step, {"W": frame})
    with Trajectory(tmp_path / "t.h5") as traj:
        assert {"E", "W"} <= set(traj.names)
        assert torch.equal(traj["E"][3], frames[3]) and torch.equal(traj["W"][4], frames[4])


def test_resume_mid_keyframe_interval_continues_the_xor_chain(tmp_path):
    frames = adam_like_frames(12)
    config = RecordConfig(tensors=["W"], compression="delta-zstd", keyframe_every=4)
    path = tmp_path / "r.h5"
    with TrajectoryWriter(path, vocab_size=V, dim=D, tied=False, config=config) as w:
        for step, frame in enumerate(frames[:9]):
            w.append(step, {"W": frame})
    # keep 6 frames (frame 5 is mid-interval), write 6.. again
    with resume_trajectory(path, frames=6, config=config) as w:
        for step in range(6, 12):
            w.append(step, {"W": frames[step]})
    straight = tmp_path / "s.h5"
    write(straight, frames, "delta-zstd")
    with Trajectory(path) as resumed, Trajectory(straight) as reference:
        assert len(resumed) == 12
        assert torch.equal(resumed["W"][:], torch.stack(frames))
        assert torch.equal(resumed["W"][:], reference["W"][:])
        with h5py.File(path, "r") as a, h5py.File(straight, "r") as b:  # the stored bits too
            np.testing.assert_array_equal(a["delta/W"][:], b["delta/W"][:])


def test_resume_with_another_compression_is_refused(tmp_path):
    write(tmp_path / "r.h5", adam_like_frames(3), "delta-zstd")
    with pytest.raises(RecorderError, match="stored with compression 'delta-zstd'.*not 'none'"):
        resume_trajectory(tmp_path / "r.h5", frames=2, config=RecordConfig(tensors=["W"]))


def test_unknown_compression_is_rejected():
    with pytest.raises(ValueError, match="compression must be one of none, zstd, delta-zstd, got 'lz4'"):
        TrajectoryWriter("/tmp/never.h5", vocab_size=V, dim=D, tied=False,
                         config=RecordConfig(compression="lz4"))


def test_encoder_and_decoder_are_inverse_across_keyframes():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 2**16, size=(10, 7), dtype=np.uint16)
    encoder, buffer = DeltaEncoder(keyframe_every=3), np.empty(7, np.uint16)
    stored = []
    for k, bits in enumerate(frames):
        np.copyto(buffer, bits)  # the writer reuses one buffer
        stored.append(encoder.encode("W", k, buffer).copy())
    stored = np.stack(stored)
    assert np.array_equal(stored[3], frames[3]) and not np.array_equal(stored[4], frames[4])
    np.testing.assert_array_equal(decode(stored[3:].copy(), 3, 3), frames[3:])
    np.testing.assert_array_equal(decode(stored[5:].copy(), 5, 3, previous=frames[4]), frames[5:])
    with pytest.raises(ValueError, match="frame 5 is not a keyframe"):
        decode(stored[5:].copy(), 5, 3)
    assert to_bits(from_bits(frames[0])).tobytes() == frames[0].tobytes()
