"""The layout docs/layout.md promises: a reading path of at most 10 files and ~1,300 lines, listed
with counts that match the files, and no module in core/ or harness/ over ~400 lines.

`python tests/test_layout.py --update` rewrites the table's counts and total from the files."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYOUT_PAGE = ROOT / "docs" / "layout.md"
MAX_PATH_FILES, MAX_PATH_LINES, MAX_MODULE_LINES = 10, 1_400, 420
ROW = re.compile(r"^\| `(core/[\w/]+\.py)` \| (\d+) \|", flags=re.MULTILINE)
TOTAL = re.compile(r"^\| \*\*(\d+) files\*\* \| \*\*[\d,]+\*\* \|", flags=re.MULTILINE)


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def reading_path() -> dict[str, int]:
    """docs/layout.md's reading-path table: file -> the line count it states."""
    return {path: int(lines) for path, lines in ROW.findall(LAYOUT_PAGE.read_text(encoding="utf-8"))}


def test_the_reading_path_is_short_and_its_counts_are_the_files():
    listed = reading_path()
    assert 5 <= len(listed) <= MAX_PATH_FILES, listed
    actual = {path: line_count(ROOT / path) for path in listed}
    assert sum(actual.values()) <= MAX_PATH_LINES, actual
    stale = {p: (listed[p], n) for p, n in actual.items() if abs(n - listed[p]) > max(10, listed[p] // 10)}
    assert not stale, (f"docs/layout.md's reading-path counts (listed, actual) are stale: {stale}; "
                       "python tests/test_layout.py --update rewrites them")
    for needed in ("core/step.py", "core/recorder.py", "core/trajectory.py"):
        assert needed in listed
    total = TOTAL.search(LAYOUT_PAGE.read_text(encoding="utf-8"))
    assert total and int(total.group(1)) == len(listed), "the table's total row names another number of files"


def test_the_reading_path_never_imports_the_fast_package():
    for path in reading_path():
        source = (ROOT / path).read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import) core\.fast", source, flags=re.MULTILINE), path


def test_no_module_is_over_about_400_lines():
    modules = [p for folder in ("core", "harness") for p in (ROOT / folder).rglob("*.py")]
    assert len(modules) > 20
    long = {str(p.relative_to(ROOT)): line_count(p) for p in modules if line_count(p) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def update_counts() -> None:
    """Rewrite the reading-path table's counts and its total row from the files."""
    text = LAYOUT_PAGE.read_text(encoding="utf-8")
    text = ROW.sub(lambda m: f"| `{m.group(1)}` | {line_count(ROOT / m.group(1))} |", text)
    counts = [int(n) for _, n in ROW.findall(text)]
    text = TOTAL.sub(f"| **{len(counts)} files** | **{sum(counts):,}** |", text)
    LAYOUT_PAGE.write_text(text, encoding="utf-8")
    print(f"{LAYOUT_PAGE.relative_to(ROOT)}: {len(counts)} files, {sum(counts):,} lines")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_layout.py --update")
    update_counts()
