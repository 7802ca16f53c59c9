"""Scenario files: one TOML file per experiment, validated into typed core configs.

    name = "flannel_2"
    version = 1
    summary = "..."
    extends = "flannel_1.toml"      # inherit another file, then override

    [model]  -> core.model.ModelConfig        [init]      -> core.model.InitConfig
    [data]   -> DataSection (core DataConfig + tokenizer/corpus paths)
    [optimizer] -> core.optim.OptimConfig     [train]     -> TrainSection (core TrainConfig + core.fast KernelConfig)
    [record] -> core.recorder.RecordConfig
    [scale.smoke]                   # per-scale overrides, dotted keys: train.steps = 12
    [[expect]]                      # one table per expectation: check = "...", its arguments

Every key and type is checked against those dataclasses; any error names the file, the
key and what is allowed.

This module is the schema: the sections, `Scenario`, `Expectation`, `ScenarioError`, and
the checks of keys, types and values. Reading a file (its `extends` chain, a scale, `--set`
overrides) is harness.scenario.load; the `[[expect]]` tables are validated against the check
registry by harness.scenario.expectations.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data import DataConfig
from core.device import DEVICE_KINDS
from core.encoding import COMPRESSIONS
from core.fast import KERNEL_CHOICES, KernelConfig
from core.fast.gemm import MATMULS
from core.fast.lm_head import LOGITS_MATMULS
from core.model import UNTIED_INITS, InitConfig, ModelConfig
from core.optim import SCHEDULES, OptimConfig
from core.format import RECORDABLE
from core.recorder import RecordConfig
from core.train import TrainConfig

log = logging.getLogger(__name__)

FULL_SCALE = "full"
DEFAULT_DATA = "default"


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file and the key."""


@dataclass
class DataSection(DataConfig):
    tokenizer: str = DEFAULT_DATA  # tokenizer JSON, or "default" for the built-in bundle
    corpus: str = DEFAULT_DATA  # .txt / .jsonl / .parquet, or "default" for the built-in bundle
    text_field: str = "text"  # JSON Lines field / Parquet column holding the text


@dataclass
class TrainSection(KernelConfig, TrainConfig):
    """[train]: steps and device (core), and the step's kernels (core.fast.choose_kernels)."""


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "init": InitConfig,
    "data": DataSection,
    "optimizer": OptimConfig,
    "train": TrainSection,
    "record": RecordConfig,
}
TOP_LEVEL = {"name": str, "version": int, "summary": str, "extends": str, "scale": dict, "expect": list}


@dataclass
class Expectation:
    check: str
    args: dict[str, Any]
    id: str  # readable test id, e.g. "dead-E-zero_displacement"
    xfail: str = ""  # non-empty: a kept hypothesis expected to fail (strict), with the reason
    exploratory: str = ""  # non-empty: an open question, reported either way, never fails the suite
    scales: list[str] | None = None  # only at these scales (None: all)


@dataclass
class Scenario:
    name: str
    path: Path
    version: int = 1
    summary: str = ""
    scale: str = FULL_SCALE
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    data: DataSection = field(default_factory=DataSection)
    optimizer: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)
    record: RecordConfig = field(default_factory=RecordConfig)
    expect: list[Expectation] = field(default_factory=list)
    scales: list[str] = field(default_factory=lambda: [FULL_SCALE])
    # Values that are not the file's: "section.key" -> "scale smoke" or "--set section.key=value"
    origins: dict[str, str] = field(default_factory=dict)

    def overrides(self) -> list[str]:
        """The `--set` overrides that made this scenario, in key order: ["--set train.steps=100"]."""
        return sorted({o for o in self.origins.values() if o.startswith("--set")})

    def describe(self) -> str:
        """The scale and the overrides, for a run's header: "full; --set train.steps=100"."""
        return "; ".join([self.scale] + self.overrides())

    def resolved(self) -> dict[str, Any]:
        """The fully resolved scenario as plain data (written into every trajectory file)."""
        out: dict[str, Any] = {"name": self.name, "version": self.version, "summary": self.summary,
                               "scale": self.scale, "file": str(self.path)}
        for section in SECTIONS:
            out[section] = dataclasses.asdict(getattr(self, section))
        out["expect"] = [{"check": e.check, "id": e.id, **e.args} for e in self.expect]
        return out


def applicable(scenario: Scenario) -> list[Expectation]:
    """The expectations of `scenario` that apply at its scale."""
    return [e for e in scenario.expect if e.scales is None or scenario.scale in e.scales]


# ------------------------------------------------------------------ typing
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _matches(value: Any, t: Any) -> bool:
    origin = typing.get_origin(t)
    if origin is list:
        (item,) = typing.get_args(t)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def check_key(where: str, section: str, key: str, value: Any) -> None:
    types = _field_types(SECTIONS[section])
    if key not in types:
        raise ScenarioError(f"{where}: unknown key {section}.{key}. Allowed in [{section}]: {', '.join(types)}")
    if not _matches(value, types[key]):
        raise ScenarioError(
            f"{where}: {section}.{key} = {value!r} has the wrong type: expected {_type_name(types[key])}"
        )


def build_section(where: str, section: str, table: Any) -> Any:
    """A section's dataclass from its TOML table; unknown keys and wrong types are errors."""
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: [{section}] must be a table, got {table!r}")
    for key, value in table.items():
        check_key(where, section, key, value)
    cls = SECTIONS[section]
    types = _field_types(cls)
    return cls(**{k: float(v) if types[k] is float else v for k, v in table.items()})


# ------------------------------------------------------------------ values
def validate_values(where: str, s: Scenario) -> None:
    """Impossible values, caught before anything runs."""
    m, d, o, t, r, i = s.model, s.data, s.optimizer, s.train, s.record, s.init

    def fail(key: str, value: Any, why: str) -> None:
        raise ScenarioError(f"{where}: {key} = {value!r}: {why}")

    for section in SECTIONS:  # nan and inf pass every comparison below: refuse them first
        for key, value in dataclasses.asdict(getattr(s, section)).items():
            if isinstance(value, float) and not math.isfinite(value):
                fail(f"{section}.{key}", value, "must be a finite number")

    for key, value in (("model.vocab_size", m.vocab_size), ("model.n_embd", m.n_embd), ("model.n_layer", m.n_layer),
                       ("model.n_head", m.n_head), ("model.n_positions", m.n_positions), ("data.seq_len", d.seq_len),
                       ("data.batch_size", d.batch_size), ("train.steps", t.steps), ("record.every", r.every),
                       ("record.flush_every_frames", r.flush_every_frames), ("record.queue_frames", r.queue_frames),
                       ("record.keyframe_every", r.keyframe_every)):
        if value < 1:
            fail(key, value, "must be >= 1")
    if m.n_embd % m.n_head:
        fail("model.n_head", m.n_head, f"must divide model.n_embd = {m.n_embd}")
    if d.seq_len > m.n_positions:
        fail("data.seq_len", d.seq_len, f"exceeds model.n_positions = {m.n_positions}")
    if not 1 <= d.target_offset <= d.seq_len:
        fail("data.target_offset", d.target_offset, f"must be in 1..seq_len ({d.seq_len}); 1 = next token")
    if i.std <= 0:
        fail("init.std", i.std, "must be > 0")
    if i.untied_init not in UNTIED_INITS:
        fail("init.untied_init", i.untied_init, f"allowed: {', '.join(UNTIED_INITS)}")
    if o.lr <= 0:
        fail("optimizer.lr", o.lr, "must be > 0")
    if o.eps <= 0:
        fail("optimizer.eps", o.eps, "must be > 0")
    for key, value in (("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)):
        if not 0 <= value < 1:
            fail(key, value, "must lie in [0, 1)")
    for key, value in (("optimizer.weight_decay", o.weight_decay), ("optimizer.max_grad_norm", o.max_grad_norm),
                       ("record.flush_every_seconds", r.flush_every_seconds), ("record.disk_reserve_mb", r.disk_reserve_mb),
                       ("record.checkpoint_every", r.checkpoint_every), ("record.writeback_every_mb", r.writeback_every_mb)):
        if value < 0:
            fail(key, value, "must be >= 0")
    if o.schedule not in SCHEDULES:
        fail("optimizer.schedule", o.schedule, f"allowed: {', '.join(SCHEDULES)}")
    if t.device.split(":")[0] not in DEVICE_KINDS:
        fail("train.device", t.device, f"allowed: {', '.join(DEVICE_KINDS)} (or cuda:N)")
    if t.kernels not in KERNEL_CHOICES:
        fail("train.kernels", t.kernels, f"allowed: {', '.join(KERNEL_CHOICES)}")
    if t.logits_matmul not in LOGITS_MATMULS:
        fail("train.logits_matmul", t.logits_matmul, f"allowed: {', '.join(LOGITS_MATMULS)}")
    if t.matmul not in MATMULS:
        fail("train.matmul", t.matmul, f"allowed: {', '.join(MATMULS)}")
    if t.kernels == "reference" and (t.matmul, t.logits_matmul, t.cuda_graph) != ("bf16", "bf16", False):
        fail("train.kernels", t.kernels, "runs torch's own kernels: train.matmul, train.logits_matmul and "
             "train.cuda_graph need 'auto'")
    if r.compression not in COMPRESSIONS:
        fail("record.compression", r.compression, f"allowed: {', '.join(COMPRESSIONS)}")
    for name in r.tensors:
        if name not in RECORDABLE:
            fail("record.tensors", name, f"unknown tensor. Allowed: {', '.join(RECORDABLE)}")
    if len(set(r.tensors)) != len(r.tensors):
        fail("record.tensors", r.tensors, "lists a tensor twice")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", s.name):
        fail("name", s.name, "use letters, digits, '_', '.', '-' (it names the trajectory file)")
