"""User data for a run: read a corpus, fingerprint files, tokenize, count, mask.

A scenario may name its own tokenizer JSON and corpus. A corpus is plain text (.txt,
.text), JSON Lines with a text field (.jsonl, .ndjson, .json), or Parquet with a text
column (.parquet, FineWeb's format; needs the optional extra `parquet`, i.e. pyarrow).
Documents of JSON Lines and Parquet are joined with "\\n", so a corpus tokenizes to the
same ids as a text file holding its documents joined the same way. Live/dead masks come
from the corpus actually trained on, and both files are fingerprinted (sha256 of their
bytes) so that every trajectory file can name exactly what it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.fast.host_memory import release_freed_host_memory
from core.tokenizer import (
    UNK,
    dead_mask,
    encode_corpus,
    load_tokenizer,
    read_text,
    require_vocab_size,
    token_counts,
    token_strings,
)

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".text")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
DOC_SEPARATOR = "\n"  # between the documents of a JSON Lines or Parquet corpus


class CorpusError(ValueError):
    """A corpus file that cannot be used; the message names the file (and line, field)."""


def fingerprint(path: str | os.PathLike) -> str:
    """"sha256:<hex>" of a file's bytes."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Cannot fingerprint {p}: no such file.")
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def read_corpus(path: str | os.PathLike, text_field: str = "text") -> str:
    """The text of a corpus file; the format comes from the suffix.

    Plain text is read as UTF-8. JSON Lines: one JSON object per non-blank line, its
    `text_field` a string. Parquet: column `text_field` of strings. Documents are joined
    with "\\n". Errors name the file, and the line or row and the field where they apply.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Corpus file not found: {p}")
    if p.stat().st_size == 0:
        raise CorpusError(f"Corpus file is empty: {p}")
    suffix = p.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        text = _read_plain(p)
    elif suffix in JSONL_SUFFIXES:
        text = DOC_SEPARATOR.join(_jsonl_documents(p, text_field))
    elif suffix in PARQUET_SUFFIXES:
        text = DOC_SEPARATOR.join(_parquet_documents(p, text_field))
    else:
        known = ", ".join(TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES)
        raise CorpusError(f"Corpus file {p} has suffix {p.suffix!r}; supported: {known}.")
    if not text.strip():
        raise CorpusError(f"Corpus file {p} has no text.")
    return text


def _read_plain(p: Path) -> str:
    """A UTF-8 text file (core.tokenizer.read_text), with decode errors naming the file."""
    try:
        return read_text([p])
    except UnicodeDecodeError as exc:
        raise CorpusError(f"Corpus file {p} is not UTF-8 text (byte {exc.start}: {exc.reason}).") from exc


def _jsonl_documents(p: Path, text_field: str) -> list[str]:
    """The `text_field` string of each JSON object line; errors give file:line."""
    docs = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise CorpusError(f"{p}:{n}: not valid JSON ({exc}); JSON Lines needs one object per line.") from exc
            if not isinstance(record, dict):
                raise CorpusError(f"{p}:{n}: expected a JSON object with a {text_field!r} field, got {type(record).__name__}.")
            if text_field not in record:
                keys = ", ".join(map(repr, sorted(record))) or "none"
                raise CorpusError(f"{p}:{n}: no field {text_field!r} (fields: {keys}).")
            value = record[text_field]
            if not isinstance(value, str):
                raise CorpusError(f"{p}:{n}: field {text_field!r} is {type(value).__name__}, not a string.")
            docs.append(value)
    if not docs:
        raise CorpusError(f"Corpus file {p} has no JSON lines.")
    return docs


def _import_parquet():
    """pyarrow.parquet, imported only when a Parquet corpus is read."""
    try:
        import pyarrow.parquet as pq  # optional (the extra `parquet`): only Parquet corpora need it
    except ImportError as exc:
        raise ImportError(
            "Reading a Parquet corpus needs pyarrow: pip install 'dead-token-harness[parquet]' "
            "(or pip install pyarrow)."
        ) from exc
    return pq


def _parquet_documents(p: Path, text_field: str) -> list[str]:
    """The strings of column `text_field`; errors name the file, column and row."""
    pq = _import_parquet()
    try:
        schema = pq.read_schema(p)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses
        raise CorpusError(f"Cannot read Parquet file {p}: {exc}") from exc
    if text_field not in schema.names:
        raise CorpusError(f"Parquet file {p} has no column {text_field!r} (columns: {', '.join(schema.names)}).")
    column_type = schema.field(text_field).type
    if str(column_type) not in ("string", "large_string", "string_view"):
        raise CorpusError(f"Parquet file {p}: column {text_field!r} has type {column_type}, not string.")
    docs = pq.read_table(p, columns=[text_field]).column(text_field).to_pylist()
    for row, value in enumerate(docs):
        if value is None:
            raise CorpusError(f"Parquet file {p}: column {text_field!r} is null at row {row}.")
    return docs


@dataclass
class PreparedData:
    """A tokenized corpus with its token counts and live/dead masks, ready for a run."""

    ids: np.ndarray  # int64 (n_tokens,): the corpus, tokenized
    counts: np.ndarray  # int64 (vocab,): occurrences of each token in `ids`
    dead_mask: np.ndarray  # bool (vocab,): counts == 0
    strings: list[str]  # token strings, by id
    tokenizer_path: Path
    corpus_path: Path
    tokenizer_fingerprint: str  # "sha256:<hex>" of the tokenizer file's bytes
    corpus_fingerprint: str  # "sha256:<hex>" of the corpus file's bytes

    @property
    def vocab_size(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_dead(self) -> int:
        return int(self.dead_mask.sum())

    @property
    def dead_fraction(self) -> float:
        return self.n_dead / self.vocab_size


def prepare_data(
    tokenizer_path: str | os.PathLike,
    corpus_path: str | os.PathLike,
    vocab_size: int,
    text_field: str = "text",
) -> PreparedData:
    """Tokenize a corpus with a tokenizer file and count tokens; masks from this corpus.

    Raises if the tokenizer's vocab differs from the model's `vocab_size`, or if the
    corpus gives no tokens. A corpus that uses every token (no dead tokens) or has
    characters the tokenizer does not know (<unk>) is logged as a warning.
    """
    tokenizer_path, corpus_path = Path(tokenizer_path), Path(corpus_path)
    tok = load_tokenizer(tokenizer_path)
    require_vocab_size(tok, vocab_size, source=f"Tokenizer {tokenizer_path}")
    text = read_corpus(corpus_path, text_field)
    ids = encode_corpus(tok, text)
    release_freed_host_memory()  # the encodings' temporaries, ~210 MB for the default corpus
    if ids.size == 0:
        raise CorpusError(f"Corpus {corpus_path} gives no tokens with tokenizer {tokenizer_path}.")
    counts = token_counts(ids, vocab_size)
    dead = dead_mask(counts)
    _warn_unknown(tok.token_to_id(UNK), counts, ids.size, corpus_path, tokenizer_path)
    if not dead.any():
        log.warning(
            "Corpus %s uses all %d tokens of %s: there are no dead tokens to study.",
            corpus_path,
            vocab_size,
            tokenizer_path,
        )
    log.info("Corpus %s: %s tokens, %d of %d vocab entries dead", corpus_path, f"{ids.size:,}", dead.sum(), vocab_size)
    return PreparedData(
        ids=ids,
        counts=counts,
        dead_mask=dead,
        strings=token_strings(tok),
        tokenizer_path=tokenizer_path,
        corpus_path=corpus_path,
        tokenizer_fingerprint=fingerprint(tokenizer_path),
        corpus_fingerprint=fingerprint(corpus_path),
    )


def _warn_unknown(unk_id: int | None, counts: np.ndarray, n_tokens: int, corpus: Path, tokenizer: Path) -> None:
    """Log a warning when the corpus has characters outside the tokenizer's alphabet."""
    if unk_id is not None and counts[unk_id] > 0:
        log.warning(
            "Corpus %s: %d of %s tokens (%.3f %%) are %s, characters tokenizer %s does not know.",
            corpus,
            counts[unk_id],
            f"{n_tokens:,}",
            100.0 * counts[unk_id] / n_tokens,
            UNK,
            tokenizer,
        )
