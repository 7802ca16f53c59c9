"""The import graph of core and harness, read with ast (nothing is imported): no cycle, and
the layers import only downwards: core never imports harness; in core, only core.fast
imports core.fast; harness.checks never imports the report layer, harness.report.

Every import counts, at any depth (one inside a function can hide a cycle, not break it).
Importing a.b.c first runs the packages a and a.b, so it depends on their __init__ files too,
except the packages the importer itself is in (Python has them already). A command's handler
named as a string, `handler="a.b:cmd_x"` (harness.cli imports it by name when the command runs),
counts as an import of a.b by the module that names it. The command-line parsers (harness.cli
and the modules it imports) reach no module of the project but each other: `--help` stays fast.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "harness")


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


HANDLER = re.compile(r"([A-Za-z_][\w.]*):[A-Za-z_]\w*")  # "package.module:function", imported by name


def imported_modules(name: str, source: str, modules: set[str], by_name: bool = True) -> set[str]:
    """The modules of `modules` that module `name` imports, given its source (`by_name`: with the
    modules of the handlers it names, "package.module:function")."""
    package = name if any(m.startswith(name + ".") for m in modules) else name.rpartition(".")[0]
    named: set[str] = set()  # the modules named by import statements
    for node in ast.walk(ast.parse(source)):
        if by_name and isinstance(node, ast.Constant) and isinstance(node.value, str):
            handler = HANDLER.fullmatch(node.value)
            if handler and handler.group(1) in modules:
                named.add(handler.group(1))
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . (this package), from .. (its parent), ...
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + [node.module or ""]).rstrip(".")
            for alias in node.names:  # from a.b import c: the module a.b.c if there is one, else a name of a.b
                named.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    out = set()
    for dotted in named:
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):  # a, a.b (run first, unless the importer is in them), a.b.c
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix != name and not (i < len(parts) and within(name, prefix)):
                out.add(prefix)
    return out


def import_graph(sources: dict[str, str], by_name: bool = True) -> dict[str, set[str]]:
    """{module: the modules it imports} for {module name: source} (a package by its own name)."""
    return {name: imported_modules(name, source, set(sources), by_name) for name, source in sources.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles as module names, first = last: [["a", "b", "a"]]; at least one per knot of modules."""
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the stack, then "done"
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


# (package, package, why): no module inside the first imports one inside the second, unless it is in it too
RULES = [("core", "harness", "core knows nothing of the harness"),
         ("core", "core.fast", "only core.fast itself may import core.fast"),
         ("harness.checks", "harness.report", "the checks must not import the report layer")]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that go against the layers, one line each."""
    return [f"{src} imports {dst}: {why}" for src, targets in sorted(graph.items()) for dst in sorted(targets)
            for inside, to, why in RULES if within(src, inside) and within(dst, to) and not within(src, to)]


def project_sources() -> dict[str, str]:
    sources = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            sources[name] = path.read_text(encoding="utf-8")
    return sources


def synthetic(**modules: str) -> dict[str, set[str]]:
    """The graph of modules given as keyword arguments, "a__b" naming the module a.b."""
    return import_graph({name.replace("__", "."): source for name, source in modules.items()})


# ------------------------------------------------------------------ the project
def test_the_project_has_no_import_cycle():
    graph = import_graph(project_sources())
    assert {"core.model", "harness.checks.library", "harness.scenario.load", "harness.sweep.file"} <= set(graph)
    assert find_cycles(graph) == []


def test_the_project_imports_only_downwards():
    assert layer_violations(import_graph(project_sources())) == []


def test_the_cli_parsers_import_nothing_of_the_project_but_each_other():
    """What `harness --help` loads, without the handlers it names: parser modules and packages
    whose __init__ imports nothing (the runtime test is tests/test_console.py)."""
    sources = project_sources()
    graph = import_graph(sources, by_name=False)
    loaded = reachable(graph, "harness.cli")
    assert {"harness.scenario.cli_parser", "harness.report.cli_parser"} <= loaded
    heavy = sorted(m for m in loaded if not (m.endswith("_parser") or m in ("harness", "harness.cli")
                                             or (m.count(".") == 1 and not graph[m])))
    assert heavy == [], f"harness --help would import {heavy}"
    handlers = reachable(import_graph(sources), "harness.cli")  # by name: the handlers and what they import
    assert {"harness.scenario.cli", "harness.runner", "core.model"} <= handlers


# ------------------------------------------------------------------ the rules fire
def test_a_handler_named_as_a_string_is_an_import():
    graph = synthetic(p="", p__parser='h = "p.cmd:run"\nx = "not a:handler"', p__cmd="import p.parser")
    assert graph["p.parser"] == {"p.cmd"}
    assert find_cycles(graph) == [["p.cmd", "p.parser", "p.cmd"]]


def test_names_and_submodules_are_told_apart():
    graph = synthetic(a="", a__b="c = 1", a__b__d="", x="from a.b import c", y="import a.b.d", z="from a.b import d")
    assert graph["x"] == {"a", "a.b"}  # c is a name in a.b
    assert graph["y"] == graph["z"] == {"a", "a.b", "a.b.d"}  # d is a module; a and a.b run first


def test_a_cycle_is_reported_as_its_modules():
    graph = synthetic(p="", p__a="from p.b import f", p__b="import p.a")
    assert find_cycles(graph) == [["p.a", "p.b", "p.a"]]


def test_a_cycle_hidden_in_a_function_through_relative_imports_is_found():
    graph = synthetic(p="", p__a="def f():\n    from . import b\n", p__b="from .a import f")
    assert graph["p.a"] == {"p.b"}
    assert find_cycles(graph) == [["p.a", "p.b", "p.a"]]


def test_a_cycle_through_a_package_init_is_found():
    graph = synthetic(p="from q import y", p__m="", q="import p.m")  # p.m runs p/__init__.py, which imports q
    assert find_cycles(graph) == [["p", "q", "p"]]
    assert find_cycles(synthetic(p="from p import m", p__m="from p import x")) == [["p", "p.m", "p"]]
    assert find_cycles(synthetic(p="", p__m="import p.n", p__n="")) == []  # p.m is inside p: no edge to it


def broken(graph: dict[str, set[str]]) -> list[str]:
    return [line.split(":")[0] for line in layer_violations(graph)]


def test_core_importing_the_harness_is_reported():
    graph = synthetic(core="", core__model="def f():\n    from harness.checks import check\n", harness="",
                      harness__checks="")
    assert broken(graph) == ["core.model imports harness", "core.model imports harness.checks"]


def test_core_outside_core_fast_importing_core_fast_is_reported():
    graph = synthetic(core="", core__fast="", core__fast__gemm="import core.model",  # allowed: fast uses core
                      core__model="from .fast import gemm")
    assert broken(graph) == ["core.model imports core.fast", "core.model imports core.fast.gemm"]


def test_the_checks_importing_the_report_layer_is_reported():
    graph = synthetic(harness="", harness__checks="", harness__checks__library="from ..report.analysis import x",
                      harness__report="", harness__report__analysis="")
    assert broken(graph) == ["harness.checks.library imports harness.report",
                             "harness.checks.library imports harness.report.analysis"]
