"""The installed text sources of the default data bundle (harness.data.bundle), with the
parameters that choose them.

English sources are the docstrings of the standard library or of an installed package,
and the `pydoc_data` help pages; the Thai source is the Thai Wikipedia titles that
PyThaiNLP's wheel ships. Each source is found without importing it and named by its
version and a checksum over its files, which go into the bundle's cache key.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import sysconfig
from dataclasses import dataclass
from pathlib import Path

STDLIB = "stdlib"  # docstrings of the standard library's .py files
PYDOC = "pydoc_data"  # the help() topic pages
THAI_PACKAGE = "pythainlp"
THAI_TITLES = "corpus/wikipedia_titles_th.txt"
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
