"""The default data bundle (harness/data/), built for real from the installed packages.

The full bundle is built once per session into a temporary cache (~25-50 s on two
cores); one more full build checks that rebuilding gives byte-identical files.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.tokenizer import UNK, encode_corpus, load_tokenizer, token_strings
from harness.data.bundle import (
    CACHE_ENV,
    CORPUS_FILE,
    MANIFEST,
    OUTPUT_FILES,
    Bundle,
    cache_key,
    default_bundle,
    default_cache_dir,
    file_fingerprints,
    load_bundle,
)
from harness.data.prose import docstrings, is_thai, prose_paragraphs
from harness.data.sources import BuildParams, find_sources
from harness.cli import main


@pytest.fixture(scope="session")
def bundle_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundle_cache")


@pytest.fixture(scope="session")
def bundle(bundle_cache) -> Bundle:
    """The default bundle, built once for the session."""
    return default_bundle(cache_dir=bundle_cache, progress=False)


@pytest.fixture(scope="session")
def strings(bundle) -> list[str]:
    return token_strings(load_tokenizer(bundle.tokenizer_path))


# --------------------------------------------------------------------------- the bundle


@pytest.mark.slow
def test_vocab_is_10k_and_a_third_is_dead_thai_included(bundle, strings):
    dead = bundle.dead_mask()
    assert load_tokenizer(bundle.tokenizer_path).get_vocab_size() == 10_000 == len(strings) == dead.size
    assert 0.25 <= dead.mean() <= 0.45, f"dead fraction {dead.mean():.3f}"
    thai = np.array([is_thai(s) for s in strings])
    assert (thai & dead).sum() > 1000, "Thai merges must be among the dead"
    assert dead[thai].all(), "the training corpus is English only: no Thai token may be live"
    stats = bundle.manifest["stats"]
    assert stats["dead_tokens"] == dead.sum() and stats["thai_dead_tokens"] == (thai & dead).sum()


@pytest.mark.slow
def test_counts_and_masks_are_those_of_the_corpus_and_mix(bundle):
    tok = load_tokenizer(bundle.tokenizer_path)
    corpus_ids = encode_corpus(tok, bundle.corpus_path.read_text(encoding="utf-8"))
    mix_ids = encode_corpus(tok, bundle.tokenizer_mix_path.read_text(encoding="utf-8"))
    np.testing.assert_array_equal(bundle.counts(), np.bincount(corpus_ids, minlength=10_000))
    np.testing.assert_array_equal(bundle.dead_mask(), bundle.counts() == 0)
    np.testing.assert_array_equal(bundle.mix_counts(), np.bincount(mix_ids, minlength=10_000))
    assert bundle.counts()[tok.token_to_id(UNK)] == 0, "every corpus character is in the tokenizer's alphabet"
    assert bundle.manifest["stats"]["corpus_tokens"] == corpus_ids.size > 1_000_000


@pytest.mark.slow
def test_mix_is_80_percent_english_20_percent_thai_by_bytes(bundle):
    mix = bundle.tokenizer_mix_path.read_text(encoding="utf-8")
    thai_bytes = sum(len(line.encode()) + 1 for line in mix.splitlines() if is_thai(line))
    assert 0.19 <= thai_bytes / len(mix.encode()) <= 0.21
    corpus = bundle.corpus_path.read_text(encoding="utf-8")
    assert not is_thai(corpus)


@pytest.mark.slow
def test_corpus_and_mix_share_no_paragraph_and_are_megabytes_of_prose(bundle):
    corpus = bundle.corpus_path.read_text(encoding="utf-8")
    mix = bundle.tokenizer_mix_path.read_text(encoding="utf-8")
    corpus_lines = {line for line in corpus.splitlines() if line}
    mix_lines = {line for line in mix.splitlines() if line}
    assert not corpus_lines & mix_lines
    assert len(corpus.encode()) > 3_000_000 and len(mix.encode()) > 5_000_000
    words = corpus.split()
    assert sum(w in ("the", "of", "is", "a", "to") for w in words) > 0.05 * len(words), "English prose"


@pytest.mark.slow
def test_manifest_records_sources_versions_checksums_and_outputs(bundle):
    m = bundle.manifest
    names = [s["name"] for s in m["sources"]]
    assert names == [*BuildParams().corpus_sources, *BuildParams().mix_sources, "thai_wikipedia_titles"]
    for s in m["sources"]:
        assert s["package"] and s["version"], s
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", s["checksum"]), s
        assert s["text"]["bytes"] > 100_000, s
    thai = m["sources"][-1]
    assert (thai["package"], thai["files"], thai["role"]) == ("pythainlp", "corpus/wikipedia_titles_th.txt", "mix")
    fingerprints = file_fingerprints(bundle)
    assert {n: o["sha256"] for n, o in m["outputs"].items()} == {n: fingerprints[n] for n in OUTPUT_FILES}
    text = (bundle.root / MANIFEST).read_text(encoding="utf-8")
    assert str(bundle.root) not in text and "site-packages" not in text, "no machine-specific paths"
    assert m["key"] == bundle.key and bundle.root.name == bundle.key[:16]


@pytest.mark.slow
def test_cached_bundle_is_reused_not_rebuilt(bundle, bundle_cache):
    before = {n: (bundle.root / n).stat().st_mtime_ns for n in (*OUTPUT_FILES, MANIFEST)}
    again = default_bundle(cache_dir=bundle_cache, progress=False)  # its speed: benchmarks, not here
    assert again.root == bundle.root and again.manifest == bundle.manifest
    assert {n: (bundle.root / n).stat().st_mtime_ns for n in before} == before


@pytest.mark.slow
def test_cache_folder_comes_from_the_environment_variable(bundle, bundle_cache, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(bundle_cache))
    assert default_cache_dir() == bundle_cache
    assert default_bundle(progress=False).root == bundle.root  # found there, not rebuilt elsewhere


def _copy_bundle(bundle: Bundle, cache: Path) -> Path:
    root = cache / "bundles" / bundle.root.name
    shutil.copytree(bundle.root, root)
    return root


@pytest.mark.slow
def test_half_written_bundles_are_not_taken_for_complete(bundle, tmp_path):
    root = _copy_bundle(bundle, tmp_path)
    assert load_bundle(root) is not None
    (root / MANIFEST).unlink()  # killed before the manifest was written
    assert load_bundle(root) is None
    shutil.copy(bundle.root / MANIFEST, root / MANIFEST)
    with open(root / CORPUS_FILE, "r+b") as f:  # a file cut short
        f.truncate(1000)
    assert load_bundle(root) is None


@pytest.mark.slow
def test_a_damaged_bundle_is_rebuilt_byte_identical(bundle, tmp_path):
    """Second full build: the fixture's build and this one give the same bytes."""
    root = _copy_bundle(bundle, tmp_path)
    (root / CORPUS_FILE).write_text("damaged", encoding="utf-8")
    leftover = root.parent / f".build-{bundle.key[:16]}-killed"  # what a killed build leaves
    leftover.mkdir()
    (leftover / CORPUS_FILE).write_text("half", encoding="utf-8")

    rebuilt = default_bundle(cache_dir=tmp_path, progress=False)
    assert rebuilt.root == root
    assert file_fingerprints(rebuilt) == file_fingerprints(bundle)
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".old-")], "the replaced bundle is removed"


# --------------------------------------------------------------------------- cache key


def test_cache_key_changes_with_params_versions_and_checksums():
    params = BuildParams()
    sources = find_sources(params)
    key = cache_key(params, sources)
    assert key == cache_key(params, find_sources(params)), "same inputs, same key"
    assert key != cache_key(dataclasses.replace(params, thai_fraction=0.25), sources)
    assert key != cache_key(dataclasses.replace(params, vocab_size=8000), sources)
    newer = [dataclasses.replace(sources[0], version=sources[0].version + ".post1"), *sources[1:]]
    assert key != cache_key(params, newer)
    edited = [*sources[:-1], dataclasses.replace(sources[-1], checksum="sha256:" + "0" * 64)]
    assert key != cache_key(params, edited)


def test_build_params_reject_a_source_on_both_sides():
    with pytest.raises(ValueError, match="numpy"):
        BuildParams(corpus_sources=("numpy",), mix_sources=("numpy", "torch"))
    with pytest.raises(ValueError, match="thai_fraction"):
        BuildParams(thai_fraction=1.0)


def test_a_missing_source_package_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no_such_package_xyz"):
        find_sources(BuildParams(corpus_sources=("no_such_package_xyz",)))


# --------------------------------------------------------------------------- English prose


def test_docstring_scan_finds_what_ast_finds_on_a_real_module():
    source = Path(inspect.getsourcefile(json.decoder)).read_text(encoding="utf-8")
    tree = ast.parse(source)
    expected = [
        ast.get_docstring(n)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(n)
    ]
    found = list(docstrings(source))
    assert len(expected) >= 5
    assert sorted(found) == sorted(expected)


def test_docstring_scan_skips_strings_that_are_not_docstrings():
    source = '''# comment
"""Module doc."""
X = """not a docstring"""


def f(a,
      b) -> int:
    """Function doc,
    two lines."""
    y = 1
    """a bare string later in the body"""
'''
    assert list(docstrings(source)) == ["Module doc.", "Function doc,\ntwo lines."]


def test_prose_paragraphs_keep_prose_and_drop_code_markup_and_thai():
    doc = """Compute the sum of the elements of an array along the given axis.

    It is a rather long sentence that was wrapped over
    two lines by its author, as docstrings are.

    Parameters
    ----------
    x : array_like

    >>> np.sum([1, 2])
    3

    Example::

        result = compute(x, axis=0)
        print(result)

    ```python
    model = AutoModel.from_pretrained("gpt2")
    ```
    ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ and then some English words here
    See :func:`numpy.add` and ``np.cumsum`` for the running version of this sum.
    """
    assert prose_paragraphs(inspect.cleandoc(doc)) == [
        "Compute the sum of the elements of an array along the given axis.",
        "It is a rather long sentence that was wrapped over two lines by its author, as docstrings are.",
        "See numpy.add and np.cumsum for the running version of this sum.",
    ]


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_data_info_prints_sizes_counts_split_and_top_tokens(bundle, bundle_cache, strings, capsys):
    assert main(["data", "info", "--cache-dir", str(bundle_cache)]) == 0
    out = capsys.readouterr().out
    dead = bundle.dead_mask()
    assert str(bundle.root) in out
    assert f"vocab 10,000: live {(~dead).sum():,}" in out
    split = re.search(r"dead ([\d,]+) \(([\d.]+) %\)", out)
    assert split and int(split[1].replace(",", "")) == dead.sum()
    assert 25.0 <= float(split[2]) <= 45.0
    assert f"corpus {bundle.manifest['stats']['corpus_tokens']:,}" in out
    for name in (*OUTPUT_FILES,):
        assert name in out
    dead_part, live_part = out.split("20 most frequent dead tokens")[1].split("20 most frequent live tokens")
    dead_rows = re.findall(r"^\s+\d+\. (\".*?\")\s+([\d,]+)\s+id (\d+)$", dead_part, flags=re.M)
    live_rows = re.findall(r"^\s+\d+\. (\".*?\")\s+([\d,]+)\s+id (\d+)$", live_part, flags=re.M)
    assert len(dead_rows) == 20 and len(live_rows) == 20
    assert all(dead[int(i)] for _, _, i in dead_rows) and not any(dead[int(i)] for _, _, i in live_rows)
    assert any(is_thai(json.loads(s)) for s, _, _ in dead_rows), "Thai tokens are among the dead"
    mix_counts = bundle.mix_counts()
    assert [int(c.replace(",", "")) for _, c, _ in dead_rows] == sorted(mix_counts[dead], reverse=True)[:20]


@pytest.mark.slow
def test_cli_data_build_uses_the_cache(bundle, bundle_cache, capsys):
    before = {n: (bundle.root / n).stat().st_mtime_ns for n in (*OUTPUT_FILES, MANIFEST)}
    assert main(["data", "build", "--cache-dir", str(bundle_cache)]) == 0
    assert {n: (bundle.root / n).stat().st_mtime_ns for n in before} == before  # nothing rebuilt
    assert f"Default data bundle {bundle.root}" in capsys.readouterr().out
