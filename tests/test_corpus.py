"""User data (harness.data.prepare): corpora in text, JSON Lines and Parquet, fingerprints, masks,
and the errors a researcher sees for bad input. Real files, real tokenizers."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys

import numpy as np
import pytest

from conftest import THAI_TEXT
from core.tokenizer import encode_corpus, train_char_bpe
from harness.data.prose import is_thai
from harness.cli import main
from harness.data.prepare import CorpusError, fingerprint, prepare_data, read_corpus

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="session")
def documents(english_text) -> list[str]:
    """Documents with newlines, punctuation and Thai: 30 pydoc pages and 5 Thai lines."""
    pages = english_text.split("\n")
    step = max(1, len(pages) // 30)
    english = ["\n".join(pages[i : i + step]) for i in range(0, 30 * step, step)]
    return [d for d in english if d.strip()] + [line for line in THAI_TEXT.splitlines()]


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory, small_tokenizer):
    """conftest's 800-token English + Thai BPE, saved as a tokenizer JSON file."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    small_tokenizer.save(str(path))
    return path


@pytest.fixture(scope="session")
def corpus_files(tmp_path_factory, documents):
    """The same documents as .txt (joined by "\\n"), .jsonl and .parquet."""
    d = tmp_path_factory.mktemp("corpora")
    txt = d / "corpus.txt"
    txt.write_text("\n".join(documents), encoding="utf-8", newline="\n")
    jsonl = d / "corpus.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        for i, doc in enumerate(documents):
            f.write(json.dumps({"id": i, "text": doc}, ensure_ascii=i % 2 == 0) + "\n")
            if i == 3:
                f.write("\n")  # blank lines are allowed
    parquet = d / "corpus.parquet"
    pq.write_table(pa.table({"id": list(range(len(documents))), "text": documents}), parquet)
    return {"txt": txt, "jsonl": jsonl, "parquet": parquet}


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet"])
def test_every_format_reads_the_documents_joined_by_newlines(corpus_files, documents, fmt):
    assert read_corpus(corpus_files[fmt]) == "\n".join(documents)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_every_format_tokenizes_to_the_ids_of_the_plain_text(corpus_files, tokenizer_file, fmt):
    plain = prepare_data(tokenizer_file, corpus_files["txt"], vocab_size=800)
    other = prepare_data(tokenizer_file, corpus_files[fmt], vocab_size=800)
    assert plain.ids.size > 1000
    np.testing.assert_array_equal(other.ids, plain.ids)
    np.testing.assert_array_equal(other.counts, plain.counts)
    np.testing.assert_array_equal(other.dead_mask, plain.dead_mask)
    assert other.tokenizer_fingerprint == plain.tokenizer_fingerprint
    assert other.corpus_fingerprint != plain.corpus_fingerprint  # different bytes on disk


def test_text_field_names_the_jsonl_field_and_parquet_column(tmp_path, documents):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"content": d, "text": 1}) + "\n" for d in documents[:3]), encoding="utf-8")
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"content": documents[:3]}), parquet)
    expected = "\n".join(documents[:3])
    assert read_corpus(jsonl, text_field="content") == expected
    assert read_corpus(parquet, text_field="content") == expected


def test_fingerprint_is_the_sha256_of_the_file_bytes(corpus_files, tmp_path):
    path = corpus_files["txt"]
    assert fingerprint(path) == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    changed = tmp_path / "changed.txt"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    assert fingerprint(changed) != fingerprint(path)


def test_prepared_data_records_both_fingerprints(corpus_files, tokenizer_file):
    data = prepare_data(tokenizer_file, corpus_files["jsonl"], vocab_size=800)
    assert data.tokenizer_fingerprint == fingerprint(tokenizer_file)
    assert data.corpus_fingerprint == fingerprint(corpus_files["jsonl"])
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", data.corpus_fingerprint)
    assert data.tokenizer_path == tokenizer_file and data.corpus_path == corpus_files["jsonl"]
    assert len(data.strings) == 800 and data.vocab_size == 800


# --------------------------------------------------------------------------- masks


def test_masks_come_from_the_corpus_trained_on(tmp_path, tokenizer_file, english_text, small_tokenizer):
    english_only = tmp_path / "english.txt"
    english_only.write_text(english_text[-20_000:], encoding="utf-8")
    with_thai = tmp_path / "with_thai.txt"
    with_thai.write_text(english_text[-20_000:] + "\n" + THAI_TEXT, encoding="utf-8")

    a = prepare_data(tokenizer_file, english_only, vocab_size=800)
    b = prepare_data(tokenizer_file, with_thai, vocab_size=800)
    expected = np.bincount(encode_corpus(small_tokenizer, english_text[-20_000:]), minlength=800)
    np.testing.assert_array_equal(a.counts, expected)
    np.testing.assert_array_equal(a.dead_mask, a.counts == 0)
    thai = np.array([is_thai(s) for s in a.strings])
    assert thai.sum() > 20
    assert a.dead_mask[thai].all(), "an English-only corpus leaves every Thai token dead"
    assert not b.dead_mask[thai].all(), "the same tokenizer on a corpus with Thai brings Thai tokens to life"
    assert b.n_dead < a.n_dead


def test_a_corpus_that_leaves_no_dead_token_is_a_warning_not_an_error(tmp_path, caplog):
    text = "abc cab bca"
    train = tmp_path / "train.txt"
    train.write_text(text, encoding="utf-8")
    tok = train_char_bpe([train], vocab_size=5)  # <unk> + a, b, c, ▁: no merges
    tok_path = tmp_path / "tok.json"
    tok.save(str(tok_path))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text + " é", encoding="utf-8")  # "é" is unknown: <unk> occurs too
    with caplog.at_level(logging.WARNING, logger="harness.data.prepare"):
        data = prepare_data(tok_path, corpus, vocab_size=5)
    assert data.n_dead == 0
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no dead tokens" in m and str(corpus) in m for m in messages), messages
    assert any("<unk>" in m for m in messages), messages


# --------------------------------------------------------------------------- bad input


def test_missing_corpus_names_the_file(tmp_path, tokenizer_file):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        prepare_data(tokenizer_file, missing, vocab_size=800)


@pytest.mark.parametrize("name", ["empty.txt", "empty.jsonl", "empty.parquet"])
def test_empty_corpus_file_names_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(CorpusError, match=re.escape(f"Corpus file is empty: {path}")):
        read_corpus(path)


def test_corpus_with_no_text_is_an_error(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(blank))):
        read_corpus(blank)
    no_tokens = tmp_path / "no_tokens.jsonl"
    no_tokens.write_text('{"text": ""}\n{"text": ""}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape(str(no_tokens)) + " has no text"):
        read_corpus(no_tokens)


def test_jsonl_line_that_is_not_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "three"\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape(f"{path}:3:") + " not valid JSON"):
        read_corpus(path)


def test_jsonl_line_without_the_field_names_file_line_and_field(tmp_path):
    path = tmp_path / "nofield.jsonl"
    path.write_text('{"text": "one"}\n{"body": "two", "id": 2}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape(f"{path}:2: no field 'text'") + r".*'body', 'id'"):
        read_corpus(path)


def test_jsonl_field_that_is_not_a_string_or_line_not_an_object(tmp_path):
    path = tmp_path / "number.jsonl"
    path.write_text('{"text": "one"}\n{"text": 2}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape(f"{path}:2: field 'text' is int")):
        read_corpus(path)
    array = tmp_path / "array.json"
    array.write_text('["one", "two"]\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape(f"{array}:1: expected a JSON object")):
        read_corpus(array)


def test_parquet_without_the_column_names_file_and_columns(tmp_path):
    path = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"body": ["one", "two"], "id": [1, 2]}), path)
    with pytest.raises(CorpusError, match=re.escape(f"Parquet file {path} has no column 'text' (columns: body, id)")):
        read_corpus(path)


def test_parquet_null_or_non_string_column_names_file_and_row(tmp_path):
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["one", None, "three"]}), nulls)
    with pytest.raises(CorpusError, match=re.escape(f"{nulls}: column 'text' is null at row 1")):
        read_corpus(nulls)
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), numbers)
    with pytest.raises(CorpusError, match=re.escape(f"{numbers}: column 'text' has type int64")):
        read_corpus(numbers)


def test_parquet_file_that_is_not_parquet_names_the_file(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet at all", encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape(f"Cannot read Parquet file {path}")):
        read_corpus(path)


def test_parquet_without_pyarrow_says_how_to_install_it(corpus_files, monkeypatch):
    # A None entry in sys.modules makes `import pyarrow` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"pyarrow.*\[parquet\]"):
        read_corpus(corpus_files["parquet"])


def test_unknown_suffix_lists_the_supported_ones(tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape(str(path)) + r".*\.txt.*\.jsonl.*\.parquet"):
        read_corpus(path)


def test_tokenizer_whose_vocab_differs_from_the_model_names_the_file(corpus_files, tokenizer_file):
    with pytest.raises(ValueError, match=re.escape(str(tokenizer_file)) + r".*800.*vocab_size = 1000"):
        prepare_data(tokenizer_file, corpus_files["txt"], vocab_size=1000)


def test_missing_or_malformed_tokenizer_names_the_file(tmp_path, corpus_files):
    missing = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        prepare_data(missing, corpus_files["txt"], vocab_size=800)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(broken))):
        prepare_data(broken, corpus_files["txt"], vocab_size=800)


# --------------------------------------------------------------------------- CLI


def test_cli_info_describes_user_data(capsys, corpus_files, tokenizer_file):
    assert main(["data", "info", "--tokenizer", str(tokenizer_file), "--corpus", str(corpus_files["parquet"])]) == 0
    out = capsys.readouterr().out
    data = prepare_data(tokenizer_file, corpus_files["parquet"], vocab_size=800)
    assert fingerprint(corpus_files["parquet"]) in out and fingerprint(tokenizer_file) in out
    assert f"tokens: corpus {data.ids.size:,}" in out
    assert f"dead {data.n_dead:,} ({100 * data.dead_fraction:.1f} %)" in out
    assert len(re.findall(r"^\s+\d+\. ", out, flags=re.M)) == 40  # 20 dead + 20 live


def test_cli_reports_bad_input_with_file_and_line(capsys, tmp_path, tokenizer_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    assert main(["data", "info", "--tokenizer", str(tokenizer_file), "--corpus", str(bad)]) == 2
    assert f"error: {bad}:2: not valid JSON" in capsys.readouterr().err
    assert main(["data", "info", "--tokenizer", str(tokenizer_file), "--corpus", str(bad), "--vocab-size", "900"]) == 2
    assert "vocab_size = 900" in capsys.readouterr().err
    assert main(["data", "info", "--corpus", str(bad)]) == 2
    assert "both --tokenizer and --corpus" in capsys.readouterr().err


# --------------------------------------------------------------------------- scenarios on user data


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet"])
def test_a_scenario_on_a_user_corpus_runs_at_smoke_scale(tmp_path, corpus_files, tokenizer_file, fmt):
    """Each supported format trains a real (tiny) run; the file carries both fingerprints and
    the dead mask of the corpus actually trained on."""
    from core.trajectory import Trajectory

    scenario = tmp_path / f"user_{fmt}.toml"
    scenario.write_text(f"""\
name = "user_{fmt}"
version = 1
summary = "A tiny untied run on a user {fmt} corpus."

[model]
vocab_size = 800
n_positions = 16
tied = false

[data]
tokenizer = "{tokenizer_file}"
corpus = "{corpus_files[fmt]}"
seq_len = 16
batch_size = 2

[train]
steps = 50
device = "cpu"

[record]
tensors = ["E", "W", "loss"]

[scale.smoke]
train.steps = 2

[[expect]]
check = "zero_displacement"
tensor = "E"
tokens = "dead"
""", encoding="utf-8")
    assert main(["run", str(scenario), "--scale", "smoke", "--out", str(tmp_path / "runs")]) == 0
    expected = prepare_data(tokenizer_file, corpus_files[fmt], vocab_size=800)
    with Trajectory(tmp_path / "runs" / f"user_{fmt}.h5") as traj:
        assert len(traj) == 3 and traj["E"].shape == (3, 800, 64)
        assert traj.meta["corpus_fingerprint"] == fingerprint(corpus_files[fmt])
        assert traj.meta["tokenizer_fingerprint"] == fingerprint(tokenizer_file)
        np.testing.assert_array_equal(traj.dead_mask, expected.dead_mask)
        assert 0 < traj.dead_mask.sum() < 800
