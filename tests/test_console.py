"""The console command: `harness` from an install (pyproject's [project.scripts]), and `--help`
of every command without torch, transformers, h5py or matplotlib (handlers are imported by name
only when their command runs: harness/cli.py)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import build_parser, load_handler

HEAVY = ("torch", "transformers", "tokenizers", "h5py", "matplotlib", "numpy")
CHILD = """
import json, runpy, sys
sys.argv = ["harness", *json.loads(sys.argv[1])]
try:
    runpy.run_module("harness", run_name="__main__")  # python -m harness ...
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}), file=sys.stderr)
""" % (HEAVY,)


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser: ("run",), ("data",), ("data", "build"), ..."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(prefix + (name,))
                found += subcommands(sub, prefix + (name,))
    return found


COMMANDS = subcommands(build_parser())


def test_every_command_is_listed():
    assert {("run",), ("validate",), ("list",), ("sweep",), ("data",), ("data", "build"), ("data", "info"),
            ("report",), ("animate",), ("compress",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", [()] + COMMANDS, ids=lambda c: " ".join(c) or "harness")
def test_help_imports_no_heavy_module_and_shows_an_example(command):
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps([*command, "--help"])], capture_output=True,
                          text=True, timeout=120)
    outcome = json.loads(proc.stderr.strip().splitlines()[-1])
    assert outcome == {"code": 0, "heavy": []}, proc.stderr
    assert "usage: harness" in proc.stdout
    assert "example: harness " + (command[0] if command else "") in proc.stdout


def handlers(parser: argparse.ArgumentParser) -> list[str]:
    """The handler names the parser's commands set, "package.module:function"."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += [sub._defaults["handler"]] if "handler" in sub._defaults else handlers(sub)
    return found


def test_every_command_names_a_handler_that_exists():
    names = handlers(build_parser())
    assert len(names) == len(COMMANDS) - 1  # every command but `data`, whose actions have them
    for name in names:
        assert callable(load_handler(name)) and name.split(":")[1].startswith("cmd_"), name


def test_the_parsers_copies_of_constants_agree_with_the_originals():
    from core.encoding import COMPRESSIONS
    from harness import recompress_parser
    from harness.animate import cli_parser as animate_parser
    from harness.animate.projection import PROJECTIONS
    from harness.checks.measures import DEFAULT_CHUNK
    from harness.data import cli_parser as data_parser
    from harness.data.bundle import CACHE_ENV
    from harness.report import cli_parser as report_parser
    from harness.scenario import cli_parser as scenario_parser
    from harness.scenario.schema import FULL_SCALE

    assert scenario_parser.FULL_SCALE == FULL_SCALE and report_parser.DEFAULT_CHUNK == DEFAULT_CHUNK
    assert data_parser.CACHE_ENV == CACHE_ENV and recompress_parser.COMPRESSIONS == COMPRESSIONS
    assert animate_parser.PROJECTIONS == PROJECTIONS


def test_the_installed_console_command_runs():
    script = Path(sys.executable).parent / "harness"
    if not script.is_file():
        pytest.skip(f"no console script {script}: the project is not installed in this venv "
                    "(python3 -m pip install -c constraints.txt -e .)")
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr
    for command in ("run", "validate", "list", "sweep", "data", "report", "compress"):
        assert command in helped.stdout
    listed = subprocess.run([str(script), "list"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("name ") and "flannel_2 " in listed.stdout
