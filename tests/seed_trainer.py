"""The seeds' method: transformers' Trainer, written the way notebook 1.20a wrote it.

Used as the reference the core is held to (tests/test_parity_trainer.py: bit-identical
E and W every step) and timed beside it (benchmarks/test_train_bench.py: "harness ÷ seeds'
method"). Nothing of the core is handed to the Trainer: its own dataset class, init cells,
`compute_loss` override, TrainingArguments (bf16=True, optim="adamw_torch", Trainer
defaults for clipping and schedule) and its own random sampler. Needs the `test` extra
(transformers' Trainer requires `accelerate`).

A test oracle, so it lives with the tests, not in the installed package; the benchmarks
import it from here too (benchmarks/conftest.py puts this folder on sys.path).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments


class TokenDataset(Dataset):  # notebook 1.20a, cell 7, verbatim
    def __init__(self, corpus_tensor, max_seq_len):
        self.corpus = corpus_tensor
        self.max_seq_len = max_seq_len

    def __len__(self):
        return max(0, len(self.corpus) - self.max_seq_len)

    def __getitem__(self, idx):
        chunk = self.corpus[idx : idx + self.max_seq_len + 1]
        return {"input_ids": chunk[:-1], "labels": chunk[1:]}


class NotebookTrainer(Trainer):  # notebook 1.20a, cell 11: the loss comes from the model
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss


class RecordEW(TrainerCallback):
    """Keeps E and W after every step, in RAM, as the notebooks' recorder did."""

    def __init__(self, to_cpu: bool = True):
        self.frames: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.to_cpu = to_cpu

    def on_step_end(self, args, state, control, model=None, **kwargs):
        e, w = model.transformer.wte.weight.detach(), model.lm_head.weight.detach()
        self.frames.append((e.cpu().clone(), w.cpu().clone()) if self.to_cpu else (e.clone(), w.clone()))


@dataclass
class SeedRun:
    """The knobs the notebooks set (1.20a cell 1, 1.20b for untied); the rest are Trainer defaults."""

    vocab_size: int = 10_000
    tied: bool = True
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # Trainer default
    batch_size: int = 32
    seq_len: int = 128
    seed: int = 42
    std: float = 0.02
    device: str = "cpu"


def notebook_model(run: SeedRun) -> GPT2LMHeadModel:
    """Cells 2, 8 and 9 of notebooks 1.20a (tied) / 1.20b (untied)."""
    torch.manual_seed(run.seed)
    config = GPT2Config(
        vocab_size=run.vocab_size, n_positions=run.seq_len, n_embd=64, n_layer=2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=run.tied,
    )
    model = GPT2LMHeadModel(config).to(torch.bfloat16)
    torch.manual_seed(run.seed)
    init_bf16 = (torch.randn(run.vocab_size, 64, dtype=torch.float32) * run.std).to(torch.bfloat16)
    with torch.no_grad():
        model.transformer.wte.weight[:] = init_bf16
        if not run.tied:
            model.lm_head.weight[:] = init_bf16
    return model


def notebook_trainer(ids: torch.Tensor, run: SeedRun, output_dir: str | Path, recorder: RecordEW | None = None) -> Trainer:
    """A Trainer over `ids` (1-D int64) as notebook 1.20a built it; `.train()` runs `run.steps` steps."""
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=run.steps,
        per_device_train_batch_size=run.batch_size,
        learning_rate=run.lr,
        weight_decay=run.weight_decay,
        max_grad_norm=run.max_grad_norm,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        optim="adamw_torch",
        logging_steps=50,
        save_strategy="no",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        bf16=True,
        seed=run.seed,
        report_to="none",
        disable_tqdm=True,
        use_cpu=run.device == "cpu",
    )
    model = notebook_model(run)
    callbacks = [recorder] if recorder is not None else []
    return NotebookTrainer(model=model, args=args, train_dataset=TokenDataset(ids, run.seq_len), callbacks=callbacks)
