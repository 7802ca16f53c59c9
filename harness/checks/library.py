"""The built-in checks: `equal`, `zero_displacement`, `nonzero_displacement`, `zero_gradient`,
`tied_identity`, `finite`, `loss_decreases`, `deterministic`, `decay_below_ulp_noop`,
`displacement_exceeds`, `radius_dips_before_growing`.

Each is registered (harness.checks.registry) when this module is imported, which importing
harness.checks does: in one table at the end (BUILT_IN), not with `@check` on each function,
because mutmut leaves decorated functions unmutated (nox -s mutants, docs/testing.md). A check
reads the file, streaming frames, and returns a Verdict whose message says what it read (the
dataset, the tokens, the steps) and the measured value against the expected one.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from core.format import SCALARS
from core.trajectory import Trajectory
from harness.checks.measures import cloud_radius, radius_dips_before_growing, token_ids
from harness.checks.registry import CheckContext, TokenSet, Verdict, check

log = logging.getLogger(__name__)

STREAM_FRAMES = 32  # frames read at a time: 32 x 10,000 x 64 x 2 bytes = 41 MB
SHOW = 10  # how many offending tokens / steps a failure names


# ------------------------------------------------------------------ helpers
def frame_for(traj: Trajectory, step: int) -> int:
    """Frame index of optimizer step `step`; -1 means the last frame."""
    return len(traj) - 1 if step == -1 else traj.frame_of_step(step)


def _ids_text(ids: np.ndarray | list, total: int | None = None) -> str:
    ids = list(map(int, ids))
    shown = ", ".join(map(str, ids[:SHOW]))
    more = len(ids) - SHOW
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]" + (f" of {total}" if total is not None else "")


# ------------------------------------------------------------------ the checks
def equal(ctx: CheckContext, a: str = "E", b: str = "W", step: int = 0) -> Verdict:
    """Tensors `a` and `b` are bit-identical at optimizer step `step` (-1: the last frame)."""
    frame = frame_for(ctx.traj, step)
    x, y = ctx.traj[a][frame], ctx.traj[b][frame]
    differ = torch.nonzero((x.view(torch.int16) != y.view(torch.int16)).reshape(x.shape[0], -1).any(dim=1))
    differ = differ.flatten().numpy()
    if differ.size == 0:
        return Verdict(True, f"{a} and {b} are bit-identical at step {int(ctx.traj.steps[frame])}")
    gap = (x.float() - y.float()).abs().reshape(x.shape[0], -1).amax(dim=1)
    worst = differ[np.argsort(-gap.numpy()[differ], kind="stable")]  # the rows that differ, largest gap first
    return Verdict(
        False,
        f"expected {a} == {b} bit for bit at step {int(ctx.traj.steps[frame])}; "
        f"{differ.size} rows differ, largest |{a} - {b}| = {gap.max().item():.3g} at tokens {_ids_text(worst)}",
        {"tokens": differ.tolist()[:100]},
    )


def _moved_rows(ctx: CheckContext, tensor: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each token in ids: the first frame its row differs from frame 0 (-1: never),
    and its largest |displacement| over the run. Streams the file."""
    view = ctx.traj[tensor]
    first = view[0, ids].view(torch.int16)  # (n, D) raw bits
    first_f = first.view(torch.bfloat16).float()
    first_move = np.full(len(ids), -1, dtype=np.int64)
    max_move = torch.zeros(len(ids))
    for start, block in ctx.traj.iter_frames(tensor, chunk=STREAM_FRAMES, tokens=ids):
        bits = block.view(torch.int16)
        moved = (bits != first).reshape(bits.shape[0], bits.shape[1], -1).any(dim=2)  # (f, n)
        for offset in range(moved.shape[0]):
            new = moved[offset].numpy() & (first_move < 0)
            first_move[new] = start + offset
        delta = (block.float() - first_f).abs().reshape(block.shape[0], block.shape[1], -1).amax(dim=2)
        max_move = torch.maximum(max_move, delta.amax(dim=0))
    return first_move, max_move.numpy(), ids


def zero_displacement(ctx: CheckContext, tensor: str = "E", tokens: TokenSet = "dead") -> Verdict:
    """Rows of `tensor` for `tokens` never change, bit for bit, over every recorded frame."""
    ids = token_ids(ctx.traj, tokens)
    if ids.size == 0:
        return Verdict(False, f"the token set {tokens!r} is empty: nothing to check")
    first_move, max_move, ids = _moved_rows(ctx, tensor, ids)
    moved = np.flatnonzero(first_move >= 0)
    if moved.size == 0:
        return Verdict(True, f"{ids.size} {tokens} rows of {tensor} never moved over {len(ctx.traj)} frames")
    order = moved[np.argsort(-max_move[moved])]
    steps = ctx.traj.steps
    first_steps = sorted({int(steps[first_move[i]]) for i in moved})
    return Verdict(
        False,
        f"expected {tensor} rows of {tokens} tokens never to move; read {len(ctx.traj)} frames (steps "
        f"{int(steps[0])}..{int(steps[-1])}): {moved.size} of {ids.size} moved, "
        f"first at step {first_steps[0]}; largest |displacement| {max_move[order[0]]:.3g}; "
        f"tokens that moved most: {_ids_text(ids[order])}; steps of first moves: {_ids_text(first_steps)}",
        {"tokens": ids[order].tolist()[:100], "first_steps": first_steps[:100]},
    )


def nonzero_displacement(
    ctx: CheckContext, tensor: str = "W", tokens: TokenSet = "dead", min_fraction: float = 1.0
) -> Verdict:
    """At the last frame at least `min_fraction` of the `tokens` rows of `tensor` differ from frame 0."""
    ids = token_ids(ctx.traj, tokens)
    if ids.size == 0:
        return Verdict(False, f"the token set {tokens!r} is empty: nothing to check")
    view = ctx.traj[tensor]
    start, end = view[0, ids].view(torch.int16), view[-1, ids].view(torch.int16)
    moved = (start != end).reshape(len(ids), -1).any(dim=1).numpy()
    fraction = moved.mean()
    text = f"{moved.sum()} of {ids.size} {tokens} rows of {tensor} ({fraction:.1%}) moved by step {int(ctx.traj.steps[-1])}"
    if fraction >= min_fraction:
        return Verdict(True, text)
    still = ids[~moved]
    return Verdict(False, f"expected at least {min_fraction:.1%} to move; {text}; unmoved: {_ids_text(still)}",
                   {"tokens": still.tolist()[:100]})


def zero_gradient(ctx: CheckContext, tensor: str = "grad_E", tokens: TokenSet = "dead") -> Verdict:
    """Recorded gradient rows of `tokens` are exactly zero in every frame."""
    ids = token_ids(ctx.traj, tokens)
    if ids.size == 0:
        return Verdict(False, f"the token set {tokens!r} is empty: nothing to check")
    bad_tokens: set[int] = set()
    bad_steps: list[int] = []
    largest = 0.0
    steps = ctx.traj.steps
    for start, block in ctx.traj.iter_frames(tensor, chunk=STREAM_FRAMES, tokens=ids):
        nonzero = (block.float() != 0).reshape(block.shape[0], block.shape[1], -1).any(dim=2)  # (f, n)
        largest = max(largest, block.float().abs().max().item())
        for offset in torch.nonzero(nonzero.any(dim=1)).flatten().tolist():
            bad_steps.append(int(steps[start + offset]))
        bad_tokens.update(ids[nonzero.any(dim=0).numpy()].tolist())
    if not bad_tokens:
        return Verdict(True, f"{tensor} rows of {ids.size} {tokens} tokens are zero in all {len(ctx.traj)} frames")
    return Verdict(
        False,
        f"expected zero {tensor} rows for {ids.size} {tokens} tokens over {len(ctx.traj)} frames; "
        f"{len(bad_tokens)} tokens had nonzero gradient {_ids_text(sorted(bad_tokens))} at steps "
        f"{_ids_text(bad_steps)}; largest |{tensor}| {largest:.3g}",
        {"tokens": sorted(bad_tokens)[:100], "steps": bad_steps[:100]},
    )


def tied_identity(ctx: CheckContext) -> Verdict:
    """The run's model had E and W as one parameter (attribute embeddings_shared, recorded from the
    live model), and the file stores them once (hard link), so equal at every frame."""
    traj = ctx.traj
    shared = traj.meta.get("embeddings_shared")
    if shared is None:
        return Verdict(False, "the file does not record whether the run's E and W were one parameter (attribute "
                              "embeddings_shared, recorded since 2026-12-03): run the scenario again")
    if shared is not True:
        return Verdict(False, f"expected a tied model; the run's E and W were separate parameters (attribute "
                              f"embeddings_shared = {shared})")
    if "E" not in traj or "W" not in traj:
        return Verdict(False, "expected both E and W in the file (record E or W in a tied run)")
    if traj.dataset("E").id == traj.dataset("W").id:
        return Verdict(True, f"E and W are one dataset over {len(ctx.traj)} frames")
    differ: list[int] = []  # frames where E and W differ
    largest = 0.0
    for start, block in ctx.traj.iter_frames("E", chunk=STREAM_FRAMES):
        other = ctx.traj["W"][start : start + block.shape[0]]
        apart = (block.view(torch.int16) != other.view(torch.int16)).reshape(block.shape[0], -1).any(dim=1)
        differ += [start + i for i in torch.nonzero(apart).flatten().tolist()]
        largest = max(largest, (block.float() - other.float()).abs().max().item())
    if not differ:
        return Verdict(True, f"E and W stored apart but equal at all {len(ctx.traj)} frames")
    return Verdict(False, f"expected E == W (embeddings_shared = True); they differ in {len(differ)} of "
                          f"{len(ctx.traj)} frames, at steps {_ids_text(ctx.traj.steps[differ])}; largest |E - W| = "
                          f"{largest:.3g}")


def finite(ctx: CheckContext, tensor: str = "W") -> Verdict:
    """Every recorded value of `tensor` is finite (frame 0's NaN loss/lr/grad_norm excepted)."""
    if tensor in SCALARS:
        values = ctx.traj[tensor][1:]
        bad = np.flatnonzero(~np.isfinite(values)) + 1
        steps, n_bad = ctx.traj.steps[bad], bad.size
    else:
        steps_all = ctx.traj.steps
        bad_frames, n_bad = [], 0
        for start, block in ctx.traj.iter_frames(tensor, chunk=STREAM_FRAMES):
            flat = ~torch.isfinite(block.float()).reshape(block.shape[0], -1)  # (f, values)
            bad_frames += [start + i for i in torch.nonzero(flat.any(dim=1)).flatten().tolist()]
            n_bad += int(flat.sum())
        steps = steps_all[bad_frames]
    if len(steps) == 0:
        return Verdict(True, f"all values of {tensor} are finite")
    return Verdict(False, f"expected finite {tensor} over {len(ctx.traj)} frames; {n_bad} non-finite values, at steps "
                          f"{_ids_text(steps)}", {"steps": list(map(int, steps))[:100]})


def loss_decreases(ctx: CheckContext, window: int = 10, min_drop: float = 0.0) -> Verdict:
    """Mean loss of the last `window` recorded steps is below that of the first `window` by more than `min_drop`."""
    loss = ctx.traj["loss"][1:]  # frame 0 has no loss
    if loss.size < 2:
        return Verdict(False, f"need at least 2 recorded steps with a loss, have {loss.size}")
    w = max(1, min(window, loss.size // 2))
    first, last = float(loss[:w].mean()), float(loss[-w:].mean())
    steps = ctx.traj.steps[1:]
    text = (f"mean loss of the first {w} recorded steps ({int(steps[0])}..{int(steps[w - 1])}) {first:.4f}, of the last "
            f"{w} ({int(steps[-w])}..{int(steps[-1])}) {last:.4f} (drop {first - last:.4f})")
    if first - last > min_drop:
        return Verdict(True, text)
    return Verdict(False, f"expected the loss to drop by more than {min_drop}; {text}")


def deterministic(ctx: CheckContext, steps: int = 2) -> Verdict:
    """Running the first `steps` steps again gives bit-identical frames, in every recorded dataset."""
    if ctx.rerun is None:
        return Verdict(False, "no rerun available in this context")
    n = min(steps, int(ctx.traj.steps[-1]))  # the steps this run did, as recorded
    with Trajectory(ctx.rerun(n)) as again:
        frames, names = len(again), again.names
        if names != ctx.traj.names:
            return Verdict(False, f"expected a second run to record the same datasets; it recorded {names}, this run "
                                  f"{ctx.traj.names}")
        for name in names:
            a, b = ctx.traj[name][:frames], again[name][:frames]
            if isinstance(a, torch.Tensor):
                differ = (a.view(torch.int16) != b.view(torch.int16)).reshape(frames, -1).numpy()  # (frames, values)
            else:
                differ = ~((a == b) | (np.isnan(a) & np.isnan(b))).reshape(frames, -1)
            if differ.any():
                frame = int(np.flatnonzero(differ.any(axis=1))[0])
                return Verdict(False, f"expected a second run to reproduce {name} bit for bit over {frames} frames; "
                                      f"it differs first at step {int(ctx.traj.steps[frame])}: "
                                      f"{int(differ[frame].sum())} of {differ.shape[1]} values")
    return Verdict(True, f"a second run of {n} steps reproduced all {len(names)} datasets bit for bit")


BF16_HALF_ULP_OF_ONE = 2.0**-9


def decay_below_ulp_noop(ctx: CheckContext, tensor: str = "E", tokens: TokenSet = "dead") -> Verdict:
    """With lr * wd below 2^-9 at every step, bf16 AdamW decay rounds away: zero-gradient rows never
    move. lr is the recorded `lr` dataset (read back from the optimizer), weight decay the one of the
    optimizer's param group that held `tensor`'s parameter (attribute optimizer_groups)."""
    groups = ctx.traj.meta.get("optimizer_groups")
    if not groups:
        return Verdict(False, "the file does not record the optimizer's param groups (attribute optimizer_groups, "
                              "recorded since 2026-12-03): run the scenario again")
    param = "transformer.wte.weight" if tensor.endswith("E") else "lm_head.weight"
    held = [g for g in groups if param in g["params"]]
    if len(held) != 1:
        return Verdict(False, f"{param} is in {len(held)} of the recorded optimizer groups, not one")
    wd, lrs = float(held[0]["weight_decay"]), ctx.traj["lr"][1:]
    if wd <= 0:
        return Verdict(False, f"the optimizer's weight decay for {param} was {wd} (attribute optimizer_groups): "
                              f"no decay to round away")
    if lrs.size == 0 or not np.isfinite(lrs).all():
        return Verdict(False, f"the recorded lr holds {lrs.size} steps, not all finite: {lrs[:5].tolist()}")
    product = float(lrs.max()) * wd
    read = (f"dataset lr, steps {int(ctx.traj.steps[1])}..{int(ctx.traj.steps[-1])}: largest recorded lr {lrs.max():.3g}"
            f" * weight decay {wd:.3g} of {param}'s group = {product:.3g}")
    if product >= BF16_HALF_ULP_OF_ONE:
        return Verdict(False, f"{read}: not below 2^-9 = {BF16_HALF_ULP_OF_ONE:.3g}")
    verdict = zero_displacement(ctx, tensor=tensor, tokens=tokens)
    return Verdict(verdict.passed, f"{read} < 2^-9: {verdict.message}", verdict.worst)


def displacement_exceeds(ctx: CheckContext, tensor: str = "W", tokens: TokenSet = "dead", than: TokenSet = "live",
                         step: int = -1) -> Verdict:
    """Mean ‖x_step − x_0‖ of the `tokens` rows of `tensor` exceeds that of the `than` rows
    (step -1: the last frame)."""
    frame = frame_for(ctx.traj, step)
    view = ctx.traj[tensor]
    first, last = view[0].float(), view[frame].float()
    moved = (last - first).norm(dim=-1).numpy()  # (V,)
    means, sizes = {}, {}
    for label, tokens_ in (("tokens", tokens), ("than", than)):
        ids = token_ids(ctx.traj, tokens_)
        if ids.size == 0:
            return Verdict(False, f"the token set {tokens_!r} is empty: nothing to compare")
        means[label], sizes[label] = float(moved[ids].mean()), ids.size
    text = (f"mean displacement of {tensor} rows from step {int(ctx.traj.steps[0])} to {int(ctx.traj.steps[frame])}: "
            f"{sizes['tokens']} {tokens} {means['tokens']:.4g}, {sizes['than']} {than} {means['than']:.4g}")
    if means["than"] > 0:
        text += f" (ratio {means['tokens'] / means['than']:.3g})"
    if means["tokens"] > means["than"]:
        return Verdict(True, text)
    return Verdict(False, f"expected {tokens} to move further than {than}; {text}")


def radius_dips(ctx: CheckContext, tensor: str = "W", tokens: TokenSet = "dead") -> Verdict:
    """The cloud of `tokens` rows first contracts below its initial mean radius, then grows past
    it ("the inhale before the sneeze")."""
    ids = token_ids(ctx.traj, tokens)
    if ids.size < 2:
        return Verdict(False, f"the token set {tokens!r} has {ids.size} tokens: no cloud")
    radius = cloud_radius(ctx.traj, tensor, ids, chunk=STREAM_FRAMES)
    dip = radius_dips_before_growing(radius)
    steps = ctx.traj.steps
    low = f"minimum {radius[dip['min_frame']]:.5g} at step {int(steps[dip['min_frame']])} ({dip['min_relative']:+.3%})"
    grow = (f"first above the start ({radius[0]:.5g}) at step {int(steps[dip['first_growth_frame']])}"
            if dip["first_growth_frame"] is not None else f"never above the start ({radius[0]:.5g})")
    text = f"mean radius of the {ids.size} {tokens} rows of {tensor} over {len(steps)} frames: {low}, {grow}"
    if dip["dips"]:
        return Verdict(True, text)
    return Verdict(False, f"expected a contraction before growth; {text}", {"radius": radius[:100].tolist()})


BUILT_IN = {
    "equal": equal,
    "zero_displacement": zero_displacement,
    "nonzero_displacement": nonzero_displacement,
    "zero_gradient": zero_gradient,
    "tied_identity": tied_identity,
    "finite": finite,
    "loss_decreases": loss_decreases,
    "deterministic": deterministic,
    "decay_below_ulp_noop": decay_below_ulp_noop,
    "displacement_exceeds": displacement_exceeds,
    "radius_dips_before_growing": radius_dips,
}
for _name, _fn in BUILT_IN.items():
    check(_name)(_fn)
