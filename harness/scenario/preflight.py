"""What `validate` (and `run`, before it trains) checks of a scenario's data without training:
the tokenizer and corpus files exist and are readable, the tokenizer's vocab is
`model.vocab_size`, and a JSON Lines corpus's first lines hold `data.text_field`. Each problem
names the scenario file, the key and the data file."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer

from harness.data.prepare import JSONL_SUFFIXES
from harness.scenario.schema import DEFAULT_DATA, Scenario

FIRST_LINES = 5  # of a JSON Lines corpus, checked for the text field


def data_problems(scenario: Scenario) -> list[str]:
    """Every problem found, as 'file: key = value: what is wrong' lines (empty: none)."""
    where, data = scenario.path, scenario.data
    problems = []
    for key in ("tokenizer", "corpus"):
        value = getattr(data, key)
        if value == DEFAULT_DATA:
            continue
        path = Path(value)
        try:
            with path.open("rb") as f:
                f.read(1)
        except OSError as exc:
            problems.append(f"{where}: data.{key} = {value!r}: cannot be read ({exc.strerror or exc})")
    if problems:
        return problems
    if data.tokenizer != DEFAULT_DATA:
        try:
            vocab = Tokenizer.from_file(data.tokenizer).get_vocab_size()
        except Exception as exc:  # tokenizers raises its own exception types
            problems.append(f"{where}: data.tokenizer = {data.tokenizer!r}: not a tokenizer file ({exc})")
        else:
            if vocab != scenario.model.vocab_size:
                problems.append(f"{where}: data.tokenizer = {data.tokenizer!r} has a vocab of {vocab:,} tokens, but "
                                f"model.vocab_size = {scenario.model.vocab_size:,}")
    if data.corpus != DEFAULT_DATA and Path(data.corpus).suffix.lower() in JSONL_SUFFIXES:
        problems += _jsonl_problems(where, Path(data.corpus), data.text_field)
    return problems


def _jsonl_problems(where: Path, corpus: Path, field: str) -> list[str]:
    with corpus.open(encoding="utf-8", errors="replace") as f:
        lines = [line for line in (f.readline() for _ in range(FIRST_LINES)) if line.strip()]
    for n, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            return [f"{where}: data.corpus = {str(corpus)!r}: line {n} is not JSON ({exc.msg})"]
        if not isinstance(record, dict) or field not in record:
            fields = ", ".join(record) if isinstance(record, dict) else type(record).__name__
            return [f"{where}: data.text_field = {field!r} is not in line {n} of {corpus} (it has: {fields})"]
    return []
