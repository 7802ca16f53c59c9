"""README.md and docs/*.md stay true to the code.

- every relative link resolves, relative to its page, to a file, and to a heading where it
  names an anchor (a broken link fails, naming the page and the link);
- every command README shows runs: `harness X ...` as `python -m harness X --help` (rc 0, the
  help names X and every option the command uses), `harness validate ...` for real on a copy
  of scenarios/ holding README's example scenario; `nox -s NAME` names a session of
  noxfile.py; `pip install` names files and extras that exist;
- docs/scenarios.md lists exactly the schema's keys with their defaults and the registry's
  checks with their arguments; docs/sweeps.md the cross-run aggregates.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.checks import REGISTRY
from harness.checks.registry import check_parameters
from harness.scenario.schema import SECTIONS
from harness.sweep.expect import AGGREGATES

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)(\w*)[^\n]*\n(.*?)^\1[ \t]*$", flags=re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), ![image](target)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", flags=re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # https:, mailto:: not checked here
HELP_TIMEOUT_S = 300


# ------------------------------------------------------------------ markdown
def code_blocks(text: str, *languages: str) -> list[str]:
    return [body for _, lang, body in FENCE.findall(text) if lang in languages]


def prose(text: str) -> str:
    """The page without its code blocks and inline code (links there are examples, not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lowercased, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        name, n = base, 0
        while name in found:  # GitHub numbers repeated headings: name, name-1, name-2
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file, or heading, does not exist."""
    problems = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{page}: link ({target}): {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{page}: link ({target}): no heading '#{anchor}' in {dest.name}")
    return problems


# ------------------------------------------------------------------ links
def test_the_docs_pages_exist_and_readme_is_short():
    assert len(PAGES) >= 6, PAGES
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= 200, f"README.md has {lines} lines: it is for newcomers, reference belongs in docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    problems = broken_links(page)
    assert not problems, "\n".join(problems)


def test_readme_links_every_docs_page():
    targets = LINK.findall(prose(README.read_text(encoding="utf-8")))
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in targets}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"docs pages that README.md does not link: {unlinked}"


def test_a_broken_link_or_anchor_is_reported_with_its_page(tmp_path):
    (tmp_path / "b.md").write_text("# Title\n\n## A `code` heading, twice\n\n## A `code` heading, twice\n")
    (tmp_path / "sub").mkdir()
    page = tmp_path / "sub" / "a.md"
    page.write_text(
        "# Page\n\n[ok](../b.md) [ok](../b.md#a-code-heading-twice-1) [ok](#page) [web](https://example.org/x)\n"
        "[gone](../missing.md) and [no anchor](../b.md#nope) and `[in code](nothing.md)`\n"
        "```\n[in a block](nothing.md)\n```\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2, problems
    assert all(str(page) in p for p in problems)
    assert "(../missing.md)" in problems[0] and "does not exist" in problems[0]
    assert "(../b.md#nope)" in problems[1] and "no heading '#nope'" in problems[1]


# ------------------------------------------------------------------ commands
def readme_commands() -> list[list[str]]:
    """README's shell commands as argument lists: comments dropped, `a && b` split."""
    commands = []
    for block in code_blocks(README.read_text(encoding="utf-8"), "bash", "sh", "shell"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1:]
    return commands


def tool_args(words: list[str], tool: str) -> list[str] | None:
    """The arguments after `tool`, `python -m tool` or `python3 -m tool`; None for another command."""
    if words[:1] == [tool]:
        return words[1:]
    if len(words) >= 3 and re.fullmatch(r"python3?", words[0]) and words[1:3] == ["-m", tool]:
        return words[3:]
    return None


def harness_help(path: tuple[str, ...]) -> str:
    proc = subprocess.run([sys.executable, "-m", "harness", *path, "--help"], capture_output=True, text=True,
                          timeout=HELP_TIMEOUT_S, cwd=ROOT)
    assert proc.returncode == 0, f"harness {' '.join(path)} --help: exit {proc.returncode}\n{proc.stderr}"
    return proc.stdout


def subcommands(help_text: str) -> set[str]:
    """The sub-commands argparse lists under "positional arguments:" (indented by four spaces)."""
    listing = help_text.split("positional arguments:\n", 1)[-1] if "positional arguments:\n" in help_text else ""
    names = set()
    for line in listing.splitlines():
        if line and not line.startswith(" "):
            break
        if match := re.match(r" {4}([a-z][\w-]*)(\s{2,}|$)", line):
            names.add(match.group(1))
    return names


def test_readme_shows_the_test_command_ci_runs_and_the_main_job():
    ci_line = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    ci_nox = ci_line.split("&&")[-1].strip()
    assert ci_nox == "python3 -m nox -s tests", ci_line
    commands = [" ".join(c) for c in readme_commands()]
    assert ci_nox in commands and "python3 -m nox -s scenarios" in commands, commands


def test_every_nox_and_pip_command_in_readme_names_what_exists():
    sessions = set(re.findall(r"@nox\.session[^\n]*\ndef (\w+)", (ROOT / "noxfile.py").read_text(encoding="utf-8")))
    assert {"tests", "scenarios", "benchmarks"} <= sessions, sessions
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    checked = 0
    for words in readme_commands():
        if (args := tool_args(words, "nox")) is not None:
            assert "-s" in args and args[args.index("-s") + 1] in sessions, f"README: {words}: no such nox session"
        elif (args := tool_args(words, "pip")) is not None:
            for i, word in enumerate(args):
                if word == "-c":
                    assert (ROOT / args[i + 1]).is_file(), f"README: {words}: no file {args[i + 1]}"
                for extra in re.findall(r"^\.\[([\w,-]+)\]$", word):
                    assert set(extra.split(",")) <= extras, f"README: {words}: no such extra in pyproject.toml"
        elif tool_args(words, "harness") is None and words != ["pytest"]:
            pytest.fail(f"README shows a command this test cannot check: {' '.join(words)}")
        checked += 1
    assert checked >= 3


@pytest.mark.slow
def test_every_harness_command_in_readme_answers_help_with_its_options():
    """`harness X ...` -> `python -m harness X --help`: exit 0, names X and each option the README uses."""
    uses = [args for words in readme_commands() if (args := tool_args(words, "harness")) is not None]
    assert len(uses) >= 4, uses
    top = harness_help(())
    first = {args[0] for args in uses}
    assert first <= subcommands(top), f"README uses commands {first - subcommands(top)} that `harness --help` lacks"
    with ThreadPoolExecutor(max_workers=2) as pool:  # slow start-up (torch) overlaps on two cores
        helps = dict(zip(sorted(first), pool.map(lambda c: harness_help((c,)), sorted(first))))
    for args in uses:
        path, text = (args[0],), helps[args[0]]
        while len(args) > len(path) and args[len(path)] in subcommands(text):  # e.g. `data info`
            path += (args[len(path)],)
            text = harness_help(path)
        assert re.search(rf"usage: .*\b{' '.join(path)}\b", text), f"`harness {' '.join(path)} --help`:\n{text}"
        for option in (a.split("=")[0] for a in args if a.startswith("-")):
            assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", text), (
                f"README: harness {' '.join(args)}: option {option} is not in `harness {' '.join(path)} --help`")


@pytest.mark.slow
def test_readme_example_scenario_validates_with_the_readme_commands(tmp_path):
    """The tour's new scenario file, written where it says, passes README's own `validate` lines."""
    text = README.read_text(encoding="utf-8")
    (example,) = [b for b in code_blocks(text, "toml") if re.match(r"# scenarios/\w+\.toml\n", b)]
    target = tmp_path / example.splitlines()[0][2:]
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    target.write_text(example, encoding="utf-8")
    validations = [args for words in readme_commands()
                   if (args := tool_args(words, "harness")) is not None and args[0] == "validate"]
    assert any(target.name in " ".join(args) for args in validations), validations
    for args in validations:
        proc = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                              timeout=HELP_TIMEOUT_S, cwd=tmp_path)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"README: harness {' '.join(args)}: exit {proc.returncode}\n{output}"
        assert re.search(rf"^ok .*{target.name}: {target.stem} ", proc.stdout, flags=re.MULTILINE), proc.stdout


def test_python_blocks_compile_and_import_what_exists():
    for page in PAGES:
        for block in code_blocks(page.read_text(encoding="utf-8"), "python"):
            compile(block, str(page), "exec")
            for module, names in re.findall(r"^from ((?:core|harness)[\w.]*) import ([\w, ]+)$", block, re.MULTILINE):
                for name in arguments(names):  # a renamed module or class fails here
                    assert hasattr(importlib.import_module(module), name), f"{page}: from {module} import {name}"


# ------------------------------------------------------------------ reference tables
def table_rows(page: str, section: str) -> dict[str, list[str]]:
    """The rows of the table under `## section` of docs/`page`: first cell (without backticks) -> cells."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_scenario_keys_table_is_the_schema_with_its_defaults():
    rows = table_rows("scenarios.md", "Every key")
    schema = {f"{section}.{f.name}": f for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    assert set(rows) == set(schema), (f"docs/scenarios.md lacks {sorted(set(schema) - set(rows))}, "
                                      f"lists unknown {sorted(set(rows) - set(schema))}")
    for key, f in schema.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        stated = tomllib.loads(f"v = {rows[key][0]}")["v"]
        same = stated == default and type(stated) is type(default)
        assert same, f"docs/scenarios.md: {key} = {stated!r}, the code's default: {default!r}"


def arguments(cell: str) -> list[str]:
    return [a.strip() for a in cell.split(",") if a.strip()]


def test_checks_table_is_the_registry_with_its_arguments():
    rows = table_rows("scenarios.md", "Checks")
    assert set(rows) == set(REGISTRY), f"docs/scenarios.md checks {sorted(rows)} vs registry {sorted(REGISTRY)}"
    for name, fn in REGISTRY.items():
        assert arguments(rows[name][0]) == list(check_parameters(fn)), f"docs/scenarios.md: arguments of {name}"


def test_aggregates_table_is_the_sweep_registry_with_its_arguments():
    rows = table_rows("sweeps.md", "Cross-run expectations")
    assert set(rows) == set(AGGREGATES), f"docs/sweeps.md aggregates {sorted(rows)} vs {sorted(AGGREGATES)}"
    for name, fn in AGGREGATES.items():
        assert arguments(rows[name][0]) == list(check_parameters(fn)), f"docs/sweeps.md: arguments of {name}"
