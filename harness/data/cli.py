"""The `data build|info` command's handlers (its arguments: harness.data.cli_parser): build the
default data bundle, describe data.

`build` builds the default bundle (or finds it in the cache) and describes it; `info`
describes it, building it first if it is missing. `info --tokenizer T --corpus C`
describes a researcher's own tokenizer and corpus instead.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from core.tokenizer import load_tokenizer, token_strings
from harness.data.bundle import MIX_FILE, OUTPUT_FILES, Bundle, default_bundle
from harness.data.prepare import PreparedData, prepare_data
from harness.data.prose import is_thai

TOP_N = 20


def cmd_build(args: argparse.Namespace) -> int:
    bundle = default_bundle(cache_dir=args.cache_dir, rebuild=args.rebuild, progress=True)
    print(describe_bundle(bundle))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    if (args.tokenizer is None) != (args.corpus is None):
        raise ValueError("data info: give both --tokenizer and --corpus, or neither (for the default bundle).")
    if args.tokenizer is not None:
        vocab_size = args.vocab_size or load_tokenizer(args.tokenizer).get_vocab_size()
        try:
            prepared = prepare_data(args.tokenizer, args.corpus, vocab_size, text_field=args.text_field)
        except ImportError as exc:  # pyarrow missing for a Parquet corpus
            raise ValueError(str(exc)) from exc
        print(describe_prepared(prepared))
        return 0
    print(describe_bundle(default_bundle(cache_dir=args.cache_dir, progress=True)))
    return 0


# --------------------------------------------------------------------------- reports


def _size(n: int) -> str:
    """Bytes as kB / MB (decimal)."""
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _token(s: str) -> str:
    """A token string with whitespace made visible (JSON escapes)."""
    return json.dumps(s, ensure_ascii=False)


def top_tokens(strings: list[str], counts: np.ndarray, mask: np.ndarray, n: int = TOP_N) -> list[tuple[int, str, int]]:
    """(id, string, count) of the `n` tokens under `mask` with the highest `counts`;
    ties go to the lower id."""
    ids = np.flatnonzero(mask)
    order = ids[np.argsort(-counts[ids], kind="stable")][:n]
    return [(int(i), strings[i], int(counts[i])) for i in order]


def _token_lines(title: str, rows: list[tuple[int, str, int]]) -> list[str]:
    lines = [title]
    for rank, (i, s, c) in enumerate(rows, start=1):
        lines.append(f"  {rank:2d}. {_token(s):<24} {c:>10,}   id {i}")
    return lines


def _split_lines(counts: np.ndarray, dead: np.ndarray, strings: list[str]) -> list[str]:
    """Live/dead split and the Thai tokens among the dead."""
    vocab = dead.size
    n_dead = int(dead.sum())
    thai = np.array([is_thai(s) for s in strings])
    return [
        f"vocab {vocab:,}: live {vocab - n_dead:,} ({100 * (vocab - n_dead) / vocab:.1f} %), "
        f"dead {n_dead:,} ({100 * n_dead / vocab:.1f} %)",
        f"Thai tokens: {int(thai.sum()):,}, of which dead: {int((thai & dead).sum()):,}",
    ]


def describe_bundle(bundle: Bundle) -> str:
    """Sources, file sizes, token counts, live/dead split, most frequent dead and live."""
    m = bundle.manifest
    stats = m["stats"]
    strings = token_strings(load_tokenizer(bundle.tokenizer_path))
    counts, dead, mix_counts = bundle.counts(), bundle.dead_mask(), bundle.mix_counts()
    lines = [f"Default data bundle {bundle.root}", f"  key {m['key']}", "sources (role, package version, text, input checksum):"]
    for s in m["sources"]:
        package = f"{s['package']} {s['version']}"
        lines.append(f"  {s['role']:<6} {s['name']:<22} {package:<22} {_size(s['text']['bytes']):>9}  {s['checksum'][:23]}…")
    lines.append("files:")
    for name in OUTPUT_FILES:
        out = m["outputs"][name]
        note = ""
        if name == MIX_FILE:
            note = f"  (Thai {_size(stats['mix_thai_bytes'])} = {100 * stats['mix_thai_bytes'] / out['bytes']:.1f} %)"
        lines.append(f"  {name:<18} {_size(out['bytes']):>9}  {out['sha256'][:23]}…{note}")
    lines.append(f"tokens: corpus {stats['corpus_tokens']:,}, tokenizer mix {stats['mix_tokens']:,}")
    lines += _split_lines(counts, dead, strings)
    lines += _token_lines(f"{TOP_N} most frequent dead tokens (count in the tokenizer mix):", top_tokens(strings, mix_counts, dead))
    lines += _token_lines(f"{TOP_N} most frequent live tokens (count in the corpus):", top_tokens(strings, counts, ~dead))
    return "\n".join(lines)


def describe_prepared(data: PreparedData) -> str:
    """The same report for a researcher's tokenizer and corpus."""
    lines = [
        f"tokenizer {data.tokenizer_path}  {data.tokenizer_fingerprint}",
        f"corpus    {data.corpus_path}  {data.corpus_fingerprint}",
        f"files: tokenizer {_size(data.tokenizer_path.stat().st_size)}, corpus {_size(data.corpus_path.stat().st_size)}",
        f"tokens: corpus {data.ids.size:,}",
    ]
    lines += _split_lines(data.counts, data.dead_mask, data.strings)
    # Without the tokenizer's training text, order dead tokens by id: BPE gives lower ids
    # to earlier merges, which were more frequent in that text.
    ranks = -np.arange(data.vocab_size)
    lines += _token_lines(f"first {TOP_N} dead tokens by id (earlier merges were more frequent in training):", top_tokens(data.strings, ranks, data.dead_mask))
    lines += _token_lines(f"{TOP_N} most frequent live tokens (count in the corpus):", top_tokens(data.strings, data.counts, ~data.dead_mask))
    return "\n".join(lines)
