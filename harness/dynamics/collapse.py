"""Collapse: dead rows that have become the same vector (the spongecrystal's signature).

Definition: at one recorded frame (default the last), a dead row is *collapsed* if it is
bit-identical to some other row of the matrix (dead or live), and *near-collapsed* if every
coordinate is within one bf16 ULP of the same coordinate of some other row (±0 one apart);
a near-collapse cluster is a connected group of rows joined by such one-ULP links that
involve a dead row, and its size counts every row in it.

Identical rows are near-collapsed too. Links are found exactly, without comparing every pair:
a row's candidates are the rows within one ULP of it in the coordinate with the most distinct
values, each then checked in every coordinate; clusters are the connected components of the
links, so a chain of rows each one ULP from the next is one cluster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from harness.checks.measures import bf16_ordinal
from harness.checks.registry import TokenSet
from harness.dynamics.stream import Source, matrix_name, opened, rows_of

DEFAULT_PAIRS = 100_000  # candidate pairs compared at once: 2 x 100,000 x 64 int32 = 51 MB


@dataclass
class Collapse:
    step: int
    n_tokens: int  # dead rows examined
    identical_rows: int  # dead rows bit-identical to another row
    identical_groups: int  # distinct bit patterns shared by >= 2 rows, at least one dead
    largest_identical_group: int  # rows in the largest such group (0: none)
    near_rows: int  # dead rows within one ULP per coordinate of another row
    near_clusters: int  # connected clusters of one-ULP links (each >= 2 rows)
    largest_near_cluster: int  # rows in the largest cluster (0: none)
    largest_near_cluster_dead: int  # of them dead
    tensor: str
    tokens: str

    def to_dict(self) -> dict:
        return asdict(self)


def components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected-component label (the smallest member) of each of n nodes joined by edges src-dst."""
    label = np.arange(n)
    while True:
        low = np.minimum(label[src], label[dst])
        new = label.copy()
        np.minimum.at(new, src, low)
        np.minimum.at(new, dst, low)
        while not np.array_equal(new[new], new):  # pointer jumping: a label's label is in the same component
            new = new[new]
        if np.array_equal(new, label):
            return label
        label = new


def one_ulp_links(ords: torch.Tensor, ids: np.ndarray, pairs: int = DEFAULT_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Every (dead row i, other row j) whose ordinals (V, D) differ by at most one in every
    coordinate: (src, dst) int64 arrays. Candidates are the rows within one ULP of row i in the
    most varied coordinate (found by sorting on it), each checked whole, `pairs` at a time."""
    key = int(torch.tensor([len(torch.unique(c)) for c in ords.T]).argmax())  # the most varied coordinate
    order = torch.argsort(ords[:, key]).numpy()
    sorted_key = ords[order, key].numpy()
    own = ords[ids, key].numpy()
    lo = np.searchsorted(sorted_key, own - 1, "left")
    hi = np.searchsorted(sorted_key, own + 1, "right")
    n = hi - lo  # (n_ids,) candidates of each row, itself included
    src = np.repeat(ids, n)
    dst = order[np.repeat(lo, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)]
    keep = src != dst
    src, dst = src[keep], dst[keep]
    near = np.zeros(len(src), dtype=bool)
    for start in range(0, len(src), pairs):
        a, b = torch.as_tensor(src[start : start + pairs]), torch.as_tensor(dst[start : start + pairs])
        near[start : start + pairs] = ((ords[a] - ords[b]).abs().amax(1) <= 1).numpy()
    return src[near], dst[near]


def collapse_of(rows: torch.Tensor, ids: np.ndarray, pairs: int = DEFAULT_PAIRS) -> dict:
    """The counts of the definition for matrix rows (V, D) bf16 and the examined row ids (n,)."""
    v = rows.shape[0]
    _, group, count = torch.unique(rows.view(torch.int16), dim=0, return_inverse=True, return_counts=True)
    shared = (count[group[ids]] >= 2).numpy()  # (n,)
    groups = np.unique(group[ids].numpy()[shared])
    src, dst = one_ulp_links(bf16_ordinal(rows), ids, pairs)
    label = components(v, src, dst)
    members = np.unique(np.concatenate([src, dst]))  # rows in some cluster
    sizes = np.bincount(label[members], minlength=v)
    dead_sizes = np.bincount(label[np.intersect1d(members, ids)], minlength=v)
    biggest = int(np.argmax(sizes)) if members.size else 0
    return {"identical_rows": int(shared.sum()), "identical_groups": int(groups.size),
            "largest_identical_group": int(count[torch.as_tensor(groups)].max()) if groups.size else 0,
            "near_rows": int(np.isin(ids, src).sum()), "near_clusters": int((sizes > 0).sum()),
            "largest_near_cluster": int(sizes[biggest]) if members.size else 0,
            "largest_near_cluster_dead": int(dead_sizes[biggest]) if members.size else 0}


def collapse(path: Source, tensor: str = "W", step: int = -1, tokens: TokenSet = "dead", pairs: int = DEFAULT_PAIRS
             ) -> Collapse:
    """Collapsed and near-collapsed `tokens` rows at optimizer step `step` (-1: the last frame)."""
    with opened(path) as traj:
        name = matrix_name(traj, tensor)
        frame = len(traj) - 1 if step == -1 else traj.frame_of_step(step)
        ids = rows_of(traj, tokens)
        counts = collapse_of(traj[name][frame], ids, pairs)
        return Collapse(int(traj.steps[frame]), len(ids), **counts, tensor=tensor, tokens=str(tokens))
