"""Collapse: dead rows that have become the same vector (the spongecrystal's signature).

Definition: at one recorded frame (default the last), a dead row is *collapsed* if it is
bit-identical to some other row of the matrix (dead or live), and *near-collapsed* if every
coordinate is within one bf16 ULP of the same coordinate of some other row (±0 one apart);
a near-collapse cluster is a connected group of rows joined by such one-ULP links that
involve a dead row, and its size counts every row in it.

Identical rows are near-collapsed too. Links are found exactly, without comparing every pair:
identical rows are merged into one pattern, and a pattern's candidates are the patterns within
one ULP of it in the coordinate with the most distinct values, each then checked in every
coordinate; clusters are the connected components of the links, so a chain of rows each one
ULP from the next is one cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.checks.measures import bf16_ordinal
from harness.checks.registry import TokenSet
from harness.dynamics.stream import Source, matrix_name, numbers, opened, rows_of

DEFAULT_PAIRS = 100_000  # candidate pairs compared at once: about 2 x 100,000 x 64 int32 = 51 MB


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
        return numbers(self)


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


def one_ulp_links(ords: torch.Tensor, sources: np.ndarray, pairs: int = DEFAULT_PAIRS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every (i in `sources`, j != i) whose ordinals (n, D) differ by at most one in every coordinate:
    (src, dst) int64 arrays. A row's candidates are the rows within one of it in the most varied
    coordinate (found by sorting on it); they are checked whole, about `pairs` at a time."""
    key = int(torch.tensor([len(torch.unique(c)) for c in ords.T]).argmax())  # the most varied coordinate
    order = torch.argsort(ords[:, key]).numpy()
    sorted_key = ords[order, key].numpy()
    own = ords[sources, key].numpy()
    lo = np.searchsorted(sorted_key, own - 1, "left")
    n = np.searchsorted(sorted_key, own + 1, "right") - lo  # (n_sources,) candidates of each, itself included
    src, dst = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    first = 0
    while first < len(sources):  # sources in runs of about `pairs` candidates (at least one source)
        last = max(first + 1, int(np.searchsorted(np.cumsum(n[first:]), pairs, "right")) + first)
        k = n[first:last]
        i = np.repeat(sources[first:last], k)
        j = order[np.repeat(lo[first:last], k) + np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)]
        i, j = i[i != j], j[i != j]
        near = ((ords[torch.as_tensor(i)] - ords[torch.as_tensor(j)]).abs().amax(1) <= 1).numpy()
        src.append(i[near])
        dst.append(j[near])
        first = last
    return np.concatenate(src), np.concatenate(dst)


def collapse_of(rows: torch.Tensor, ids: np.ndarray, pairs: int = DEFAULT_PAIRS) -> dict:
    """The counts of the definition for matrix rows (V, D) bf16 and the examined row ids (n,).

    Identical rows are merged into one pattern first, so the one-ULP search and the clusters work
    on distinct patterns (a cloud of 2,000 identical rows is one pattern, not 4 million pairs)."""
    patterns, group, count = torch.unique(rows.view(torch.int16), dim=0, return_inverse=True, return_counts=True)
    group, count = group.numpy(), count.numpy()  # (V,) each row's pattern; (P,) rows per pattern
    dead_count = np.bincount(group[ids], minlength=len(count))  # (P,) examined rows per pattern
    shared = count[group[ids]] >= 2  # (n,) examined rows identical to another row
    groups = np.unique(group[ids][shared])
    src, dst = one_ulp_links(bf16_ordinal(patterns.view(torch.bfloat16)), np.flatnonzero(dead_count), pairs)
    label = components(len(count), src, dst)
    in_cluster = np.zeros(len(count), dtype=bool)  # patterns whose rows are linked to another row
    in_cluster[src] = in_cluster[dst] = True
    in_cluster |= (dead_count > 0) & (count >= 2)
    sizes = np.bincount(label[in_cluster], weights=count[in_cluster], minlength=len(count))  # rows per cluster
    dead_sizes = np.bincount(label[in_cluster], weights=dead_count[in_cluster], minlength=len(count))
    biggest = int(np.argmax(sizes))
    return {"identical_rows": int(shared.sum()), "identical_groups": int(groups.size),
            "largest_identical_group": int(count[groups].max()) if groups.size else 0,
            "near_rows": int(in_cluster[group[ids]].sum()), "near_clusters": int((sizes > 0).sum()),
            "largest_near_cluster": int(sizes[biggest]), "largest_near_cluster_dead": int(dead_sizes[biggest])}


def collapse(path: Source, tensor: str = "W", step: int = -1, tokens: TokenSet = "dead", pairs: int = DEFAULT_PAIRS
             ) -> Collapse:
    """Collapsed and near-collapsed `tokens` rows at optimizer step `step` (-1: the last frame)."""
    with opened(path) as traj:
        name = matrix_name(traj, tensor)
        frame = len(traj) - 1 if step == -1 else traj.frame_of_step(step)
        ids = rows_of(traj, tokens)
        counts = collapse_of(traj[name][frame], ids, pairs)
        return Collapse(int(traj.steps[frame]), len(ids), **counts, tensor=tensor, tokens=str(tokens))
