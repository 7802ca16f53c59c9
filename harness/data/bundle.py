"""The default data bundle, built offline from installed packages.

The seed runs trained a 10,000-token character-level BPE on ~80 % English + 20 % Thai
text (FineWeb-2) and trained the model on a disjoint 5 MB English-only corpus, so that
~37 % of the vocabulary (Thai merges, rare symbols, rare English merges) never occurred
in training: dead by construction. FineWeb cannot be fetched here and nothing may be
fetched at run time, so this package builds an equivalent bundle from text that every
installation of this project already has (harness.data.sources finds it, harness.data.prose
turns it into text):

- English prose: the docstrings of installed packages and the standard library, plus the
  `pydoc_data` help pages, with code-like lines (doctests, code blocks, assignments)
  removed and wrapped lines re-flowed into one paragraph per line.
- Thai: the Thai Wikipedia titles that PyThaiNLP's wheel ships
  (`pythainlp/corpus/wikipedia_titles_th.txt`).

English is split by source so the two sides are disjoint: the model-training corpus is
general Python and mathematics documentation (standard library, pydoc topics, numpy,
networkx, sympy; ~5 MB, like the seeds' corpus), the tokenizer mix is deep-learning
documentation (torch, transformers) plus Thai at 20 % of the mix's bytes. A paragraph
that occurs in several sources is kept only the first time. About a third of the
vocabulary is then dead: all Thai tokens, and English merges that only deep-learning
text uses.

The bundle lives in a folder named by a cache key: the build parameters, the version and
checksum of every source, and the versions of the tools that shape the output
(`tokenizers`, `numpy`). It is written into a temporary folder that is renamed into place
when complete, so a killed build never leaves a folder that looks complete. Rebuilding
with the same package versions gives byte-identical files.

This module trains the tokenizer, counts tokens, writes the files, and finds or builds
the bundle in the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.tokenizer import dead_mask, encode_corpus, load_tokenizer, token_counts, token_strings, train_char_bpe
from harness.data.prose import english_documents, is_thai, thai_text
from harness.data.sources import BuildParams, Source, find_sources, sha256_file
from harness.progress import progress_bar

log = logging.getLogger(__name__)

CACHE_ENV = "DEAD_TOKEN_HARNESS_CACHE"  # overrides the user cache folder
BUNDLE_FORMAT = 1  # bump when extraction or file layout changes: it is part of the key
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
CORPUS_FILE = "corpus.txt"
MIX_FILE = "tokenizer_mix.txt"
COUNTS_FILE = "counts.npy"  # token occurrences in corpus.txt, int64 (vocab,)
DEAD_MASK_FILE = "dead_mask.npy"  # counts == 0, bool (vocab,)
MIX_COUNTS_FILE = "mix_counts.npy"  # token occurrences in tokenizer_mix.txt, int64 (vocab,)
OUTPUT_FILES = (TOKENIZER_FILE, CORPUS_FILE, MIX_FILE, COUNTS_FILE, DEAD_MASK_FILE, MIX_COUNTS_FILE)


# --------------------------------------------------------------------------- the bundle and its key


@dataclass(frozen=True)
class Bundle:
    """A built default bundle: file paths and the manifest that describes them."""

    root: Path
    tokenizer_path: Path  # tokenizer.json, character-level BPE of `vocab_size` tokens
    corpus_path: Path  # English-only model-training corpus, UTF-8 text
    tokenizer_mix_path: Path  # the text the tokenizer was trained on
    manifest: dict = field(repr=False)  # sources, build params, output sha256s, stats

    @property
    def key(self) -> str:
        """The cache key: sha256 of the build inputs (params, sources, tool versions)."""
        return self.manifest["key"]

    @property
    def vocab_size(self) -> int:
        return self.manifest["params"]["vocab_size"]

    def counts(self) -> np.ndarray:
        """Occurrences of each token in the model-training corpus, int64 (vocab,)."""
        return np.load(self.root / COUNTS_FILE)

    def dead_mask(self) -> np.ndarray:
        """True where a token never occurs in the model-training corpus, bool (vocab,)."""
        return np.load(self.root / DEAD_MASK_FILE)

    def mix_counts(self) -> np.ndarray:
        """Occurrences of each token in the tokenizer-training mix, int64 (vocab,)."""
        return np.load(self.root / MIX_COUNTS_FILE)


def tool_versions() -> dict[str, str]:
    """Versions of the packages whose code shapes the output files."""
    return {name: importlib.metadata.version(name) for name in ("tokenizers", "numpy")}


def cache_key(params: BuildParams, sources: list[Source]) -> str:
    """sha256 of everything a build depends on: format, params, sources, tool versions."""
    payload = {
        "format": BUNDLE_FORMAT,
        "params": dataclasses.asdict(params),
        "sources": [s.record() for s in sources],
        "tools": tool_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- build


def default_cache_dir() -> Path:
    """Where bundles live: $DEAD_TOKEN_HARNESS_CACHE, else the platform's user cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dead-token-harness"


def _write_text(path: Path, text: str) -> None:
    """UTF-8 with "\\n" line ends on every platform."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _write_texts(tmp: Path, sources: list[Source], params: BuildParams, progress: bool) -> tuple[dict, int]:
    """Write tokenizer_mix.txt and corpus.txt.

    Returns what each source contributed (bytes, documents, sha256 of its text) and the
    number of corpus paragraphs dropped for having a character the mix lacks (which the
    tokenizer could only encode as <unk>).
    """
    by_source = english_documents(sources, params.min_paragraph_words, progress)
    english_mix = "\n".join(d for s in params.mix_sources for d in by_source[s])
    thai_bytes = round(len(english_mix.encode()) * params.thai_fraction / (1.0 - params.thai_fraction))
    thai = thai_text(next(s for s in sources if s.kind == "thai_titles"), thai_bytes, params.thai_titles_per_line)
    mix = english_mix + "\n" + thai
    alphabet = frozenset(mix)  # the tokenizer's alphabet: every character of its training text
    dropped = 0
    for name in params.corpus_sources:
        by_source[name], n = _within_alphabet(by_source[name], alphabet)
        dropped += n
    _write_text(tmp / MIX_FILE, mix)
    _write_text(tmp / CORPUS_FILE, "\n".join(d for s in params.corpus_sources for d in by_source[s]))
    texts = {name: "".join(docs) for name, docs in by_source.items()}
    texts["thai_wikipedia_titles"] = thai
    stats = {
        name: {"bytes": len(t.encode()), "documents": len(by_source.get(name, ())), "sha256": _sha256_text(t)}
        for name, t in texts.items()
    }
    return stats, dropped


def _within_alphabet(documents: list[str], alphabet: frozenset[str]) -> tuple[list[str], int]:
    """The documents without their paragraphs that have a character outside `alphabet`,
    and how many paragraphs that removed."""
    kept_docs, dropped = [], 0
    for doc in documents:
        paragraphs = doc.splitlines()
        kept = [p for p in paragraphs if alphabet.issuperset(p)]
        dropped += len(paragraphs) - len(kept)
        if kept:
            kept_docs.append("\n".join(kept) + "\n")
    return kept_docs, dropped


def _sha256_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _write_counts(tmp: Path, params: BuildParams, progress: bool) -> dict:
    """Train the tokenizer on the mix, count tokens in corpus and mix, write the arrays.

    The progress bar is ours: tokenizers' own bars write to stdout, which `data info`
    keeps for its report.
    """
    with progress_bar(total=3, desc="Tokenizer", unit="step", progress=progress) as bar:
        bar.set_postfix_str(f"training the {params.vocab_size}-token BPE")
        trained = train_char_bpe([tmp / MIX_FILE], params.vocab_size, show_progress=False)
        trained.save(str(tmp / TOKENIZER_FILE), pretty=True)
        tok = load_tokenizer(tmp / TOKENIZER_FILE)  # count with exactly what users will load
        bar.update(1)
        bar.set_postfix_str("encoding the corpus")
        corpus_ids = encode_corpus(tok, (tmp / CORPUS_FILE).read_text(encoding="utf-8"))
        bar.update(1)
        bar.set_postfix_str("encoding the mix")
        mix_ids = encode_corpus(tok, (tmp / MIX_FILE).read_text(encoding="utf-8"))
        bar.update(1)
    counts = token_counts(corpus_ids, params.vocab_size)
    dead = dead_mask(counts)
    np.save(tmp / COUNTS_FILE, counts)
    np.save(tmp / DEAD_MASK_FILE, dead)
    np.save(tmp / MIX_COUNTS_FILE, token_counts(mix_ids, params.vocab_size))
    thai = np.array([is_thai(s) for s in token_strings(tok)])
    return {
        "corpus_tokens": int(corpus_ids.size),
        "mix_tokens": int(mix_ids.size),
        "dead_tokens": int(dead.sum()),
        "live_tokens": int((~dead).sum()),
        "thai_tokens": int(thai.sum()),
        "thai_dead_tokens": int((thai & dead).sum()),
    }


def _build_into(tmp: Path, params: BuildParams, sources: list[Source], key: str, progress: bool) -> None:
    """Write every bundle file into the folder `tmp`, the manifest last."""
    text_stats, dropped = _write_texts(tmp, sources, params, progress)
    stats = _write_counts(tmp, params, progress)
    corpus_bytes = (tmp / CORPUS_FILE).stat().st_size
    mix_bytes = (tmp / MIX_FILE).stat().st_size
    stats.update(
        corpus_bytes=corpus_bytes,
        mix_bytes=mix_bytes,
        mix_thai_bytes=text_stats["thai_wikipedia_titles"]["bytes"],
        corpus_paragraphs_dropped_for_unknown_characters=dropped,
    )
    manifest = {
        "format": BUNDLE_FORMAT,
        "key": key,
        "params": dataclasses.asdict(params),
        "sources": [dict(s.record(), text=text_stats[s.name]) for s in sources],
        "tools": tool_versions(),
        "outputs": {n: {"bytes": (tmp / n).stat().st_size, "sha256": "sha256:" + sha256_file(tmp / n)} for n in OUTPUT_FILES},
        "stats": stats,
    }
    _write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def load_bundle(root: str | os.PathLike) -> Bundle | None:
    """The bundle in folder `root`, or None unless it is complete (manifest present, every
    file there with the size the manifest records)."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        outputs = manifest["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for name in OUTPUT_FILES:
        p = root / name
        if name not in outputs or not p.is_file() or p.stat().st_size != outputs[name]["bytes"]:
            log.warning("Bundle file %s is missing or has the wrong size.", p)
            return None
    return Bundle(root, root / TOKENIZER_FILE, root / CORPUS_FILE, root / MIX_FILE, manifest)


def default_bundle(
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    progress: bool = True,
    params: BuildParams | None = None,
) -> Bundle:
    """The default bundle: from the cache if its inputs are unchanged, else built now.

    `cache_dir` defaults to `default_cache_dir()`. The bundle's folder is
    `<cache_dir>/bundles/<first 16 hex digits of the cache key>`, so a new package
    version or build parameter gives a new folder. A build writes into a temporary
    sibling folder and renames it into place.
    """
    params = params or BuildParams()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    sources = find_sources(params)
    key = cache_key(params, sources)
    root = cache / "bundles" / key[:16]
    if not rebuild:
        bundle = load_bundle(root)
        if bundle is not None and bundle.key == key:
            log.debug("Using the cached data bundle %s", root)
            return bundle
    log.info("Building the default data bundle in %s (about a minute, once)", root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:16]}-", dir=root.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a cache may be shared
    try:
        _build_into(tmp, params, sources, key, progress)
        _replace_dir(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bundle = load_bundle(root)
    if bundle is None:
        raise RuntimeError(f"The data bundle in {root} is incomplete right after building it.")
    return bundle


def _umask() -> int:
    """The process's umask (reading it means setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`, replacing an old one (renames only, no copying)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
        os.replace(target, old / "bundle")
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def file_fingerprints(bundle: Bundle) -> dict[str, str]:
    """"sha256:<hex>" of every file of the bundle, the manifest included, by file name."""
    return {name: "sha256:" + sha256_file(bundle.root / name) for name in (*OUTPUT_FILES, MANIFEST)}
