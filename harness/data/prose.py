"""The text of the default data bundle: English prose from docstrings and help pages, Thai
text from Wikipedia titles.

English: the docstrings of a source's .py files (or the `pydoc_data` help pages), with
code-like lines (doctests, code blocks, assignments) and markup removed and wrapped lines
re-flowed into one paragraph per line; a paragraph is kept only at its first occurrence
across all sources. Thai: titles joined by spaces, several to a line.
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
import unicodedata
from pathlib import Path
from typing import Iterator

from harness.data.sources import Source
from harness.progress import progress_bar

log = logging.getLogger(__name__)

THAI_BLOCK = (0x0E00, 0x0E7F)


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
    from pydoc_data.topics import topics  # heavy (all help pages): only a build needs it

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
    english = [s for s in sources if s.kind != "thai_titles"]
    seen: set[str] = set()
    by_source: dict[str, list[str]] = {}
    n_files = sum(len(s.files) for s in english)
    with progress_bar(total=n_files, desc="English prose", unit="file", progress=progress) as bar:
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
