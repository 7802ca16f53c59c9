"""A run folder that explains itself: beside `OUT/<name>.h5`, the resolved scenario as TOML
(`<name>.toml`, the scale applied, every value an override set marked) and a plain-text log
(`<name>.log`, the console's log lines without progress-bar fragments).

`harness run OUT/<name>.toml` re-runs the same trajectory: the file holds every key of every
section, the data paths made absolute, and only the expectations that apply at its scale.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import shlex
import sys
from contextlib import contextmanager
from logging.handlers import BufferingHandler
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness import LOG_FORMAT
from harness.scenario.schema import SECTIONS, Scenario, applicable

log = logging.getLogger(__name__)

HEADER = "# Resolved scenario of the run"  # a file's first line: one of ours, rewritten by the next run
LOGGERS = ("core", "harness")  # the project's loggers: what a run's log file holds


def command_line(argv: list[str] | None = None) -> str:
    """This process's command line as a user would type it (`python -m harness ...`, `harness ...`)."""
    argv = list(sys.argv if argv is None else argv)
    program = Path(argv[0]).name if argv else "python"
    if program == "__main__.py":
        program = f"python -m {Path(argv[0]).parent.name}"
    return " ".join([program] + [shlex.quote(a) for a in argv[1:]])


def toml_value(value: Any) -> str:
    """A TOML literal for a scenario value: str, bool, int, float, or a list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # JSON escapes are TOML's; TOML also wants DEL escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (int, float)):
        return repr(value)  # a float's repr round-trips; TOML spells inf and nan as Python does
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")


def _key_lines(table: dict[str, Any], marks: dict[str, str]) -> list[str]:
    lines = []
    for key, value in table.items():
        if value is None:  # TOML has no null: the key's default is None
            continue
        mark = f"  # {marks[key]}" if key in marks else ""
        lines.append(f"{key} = {toml_value(value)}{mark}")
    return lines


def scenario_toml(scenario: Scenario, command: str, revision: str | None = None) -> str:
    """The resolved scenario as a TOML file's text, header comment first."""
    overrides = scenario.overrides()
    header = [
        f"{HEADER} {scenario.name}, written by harness beside its trajectory.",
        f"# command:  {command}",
        f"# date:     {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"# revision: {revision or 'unknown'}",
        f"# from:     {scenario.path} at scale {scenario.scale}"
        + (" (applied here: the keys marked 'scale')" if scenario.scale != "full" else ""),
        f"# overrides: {', '.join(overrides) if overrides else 'none'}",
        "# Run it again with: harness run THIS_FILE --out OTHER_FOLDER",
    ]
    lines = header + ["", f"name = {toml_value(scenario.name)}", f"version = {scenario.version}",
                      f"summary = {toml_value(scenario.summary)}"]
    resolved = scenario.resolved()
    for section in SECTIONS:
        marks = {k.split(".", 1)[1]: v for k, v in scenario.origins.items() if k.split(".", 1)[0] == section}
        lines += ["", f"[{section}]"] + _key_lines(resolved[section], marks)
    for e in applicable(scenario):
        table = {"check": e.check, "id": e.id, "xfail": e.xfail or None, "exploratory": e.exploratory or None, **e.args}
        lines += ["", "[[expect]]"] + _key_lines(table, {})
    if not applicable(scenario):
        lines += ["", "# No expectations: none apply at this scale, or the run was started with --no-check."]
    return "\n".join(lines) + "\n"


def write_scenario_file(path: Path, scenario: Scenario, command: str, revision: str | None = None) -> None:
    """Write `scenario_toml` to `path`, unless a file there is not one of ours (a scenario a user
    keeps in the output folder is never overwritten: a warning says so)."""
    if path.exists() and not path.read_text(encoding="utf-8", errors="replace").startswith(HEADER):
        log.warning("%s is not a run's resolved scenario: left as it is (the resolved scenario is in the "
                    "trajectory's metadata)", path)
        return
    path.write_text(scenario_toml(scenario, command, revision), encoding="utf-8")


@contextmanager
def attached(handler: logging.Handler) -> Iterator[logging.Handler]:
    """`handler` receives the project's log records (INFO and up) while the block runs, even where
    the console shows only warnings (-q): the loggers' levels are lowered to INFO meanwhile."""
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)


def held_lines() -> contextlib.AbstractContextManager[BufferingHandler]:
    """`with held_lines() as held:` keeps the log records of a run's first moments (its data, its
    kernels), before it knows whether it may write its log file; RunLog(..., earlier=held.buffer)."""
    return attached(BufferingHandler(capacity=sys.maxsize))


class RunLog:
    """`with RunLog(path):` copies the project's log lines (INFO and up) into `path`, formatted as
    on the console, after the `earlier` records; `say(line)` prints a line and writes it there too.
    Opening a path that is open already (a command around run_scenario) adds nothing: each line is
    written once."""

    _open: dict[Path, logging.FileHandler] = {}

    def __init__(self, path: Path, append: bool = True, earlier: Sequence[logging.LogRecord] = ()):
        self.path, self.append, self.earlier = Path(path).resolve(), append, earlier
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RunLog:
        if self.path in RunLog._open:
            return self
        handler = logging.FileHandler(self.path, mode="a" if self.append else "w", encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        for record in self.earlier:
            handler.handle(record)
        RunLog._open[self.path] = handler
        self._stack.callback(RunLog._open.pop, self.path)
        self._stack.callback(handler.close)
        self._stack.enter_context(attached(handler))
        return self

    def say(self, line: str, file=None) -> None:
        print(line, file=file or sys.stdout)
        handler = RunLog._open.get(self.path)
        if handler is not None:
            handler.stream.write(line + "\n")
            handler.flush()

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
