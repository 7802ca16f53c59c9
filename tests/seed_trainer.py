"""The seeds' method: transformers' Trainer, written the way notebook 1.20a wrote it.

Used as the reference the core is held to (tests/test_parity_trainer.py: bit-identical
E, W, loss and pre-clip grad norm every step, as `RecordSteps` records them) and timed
beside it (benchmarks/test_train_bench.py: "harness ÷ seeds' method"). Nothing of the core
is handed to the Trainer: its own dataset class, init cells, `compute_loss` override,
TrainingArguments (bf16=True, optim="adamw_torch", Trainer defaults for clipping and
schedule) and its own random sampler. Needs the `test` extra (transformers' Trainer
requires `accelerate`).

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
class TrainerStep:
    """One optimizer step of the Trainer, as it computed it (all CPU tensors, copied)."""

    E: torch.Tensor  # (V, D) bf16 after the step
    W: torch.Tensor  # (V, D) bf16 after the step (the same storage as E when tied)
    loss: torch.Tensor  # () float32: what compute_loss returned, the tensor backpropagated
    grad_norm: torch.Tensor  # () the pre-clip global grad norm _clip_grad_norm returned (the params' dtype)
    batch_size: int  # windows in the step's batch (the last of an epoch may be short)
    epoch: int  # 0-based: on_epoch_begin calls before this step, less one
    logged_loss: float | None  # on_log's "loss" for this step (logging_steps=1), else None
    logged_grad_norm: float | None  # on_log's "grad_norm" for this step (logging_steps=1), else None


class RecordSteps(TrainerCallback):
    """Every step's E, W, loss and pre-clip grad norm, as the Trainer computed them.

    No callback event hands over the loss tensor or the grad norm tensor (transformers 5.x:
    on_pre_optimizer_step gets neither; on_log gets `loss` and `grad_norm` as Python floats,
    and only every `logging_steps` steps, the loss averaged over them). So `attach` wraps two
    methods of the Trainer instance, calling the originals unchanged and keeping copies of what
    they return:
    - `compute_loss` (the notebooks' override): the () float32 loss the model computed, the
      tensor `training_step` backpropagates (it divides by the gradient accumulation steps
      only when the loss is not already scaled for them; here that count is 1, and x / 1 is x
      to the bit).
    - `_clip_grad_norm` (Trainer internal): what `accelerator.clip_grad_norm_` ->
      `torch.nn.utils.clip_grad_norm_` returned, the pre-clip norm the Trainer logs as
      `grad_norm`. Its name is transformers', not public API (5.23): should a release rename
      it or stop calling it, `attach` or `on_step_end` fails; nothing passes unrecorded.
    With logging_steps=1, `on_log` gives each step's logged loss and grad norm too (the loss
    added to a zeroed float32 accumulator and divided by 1 step, then `.item()`: exact, as
    `.item()` of a float32 or bf16 value is): `check` holds the captured tensors to them, so
    the tensors kept are the ones the Trainer reported.
    """

    def __init__(self):
        self.steps: list[TrainerStep] = []
        self._losses: list[torch.Tensor] = []
        self._batch_sizes: list[int] = []
        self._grad_norms: list[torch.Tensor] = []
        self._epoch = -1
        self._logs: list[tuple[int, float, float | None]] = []  # (global_step, loss, grad_norm)

    def attach(self, trainer: Trainer) -> None:
        compute_loss, clip_grad_norm = trainer.compute_loss, trainer._clip_grad_norm

        def recording_compute_loss(model, inputs, return_outputs=False, num_items_in_batch=None):
            result = compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            loss = result[0] if return_outputs else result
            self._losses.append(loss.detach().cpu().clone())
            self._batch_sizes.append(int(inputs["input_ids"].shape[0]))
            return result

        def recording_clip_grad_norm(model):
            grad_norm = clip_grad_norm(model)
            self._grad_norms.append(grad_norm.detach().cpu().clone())
            return grad_norm

        trainer.compute_loss = recording_compute_loss
        trainer._clip_grad_norm = recording_clip_grad_norm

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch += 1

    def on_step_end(self, args, state, control, model=None, **kwargs):
        n = len(self.steps)
        assert len(self._losses) == len(self._grad_norms) == n + 1, (
            f"step {n + 1}: {len(self._losses) - n} compute_loss and {len(self._grad_norms) - n} _clip_grad_norm "
            "calls recorded, not one each (was the recorder attached? max_grad_norm > 0? one micro-batch a step?)")
        e, w = model.transformer.wte.weight.detach(), model.lm_head.weight.detach()
        self.steps.append(TrainerStep(e.cpu().clone(), w.cpu().clone(), self._losses[n], self._grad_norms[n],
                                      self._batch_sizes[n], self._epoch, None, None))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:  # a training log (not the end-of-training summary)
            self._logs.append((state.global_step, logs["loss"], logs.get("grad_norm")))
            step = self.steps[state.global_step - 1]
            step.logged_loss, step.logged_grad_norm = logs["loss"], logs.get("grad_norm")

    def check(self, steps: int, logged_every_step: bool) -> None:
        """The recording is whole: one of each per step, and (logging_steps=1) each as logged."""
        assert len(self.steps) == steps, f"{len(self.steps)} steps recorded, the Trainer was to run {steps}"
        if not logged_every_step:
            return
        assert [s for s, _, _ in self._logs] == list(range(1, steps + 1)), f"logged at steps {self._logs}"
        for i, step in enumerate(self.steps, start=1):
            assert step.logged_loss == step.loss.item(), \
                f"step {i}: the Trainer logged loss {step.logged_loss!r}, compute_loss returned {step.loss.item()!r}"
            assert step.logged_grad_norm == step.grad_norm.item(), \
                f"step {i}: the Trainer logged grad_norm {step.logged_grad_norm!r}, " \
                f"_clip_grad_norm returned {step.grad_norm.item()!r}"


@dataclass
class SeedRun:
    """The knobs the notebooks set (1.20a cell 1, 1.20b for untied); the rest are Trainer defaults."""

    vocab_size: int = 10_000
    tied: bool = True
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # Trainer default
    logging_steps: int = 50  # notebooks: 50; 1 logs every step's loss and grad norm (no effect on the bits)
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


def notebook_trainer(ids: torch.Tensor, run: SeedRun, output_dir: str | Path,
                     recorder: RecordEW | RecordSteps | None = None) -> Trainer:
    """A Trainer over `ids` (1-D int64) as notebook 1.20a built it; `.train()` runs `run.steps` steps.

    A `RecordSteps` recorder is attached to the Trainer too (it wraps two of its methods)."""
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
        logging_steps=run.logging_steps,
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
    trainer = NotebookTrainer(model=model, args=args, train_dataset=TokenDataset(ids, run.seq_len), callbacks=callbacks)
    if isinstance(recorder, RecordSteps):
        recorder.attach(trainer)
    return trainer
