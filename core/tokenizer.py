"""Character-level BPE over `tokenizers`: train, load, encode a corpus, count tokens.

The lab log chose a character-level BPE (unicode characters are the alphabet, not bytes)
so that every token decodes to a readable string. Spaces are kept as the visible marker
"▁" (Metaspace, never prepended), so decode(encode(text)) == text for any text whose
characters are all in the alphabet.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

log = logging.getLogger(__name__)

SPACE_MARK = "▁"
UNK = "<unk>"


def new_char_bpe() -> Tokenizer:
    """An untrained character-level BPE with the project's pre-tokenizer and decoder."""
    tok = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE_MARK, prepend_scheme="never", split=True)
    tok.decoder = decoders.Metaspace(replacement=SPACE_MARK, prepend_scheme="never", split=True)
    return tok


def train_char_bpe(
    files: Sequence[str | os.PathLike],
    vocab_size: int,
    special_tokens: Sequence[str] = (UNK,),
    show_progress: bool = False,
) -> Tokenizer:
    """Train a character-level BPE of exactly `vocab_size` tokens on text files.

    The alphabet is every character seen in `files` (no limit); merges are learned until
    the vocabulary is full. Raises if the text cannot fill the vocabulary, because a
    model built for `vocab_size` rows would then have rows no tokenizer id can reach.
    """
    paths = [Path(f) for f in files]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"Tokenizer training file not found: {p}")
        if p.stat().st_size == 0:
            raise ValueError(f"Tokenizer training file is empty: {p}")
    tok = new_char_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        special_tokens=list(special_tokens),
        initial_alphabet=[],
        show_progress=show_progress,
    )
    tok.train([str(p) for p in paths], trainer)
    got = tok.get_vocab_size()
    if got != vocab_size:
        raise ValueError(
            f"BPE training on {', '.join(map(str, paths))} reached only {got} tokens, not the requested "
            f"{vocab_size}: the text has too few distinct character pairs. Use more text or a smaller vocab."
        )
    return tok


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer JSON file, with an error that names the file when it cannot."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Tokenizer file not found: {p}")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        raise ValueError(f"Cannot read tokenizer file {p}: {exc}") from exc


def _split_at_spaces(text: str, n_chunks: int) -> list[str]:
    """Split `text` into about `n_chunks` pieces, each cut just before a space.

    The Metaspace pre-tokenizer starts a new pre-token at every space, so cutting there
    changes no token: encoding the pieces gives exactly the ids of encoding the whole.
    """
    if n_chunks <= 1 or len(text) < 2 * n_chunks:
        return [text]
    size = len(text) // n_chunks
    pieces, start = [], 0
    while start < len(text):
        cut = text.find(" ", start + size)
        if cut <= start:
            pieces.append(text[start:])
            break
        pieces.append(text[start:cut])
        start = cut
    return pieces


def encode_corpus(tokenizer: Tokenizer, text: str, chunk_chars: int = 1 << 18) -> np.ndarray:
    """Token ids of `text` as int64, identical to `tokenizer.encode(text).ids`, but parallel.

    The text is cut at spaces into chunks of about `chunk_chars` characters and encoded
    with `encode_batch`, which runs on all cores.
    """
    n_chunks = max(1, len(text) // chunk_chars)
    pieces = _split_at_spaces(text, n_chunks)
    encodings = tokenizer.encode_batch(pieces, add_special_tokens=False)
    total = sum(len(e.ids) for e in encodings)
    ids = np.empty(total, dtype=np.int64)
    pos = 0
    for e in encodings:
        n = len(e.ids)
        ids[pos : pos + n] = e.ids
        pos += n
    return ids


def token_counts(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Occurrences of each token id in `ids`: shape (vocab_size,), int64."""
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"Token ids range over [{ids.min()}, {ids.max()}], outside a vocab of {vocab_size}.")
    return np.bincount(ids, minlength=vocab_size).astype(np.int64)


def dead_mask(counts: np.ndarray) -> np.ndarray:
    """True for tokens that never occur: shape (vocab_size,), bool."""
    return counts == 0


def token_strings(tokenizer: Tokenizer) -> list[str]:
    """The string of every token id, in id order (for reports and HDF5 token tables)."""
    vocab = tokenizer.get_vocab()
    strings = [""] * tokenizer.get_vocab_size()
    for s, i in vocab.items():
        strings[i] = s
    return strings


def read_text(paths: Iterable[str | os.PathLike]) -> str:
    """Concatenate UTF-8 text files, with errors naming the file that is missing or empty."""
    parts = []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"Corpus file not found: {p}")
        text = p.read_text(encoding="utf-8")
        if not text.strip():
            raise ValueError(f"Corpus file has no text: {p}")
        parts.append(text)
    return "".join(parts)


def require_vocab_size(tokenizer: Tokenizer, vocab_size: int, source: str = "the tokenizer") -> None:
    """Fail unless the tokenizer has exactly the model's vocab: a mismatch would leave rows
    no id reaches (or ids with no row)."""
    got = tokenizer.get_vocab_size()
    if got != vocab_size:
        raise ValueError(f"{source} has a vocab of {got} tokens but the model has vocab_size = {vocab_size}.")
