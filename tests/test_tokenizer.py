"""core.tokenizer on real text: training, round trips, fast encoding, live/dead masks."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from core.tokenizer import (
    SPACE_MARK,
    dead_mask,
    encode_corpus,
    load_tokenizer,
    read_text,
    require_vocab_size,
    token_counts,
    token_strings,
    train_char_bpe,
)
from conftest import THAI_TEXT


def test_training_reaches_requested_vocab(small_tokenizer):
    assert small_tokenizer.get_vocab_size() == 800


def test_alphabet_is_unicode_characters_not_bytes(small_tokenizer):
    vocab = small_tokenizer.get_vocab()
    for ch in "สวัสดี" + "abcxyz":
        assert ch in vocab, f"character {ch!r} should be a token of a character-level BPE"
    assert "Ġ" not in vocab  # byte-level BPE's space marker


def test_round_trip_mixed_english_thai(small_tokenizer):
    text = "The cat sat on the mat.  ฉันชอบกินข้าวผัด\nand then  it left; ภาษาไทย 42!"
    ids = small_tokenizer.encode(text).ids
    assert small_tokenizer.decode(ids) == text
    assert len(ids) < len(text), "merges should make the encoding shorter than the characters"


def test_encode_corpus_equals_whole_text_encoding(small_tokenizer, english_text):
    text = english_text + " " + THAI_TEXT
    whole = small_tokenizer.encode(text).ids
    chunked = encode_corpus(small_tokenizer, text, chunk_chars=10_000)
    assert chunked.dtype == np.int64
    assert chunked.tolist() == whole


def test_masks_count_a_corpus_written_by_the_test(small_tokenizer, tmp_path):
    corpus = tmp_path / "english_only.txt"
    corpus.write_text("the cat and the hat, the end.\n" * 50, encoding="utf-8")
    ids = encode_corpus(small_tokenizer, read_text([corpus]))
    counts = token_counts(ids, small_tokenizer.get_vocab_size())
    expected = collections.Counter(small_tokenizer.encode(corpus.read_text(encoding="utf-8")).ids)
    assert counts.sum() == len(ids)
    for token_id, n in expected.items():
        assert counts[token_id] == n
    dead = dead_mask(counts)
    assert dead.sum() == small_tokenizer.get_vocab_size() - len(expected)
    strings = token_strings(small_tokenizer)
    thai_ids = [i for i, s in enumerate(strings) if any("\u0e00" <= c <= "\u0e7f" for c in s)]
    assert thai_ids and dead[thai_ids].all(), "Thai tokens never occur in an English-only corpus"
    assert not dead[small_tokenizer.token_to_id("the")]


def test_token_strings_are_in_id_order(small_tokenizer):
    strings = token_strings(small_tokenizer)
    assert len(strings) == 800
    for i in (0, 1, 100, 799):
        assert small_tokenizer.id_to_token(i) == strings[i]
    assert any(s.startswith(SPACE_MARK) for s in strings)


def test_save_and_load_round_trip(small_tokenizer, tmp_path):
    path = tmp_path / "tok.json"
    small_tokenizer.save(str(path))
    loaded = load_tokenizer(path)
    text = "hello world สวัสดี"
    assert loaded.encode(text).ids == small_tokenizer.encode(text).ids


def test_missing_tokenizer_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_tokenizer(tmp_path / "nope.json")


def test_malformed_tokenizer_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json"):
        load_tokenizer(bad)


def test_vocab_that_cannot_be_reached_is_an_error(tmp_path):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("ab ab ab", encoding="utf-8")
    with pytest.raises(ValueError, match="reached only"):
        train_char_bpe([tiny], vocab_size=500)


def test_tokenizer_vocab_must_equal_model_vocab(small_tokenizer):
    require_vocab_size(small_tokenizer, 800)
    with pytest.raises(ValueError, match="vocab of 800 tokens but the model has vocab_size = 10000"):
        require_vocab_size(small_tokenizer, 10_000)


def test_empty_corpus_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt"):
        read_text([empty])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_text([tmp_path / "missing.txt"])
