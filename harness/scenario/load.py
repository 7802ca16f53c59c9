"""Loading a scenario file: its `extends` chain merged in, a scale, `--set` overrides, then
every section validated against the schema (harness.scenario.schema) and the `[[expect]]`
tables against the check registry (harness.scenario.expectations).

A child's `expect` list replaces its parent's (an untied control does not inherit the
tied run's "tied_identity"); every other table merges key by key.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from harness.scenario.expectations import parse_expectations
from harness.scenario.schema import (
    DEFAULT_DATA,
    FULL_SCALE,
    SECTIONS,
    TOP_LEVEL,
    DataSection,
    Scenario,
    ScenarioError,
    build_section,
    check_key,
    validate_values,
)

SWEEP_ONLY_KEYS = {"axes", "expect_all", "sizes", "scenario"}  # a sweep file's keys (harness.sweep.spec), for a hint


# ------------------------------------------------------------------ loading
def read_toml(path: Path, kind: str = "Scenario", error: type[Exception] = ScenarioError) -> dict[str, Any]:
    """A TOML file's tables; a missing file or bad TOML raises `error` naming the file."""
    if not path.is_file():
        raise error(f"{kind} file not found: {path}")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:  # before: the codec's message without the file's name
        raise error(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                    f"TOML files are UTF-8") from exc
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def deep_merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`, table by table (lists and values replace)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_raw(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A scenario file with its `extends` chain merged in (parents first)."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(p.name for p in chain + (path,))
        raise ScenarioError(f"{chain[-1]}: extends forms a cycle: {cycle}")
    raw = read_toml(path)
    parent_name = raw.pop("extends", None)
    if parent_name is None:
        return raw
    if not isinstance(parent_name, str):
        raise ScenarioError(f"{path}: extends must be a file name (string), got {parent_name!r}")
    parent_path = path.parent / parent_name
    if not parent_path.is_file():
        raise ScenarioError(f"{path}: extends = {parent_name!r}: no such file {parent_path}")
    parent = load_raw(parent_path, chain + (path,))
    parent.pop("name", None)  # a child is its own experiment
    merged = deep_merge(parent, {k: v for k, v in raw.items() if k != "expect"})
    if "expect" in raw:
        merged["expect"] = raw["expect"]
    return merged


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.key=value` (value in TOML syntax; bare words are strings)."""
    if "=" not in text:
        raise ScenarioError(f"--set {text!r}: expected section.key=value")
    dotted, value_text = (s.strip() for s in text.split("=", 1))
    if dotted.count(".") != 1:
        raise ScenarioError(f"--set {text!r}: the key must be section.key (sections: {', '.join(SECTIONS)})")
    section, key = dotted.split(".")
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    return section, key, value


def load_scenario(path: str | Path, scale: str = FULL_SCALE, overrides: list[str] = (),
                  expectations: bool = True) -> Scenario:
    """Load, merge, scale, override and validate one scenario file. `expectations=False` drops the
    `[[expect]]` tables unread (`run --no-check`: what a check would need is not asked for)."""
    path = Path(path)
    raw = load_raw(path)
    where = str(path)
    unknown = set(raw) - set(TOP_LEVEL) - set(SECTIONS)
    if unknown:
        allowed = ", ".join(list(TOP_LEVEL) + list(SECTIONS))
        hint = (f" ({where} looks like a sweep file: check it with `harness sweep {where} --dry-run`)"
                if unknown & SWEEP_ONLY_KEYS else "")
        raise ScenarioError(f"{where}: unknown key {sorted(unknown)[0]!r}. Allowed top-level keys: {allowed}{hint}")
    for key, kind in TOP_LEVEL.items():
        if key in raw and not isinstance(raw[key], kind):
            raise ScenarioError(f"{where}: {key} must be a {kind.__name__}, got {raw[key]!r}")
    if "name" not in raw:
        raise ScenarioError(f"{where}: missing required key 'name'")

    scales = raw.get("scale", {})
    for scale_name, table in scales.items():
        if not isinstance(table, dict):
            raise ScenarioError(f"{where}: scale.{scale_name} must be a table of overrides")
        if scale_name == FULL_SCALE:
            raise ScenarioError(f"{where}: scale.full is the file itself; do not define it")
        for section, keys in table.items():
            if section not in SECTIONS:
                raise ScenarioError(
                    f"{where}: scale.{scale_name}.{section}: unknown section. Sections: {', '.join(SECTIONS)}"
                )
            if not isinstance(keys, dict):
                raise ScenarioError(f"{where}: scale.{scale_name}.{section} must be a table of overrides")
            for key, value in keys.items():
                check_key(f"{where}: scale.{scale_name}", section, key, value)
    if scale != FULL_SCALE:
        if scale not in scales:
            available = ", ".join([FULL_SCALE, *scales])
            raise ScenarioError(f"{where}: no scale {scale!r}. Available: {available}")
        raw = deep_merge(raw, scales[scale])
    origins = {f"{section}.{key}": f"scale {scale}" for section, keys in scales.get(scale, {}).items() for key in keys}

    for text in overrides:
        section, key, value = parse_override(text)
        if section not in SECTIONS:
            raise ScenarioError(f"--set {text}: unknown section {section!r}. Sections: {', '.join(SECTIONS)}")
        raw.setdefault(section, {})[key] = value
        where_set = f"--set {text}"
        check_key(where_set, section, key, value)
        origins[f"{section}.{key}"] = where_set

    sections = {name: build_section(where, name, raw.get(name, {})) for name in SECTIONS}
    data: DataSection = sections["data"]
    for key in ("tokenizer", "corpus"):
        value = getattr(data, key)
        if value != DEFAULT_DATA:
            setattr(data, key, str((path.parent / value).resolve()))
    scenario = Scenario(
        name=raw["name"],
        path=path,
        version=raw.get("version", 1),
        summary=raw.get("summary", ""),
        scale=scale,
        expect=[],
        scales=[FULL_SCALE, *scales],
        origins=origins,
        **sections,
    )
    try:
        validate_values(where, scenario)
    except ScenarioError as exc:  # a value an override set: say so, it is not the file's
        key = str(exc)[len(where) + 2:].split(" = ", 1)[0]
        setting = [o for o in overrides if o.split("=", 1)[0].strip() == key]
        if setting:
            raise ScenarioError(f"{exc} (set by --set {setting[-1]})") from exc
        raise
    scenario.expect = parse_expectations(where, raw.get("expect", []), scenario) if expectations else []
    return scenario


def find_scenarios(paths: list[str | Path]) -> list[Path]:
    """Scenario files among `paths` (files, or folders searched for *.toml)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(p.glob("*.toml")))
        elif p.is_file():
            found.append(p)
        else:
            raise ScenarioError(f"No such scenario file or folder: {p}")
    return found
