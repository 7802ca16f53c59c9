"""Shared fixtures: real text, real tokenizers, small real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

# Thai written for these tests (not third-party text): short everyday sentences.
THAI_TEXT = (
    "สวัสดีครับ วันนี้อากาศดีมาก เราไปเดินเล่นที่สวนสาธารณะกันเถอะ\n"
    "ฉันชอบกินข้าวผัดกับไข่ดาว และดื่มชาเย็นทุกวัน\n"
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ แต่เว้นวรรคระหว่างประโยค\n"
    "แมวนอนอยู่บนหลังคาบ้าน ส่วนหมาวิ่งเล่นอยู่ในสนามหญ้า\n"
    "พรุ่งนี้เราจะไปตลาดเพื่อซื้อผลไม้ มะม่วง ทุเรียน และมังคุด\n"
)


@pytest.fixture(scope="session")
def english_text() -> str:
    """Real English prose that every Python installation ships: the pydoc topic pages."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


@pytest.fixture(scope="session")
def mixed_corpus_files(tmp_path_factory, english_text):
    """A tokenizer-training mix (English + Thai) and a disjoint English-only model corpus."""
    d = tmp_path_factory.mktemp("corpus")
    half = len(english_text) // 2
    mix = d / "tokenizer_mix.txt"
    mix.write_text(english_text[:half] + "\n" + THAI_TEXT * 40, encoding="utf-8")
    model_corpus = d / "model_corpus.txt"
    model_corpus.write_text(english_text[half:], encoding="utf-8")
    return mix, model_corpus


@pytest.fixture(scope="session")
def small_tokenizer(mixed_corpus_files):
    from core.tokenizer import train_char_bpe

    return train_char_bpe([mixed_corpus_files[0]], vocab_size=800)


@pytest.fixture()
def random_ids() -> torch.Tensor:
    """20k token ids drawn from [0, 700) for a vocab of 1,000: ids 700..999 are dead."""
    rng = np.random.default_rng(0)
    return torch.tensor(rng.integers(0, 700, size=20_000), dtype=torch.long)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, small_tokenizer, mixed_corpus_files):
    """A saved 800-token tokenizer and an English-only corpus file, for tiny scenarios."""
    d = tmp_path_factory.mktemp("tiny_data")
    tokenizer = d / "tokenizer.json"
    small_tokenizer.save(str(tokenizer))
    return tokenizer, mixed_corpus_files[1]


# The model, data and training of every tiny test scenario: one base, so the templates cannot drift.
TINY_BASE = """\
[model]
vocab_size = 800
n_positions = 32
tied = {tied}

[data]
tokenizer = "{tokenizer}"
corpus = "{corpus}"
seq_len = 32
batch_size = 4

[train]
steps = {steps}
device = "cpu"
"""

TINY_SCENARIO = """\
name = "{name}"
version = 1
summary = "A tiny untied run for tests."

""" + TINY_BASE + """
[record]
tensors = {tensors}

[scale.smoke]
train.steps = {smoke_steps}
"""


RESUMABLE_SCENARIO = """\
name = "{name}"
summary = "A tiny untied run that records every kind of frame dataset, for the resume and fault tests."

""" + TINY_BASE + """
[record]
every = {every}
tensors = {tensors}
flush_every_frames = 1
checkpoint_every = {ckpt_every}
"""
EVERY_KIND = '["E", "W", "grad_W", "exp_avg_W", "exp_avg_sq_E", "logits", "loss", "lr", "grad_norm"]'


def write_resumable_scenario(folder: Path, tokenizer: Path, corpus: Path, *, steps: int, every: int, ckpt_every: int,
                             name: str = "resumable", tensors: str = EVERY_KIND) -> Path:
    """A tiny run that flushes every frame and checkpoints every `ckpt_every` steps: `folder/<name>.toml`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(RESUMABLE_SCENARIO.format(name=name, tied="false", tokenizer=tokenizer, corpus=corpus, steps=steps,
                                              every=every, ckpt_every=ckpt_every, tensors=tensors), encoding="utf-8")
    return path


@pytest.fixture()
def write_scenario(tmp_path, tiny_data):
    """Write a tiny scenario file (plus extra TOML) into tmp_path/scenarios and return its path."""

    def write(extra: str = "", name: str = "tiny", tied: bool = False, steps: int = 4, smoke_steps: int = 3,
              tensors: str = '["E", "W", "grad_E", "grad_W", "loss"]', folder: str = "scenarios"):
        d = tmp_path / folder
        d.mkdir(exist_ok=True)
        path = d / f"{name}.toml"
        text = TINY_SCENARIO.format(name=name, tied=str(tied).lower(), tokenizer=tiny_data[0], corpus=tiny_data[1],
                                    steps=steps, smoke_steps=smoke_steps, tensors=tensors)
        path.write_text(text + extra, encoding="utf-8")
        return path

    return write
