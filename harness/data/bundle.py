"""The default data bundle, built offline from installed packages.

The seed runs trained a 10,000-token character-level BPE on ~80 % English + 20 % Thai
text (FineWeb-2) and trained the model on a disjoint 5 MB English-only corpus, so that
~37 % of the vocabulary (Thai merges, rare symbols, rare English merges) never occurred
in training: dead by construction. FineWeb cannot be fetched here and nothing may be
fetched at run time, so this module builds an equivalent bundle from text that every
installation of this project already has:

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
"""

from __future__ import annotations

import ast
import base64
import csv
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import platform
import re
import shutil
import sys
import sysconfig
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from core.tokenizer import dead_mask, encode_corpus, load_tokenizer, token_counts, token_strings, train_char_bpe

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

STDLIB = "stdlib"  # docstrings of the standard library's .py files
PYDOC = "pydoc_data"  # the help() topic pages
THAI_PACKAGE = "pythainlp"
THAI_TITLES = "corpus/wikipedia_titles_th.txt"
THAI_BLOCK = (0x0E00, 0x0E7F)
SKIP_DIRS = frozenset({"test", "tests", "idle_test", "__pycache__", "site-packages", "dist-packages", "pydoc_data"})


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BuildParams:
    """What the default bundle is made of. Every field is part of the cache key.

    English sources are "stdlib", "pydoc_data" or the import name of an installed
    package (its docstrings). The defaults are the project's own dependencies (numpy,
    torch, transformers) and torch's (networkx, sympy).
    """

    vocab_size: int = 10_000  # the seeds' tokenizer
    corpus_sources: tuple[str, ...] = (STDLIB, PYDOC, "numpy", "networkx", "sympy")
    mix_sources: tuple[str, ...] = ("torch", "transformers")
    thai_fraction: float = 0.20  # Thai share of the tokenizer mix, by bytes (seeds: 20 %)
    thai_titles_per_line: int = 8  # Thai titles are joined by spaces, this many per line
    min_paragraph_words: int = 6  # shorter English paragraphs (headings, labels) are dropped

    def __post_init__(self) -> None:
        both = set(self.corpus_sources) & set(self.mix_sources)
        if both:
            raise ValueError(f"English sources {sorted(both)} are in both the corpus and the tokenizer mix.")
        if not self.corpus_sources or not self.mix_sources:
            raise ValueError("The corpus and the tokenizer mix each need at least one English source.")
        if not 0.0 <= self.thai_fraction < 1.0:
            raise ValueError(f"thai_fraction must be in [0, 1), got {self.thai_fraction}.")
        if self.vocab_size < 2 or self.thai_titles_per_line < 1 or self.min_paragraph_words < 1:
            raise ValueError(f"Invalid build parameters: {self}.")


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


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """One installed text source: which files, at which version, with which checksum."""

    name: str  # "stdlib", "pydoc_data", "numpy", ..., "thai_wikipedia_titles"
    package: str  # distribution name, or "python" for the standard library
    version: str
    kind: str  # "docstrings", "pydoc_topics" or "thai_titles"
    role: str  # "corpus" or "mix"
    root: Path  # folder the relative paths start from (not recorded: differs per machine)
    files: tuple[str, ...]  # relative POSIX paths, sorted
    checksum: str  # "sha256:<hex>" over one "relpath<TAB>sha256 of its bytes" line per file

    def record(self) -> dict:
        """The manifest entry: no absolute paths, so manifests compare across machines."""
        return {
            "name": self.name,
            "package": self.package,
            "version": self.version,
            "kind": self.kind,
            "role": self.role,
            "files": self.files[0] if len(self.files) == 1 else f"{len(self.files)} .py files",
            "checksum": self.checksum,
        }


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record_hashes(dist: str) -> dict[str, str]:
    """Hex sha256 of each file the installer recorded for distribution `dist` (RECORD).

    Reading RECORD takes milliseconds where hashing torch's sources takes a second; files
    without a recorded hash (editable installs, some conda builds) are hashed directly.
    """
    try:
        record = importlib.metadata.distribution(dist).read_text("RECORD") or ""
    except importlib.metadata.PackageNotFoundError:
        return {}
    hashes = {}
    for row in csv.reader(record.splitlines()):
        if len(row) >= 2 and row[1].startswith("sha256="):
            value = row[1][len("sha256=") :]
            hashes[row[0]] = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    return hashes


def _checksum(root: Path, files: tuple[str, ...], known: dict[str, str], prefix: str = "") -> str:
    """sha256 over one "relpath<TAB>file sha256" line per file, in the given order."""
    h = hashlib.sha256()
    for rel in files:
        digest = known.get(prefix + rel) or sha256_file(root / rel)
        h.update(f"{rel}\t{digest}\n".encode())
    return "sha256:" + h.hexdigest()


def _python_files(root: Path) -> tuple[str, ...]:
    """Sorted relative paths of the .py files under `root`, skipping tests and caches."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        found.extend((Path(dirpath) / n).relative_to(root).as_posix() for n in filenames if n.endswith(".py"))
    return tuple(sorted(found))


def _package_dir(package: str) -> Path:
    """The installed folder of an importable package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Package {package!r} is not installed; the default data bundle reads its text.")
    return Path(next(iter(spec.submodule_search_locations)))


def _distribution_of(package: str) -> str:
    """The distribution that installs an import package (numpy -> numpy, yaml -> PyYAML)."""
    try:
        return importlib.metadata.distribution(package).metadata["Name"]
    except importlib.metadata.PackageNotFoundError:
        dists = importlib.metadata.packages_distributions().get(package)
        if not dists:
            raise FileNotFoundError(f"No installed distribution provides package {package!r}.") from None
        return sorted(dists)[0]


def _english_source(name: str, role: str) -> Source:
    """An English source by name: the standard library, its help pages, or a package."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if name == STDLIB:
        files = _python_files(stdlib)
        return Source(name, "python", python, "docstrings", role, stdlib, files, _checksum(stdlib, files, {}))
    if name == PYDOC:
        files = ("pydoc_data/topics.py",)
        return Source(name, "python", python, "pydoc_topics", role, stdlib, files, _checksum(stdlib, files, {}))
    root = _package_dir(name)
    dist = _distribution_of(name)
    files = _python_files(root)
    if not files:
        raise FileNotFoundError(f"Package {name!r} at {root} has no .py files to read docstrings from.")
    checksum = _checksum(root, files, _record_hashes(dist), prefix=f"{root.name}/")
    return Source(name, dist, importlib.metadata.version(dist), "docstrings", role, root, files, checksum)


def _thai_source() -> Source:
    """PyThaiNLP's Thai Wikipedia titles."""
    root = _package_dir(THAI_PACKAGE)
    if not (root / THAI_TITLES).is_file():
        raise FileNotFoundError(f"Thai source {root / THAI_TITLES} is missing from the installed {THAI_PACKAGE}.")
    files = (THAI_TITLES,)
    checksum = _checksum(root, files, _record_hashes(THAI_PACKAGE), prefix=f"{root.name}/")
    version = importlib.metadata.version(THAI_PACKAGE)
    return Source("thai_wikipedia_titles", THAI_PACKAGE, version, "thai_titles", "mix", root, files, checksum)


def find_sources(params: BuildParams) -> list[Source]:
    """The installed sources the bundle reads, in build order, with versions and checksums."""
    sources = [_english_source(n, "corpus") for n in params.corpus_sources]
    sources += [_english_source(n, "mix") for n in params.mix_sources]
    sources.append(_thai_source())
    return sources


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


# --------------------------------------------------------------------------- English prose

# What docstrings() steps over, in source order: comments, triple-quoted strings (their
# escapes and lone quotes included), one-line strings.
_LEXEME = re.compile(
    r"(?P<comment>#[^\n]*)"
    r"|(?P<triple>\"\"\"[^\"\\]*(?:(?:\\.|\"(?!\"\"))[^\"\\]*)*\"\"\"|'''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*''')"
    r"|(?P<string>\"[^\"\\\n]*(?:\\.[^\"\\\n]*)*\"|'[^'\\\n]*(?:\\.[^'\\\n]*)*')",
    re.S,
)
_STRING_PREFIX_CHARS = frozenset("rRuUbBfF")  # left in the code before a string: see docstrings()
_ROLE = re.compile(r":[a-zA-Z_:.-]+:(?=`)")  # :class:, :py:meth:, ... before `target`
_TICKS = re.compile(r"\[?`+~?([^`\n]+?)`+\]?_{0,2}")  # `x`, ``x``, [`~a.B`], `text <url>`_
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\([^)\n]+\)")  # [text](url)
_NOT_LATIN = re.compile(r"[^\x00-\u052f\u1e00-\u1fff]")  # beyond Latin, Greek, Cyrillic
_NOT_PROSE = re.compile(r"[^\w ]|[\d_]")  # neither a letter nor a space
_CODE_START = (">>>", "...", "$ ", "# ", "#!", "import ", "from ", "def ", "class ", "return ", "@", "%", ".. ")
_STOPWORDS = frozenset("the a an of to is are in and or for if this that be with it by as on not".split())


def docstrings(source_text: str) -> Iterator[str]:
    """Docstrings of a Python file: triple-quoted strings that open a module or a body.

    A lexical scan over comments and strings in source order: a triple-quoted string is
    a docstring when no code precedes it (module docstring) or the last code before it
    is the ":" of a block header. Several times faster than `ast`, and nearly the same
    strings (see `tests/test_bundle.py` for the comparison on a real module).
    """
    last_code = ""  # the last character of code (not comment, not whitespace) so far
    end = 0
    for m in _LEXEME.finditer(source_text):
        kind = m.lastgroup
        code, prefix = source_text[end : m.start()], ""
        if kind != "comment":  # a string prefix (r, b, f, rb, ...) is matched here, not in the
            code, prefix = _split_prefix(code)  # regex, where it would slow the scan 5x
        code = code.rstrip()
        if code:
            last_code = code[-1]
        end = m.end()
        if kind == "comment":
            continue
        if kind == "triple" and last_code in ("", ":") and prefix.lower() in ("", "r", "u"):
            try:
                value = ast.literal_eval(prefix + m[kind])  # resolves escapes, as the compiler does
            except (SyntaxError, ValueError):
                value = ""
            doc = inspect.cleandoc(value)
            if doc:
                yield doc
        last_code = m[kind][-1]


def _split_prefix(code: str) -> tuple[str, str]:
    """Split a string prefix (r, b, f, u, rb, ...) off the end of the code before a string."""
    n = 0
    while n < 2 and n < len(code) and code[-1 - n] in _STRING_PREFIX_CHARS:
        n += 1
    if n and (n == len(code) or not (code[-1 - n].isalnum() or code[-1 - n] == "_")):
        return code[:-n], code[-n:]
    return code, ""


def _is_latin_text(line: str) -> bool:
    """False if the line has a letter or mark outside the Latin, Greek and Cyrillic
    scripts, or a replacement character: keeps Thai (and CJK, ...) out of the English."""
    for ch in _NOT_LATIN.findall(line):
        if ch == "\ufffd" or ch.isalpha() or unicodedata.category(ch).startswith("M"):
            return False
    return True


def _prose_share(text: str) -> float:
    """Share of the characters that are letters or spaces."""
    return 1.0 - len(_NOT_PROSE.findall(text)) / max(1, len(text))


def _is_code_line(stripped: str) -> bool:
    """Heuristic: the line looks like code, markup or a rule, not prose."""
    if stripped.startswith(_CODE_START) or stripped.endswith(("(", "[", "{", "\\")):
        return True
    return _prose_share(stripped) < 0.8 or " = " in stripped or "()" in stripped or "==" in stripped


def _tick_text(m: re.Match) -> str:
    """The text shown for a backticked span: a link's label; `~a.b.C` shows as `C`."""
    text = m.group(1).split(" <")[0]
    return text.rsplit(".", 1)[-1] if "~" in m.group(0) else text


def _clean_markup(paragraph: str) -> str:
    """Strip reST/Markdown markup (roles, backticks, links) and collapse whitespace."""
    text = _ROLE.sub("", paragraph)
    text = _MD_LINK.sub(r"\1", text)
    text = _TICKS.sub(_tick_text, text)
    return " ".join(text.split())


def _is_prose(paragraph: str, min_words: int) -> bool:
    """A paragraph worth keeping: enough words, mostly letters, some English function words."""
    words = paragraph.split()
    if len(words) < min_words or _prose_share(paragraph) < 0.85:
        return False
    return any(w.lower() in _STOPWORDS for w in words)


def prose_paragraphs(doc: str, min_words: int = 6) -> list[str]:
    """The prose of one docstring or help page, one re-flowed paragraph per item.

    Drops doctest and code lines, Markdown code fences, reST literal blocks (the lines
    indented under a line that ends in "::"), lines in non-Latin scripts, and paragraphs
    that are too short or too symbol-heavy to be prose.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    in_fence = False
    literal_indent: int | None = None  # indentation of the "::" line whose block is skipped

    def flush() -> None:
        if current:
            text = _clean_markup(" ".join(current))
            if _is_prose(text, min_words):
                paragraphs.append(text)
            current.clear()

    for line in doc.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("```"):
            in_fence = not in_fence
            flush()
            continue
        if in_fence:
            continue
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                continue
            literal_indent = None
        if stripped.endswith("::"):
            literal_indent = indent
            stripped = stripped[:-2].rstrip() + ":" if stripped[:-2].strip() else ""
        if not stripped or _is_code_line(stripped) or not _is_latin_text(stripped):
            flush()
            continue
        current.append(stripped)
    flush()
    return paragraphs


def _pydoc_prose(min_words: int) -> list[list[str]]:
    """Prose paragraphs of each `pydoc_data` topic page (the help() text), by sorted key."""
    from pydoc_data.topics import topics

    return [ps for key in sorted(topics) if (ps := prose_paragraphs(topics[key], min_words))]


def _file_prose(path: Path, min_words: int) -> list[list[str]]:
    """Prose paragraphs of each docstring of one .py file."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    return [ps for doc in docstrings(text) if (ps := prose_paragraphs(doc, min_words))]


def english_documents(sources: list[Source], min_words: int, progress: bool = True) -> dict[str, list[str]]:
    """Prose documents of each English source, by source name, in file order.

    A document is the prose paragraphs of one docstring or help page, one per line. A
    paragraph is kept only at its first occurrence across all sources (docstrings are
    copied a lot, above all in transformers), so no paragraph is in both the corpus and
    the tokenizer mix. (One process: a process pool would save ~10 s on two cores but
    breaks scripts that call this without a `__main__` guard.)
    """
    from tqdm.auto import tqdm

    english = [s for s in sources if s.kind != "thai_titles"]
    seen: set[str] = set()
    by_source: dict[str, list[str]] = {}
    with tqdm(total=sum(len(s.files) for s in english), desc="English prose", unit="file", disable=not progress) as bar:
        for source in english:
            bar.set_postfix_str(source.name)
            documents = []
            if source.kind == "pydoc_topics":
                file_docs = [_pydoc_prose(min_words)]
            else:
                file_docs = (_file_prose(source.root / rel, min_words) for rel in source.files)
            for docs in file_docs:
                for paragraphs in docs:
                    kept = [p for p in paragraphs if p not in seen]
                    seen.update(kept)
                    if kept:
                        documents.append("\n".join(kept) + "\n")
                bar.update(1)
            if not documents:
                raise ValueError(f"English source {source.name!r} ({source.root}) gave no prose.")
            by_source[source.name] = documents
    return by_source


# --------------------------------------------------------------------------- Thai text


def thai_text(source: Source, n_bytes: int, titles_per_line: int) -> str:
    """The first Thai Wikipedia titles, in file order, up to `n_bytes` of UTF-8.

    Titles (which have no spaces) are joined by spaces, `titles_per_line` to a line, so
    each title is one pre-token of the tokenizer, as a Thai word or phrase would be.
    """
    lines, line, size = [], [], 0
    with open(source.root / source.files[0], encoding="utf-8") as f:
        for raw in f:
            title = raw.strip()
            if size >= n_bytes:
                break
            if not title or title.startswith("#"):
                continue
            line.append(title)
            size += len(title.encode()) + 1
            if len(line) == titles_per_line:
                lines.append(" ".join(line))
                line = []
    if line:
        lines.append(" ".join(line))
    if size < n_bytes:
        log.warning("The Thai source gave only %s bytes, short of the %s asked for.", f"{size:,}", f"{n_bytes:,}")
    return "\n".join(lines) + "\n" if lines else ""


def is_thai(token: str) -> bool:
    """True if the token string has a character of the Thai block."""
    return any(THAI_BLOCK[0] <= ord(ch) <= THAI_BLOCK[1] for ch in token)


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
    from tqdm.auto import tqdm

    with tqdm(total=3, desc="Tokenizer", unit="step", disable=not progress) as bar:
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
