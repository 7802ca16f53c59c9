"""Parity with the seeds' method: transformers' Trainer as notebook 1.20a ran it vs the core.

The Trainer side is written the way the notebooks wrote it (their TokenDataset, their
GPT2Config, their init cells, their compute_loss override, TrainingArguments with
bf16=True and optim="adamw_torch", Trainer defaults for clipping and schedule), with
the Trainer's own random sampler: nothing of the core is handed to it. Every step's E
and W must be bit-identical. A smaller vocab than Flannel's keeps the test fast on a
CPU without bf16 matrix units; every other setting is notebook 1.20a's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from core.data import DataConfig  # noqa: E402
from core.model import InitConfig, ModelConfig, build_model  # noqa: E402
from core.optim import OptimConfig  # noqa: E402
from core.train import Training, TrainConfig  # noqa: E402

VOCAB = 1000
STEPS = 6
SEED = 42


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
    def __init__(self):
        self.frames = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.frames.append(
            (model.transformer.wte.weight.detach().clone(), model.lm_head.weight.detach().clone())
        )


def notebook_model(tied: bool) -> GPT2LMHeadModel:
    """Cells 2, 8 and 9 of notebooks 1.20a (tied) / 1.20b (untied)."""
    torch.manual_seed(SEED)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=128, n_embd=64, n_layer=2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=tied,
    )
    model = GPT2LMHeadModel(config).to(torch.bfloat16)
    torch.manual_seed(SEED)
    init_bf16 = (torch.randn(VOCAB, 64, dtype=torch.float32) * 0.02).to(torch.bfloat16)
    with torch.no_grad():
        model.transformer.wte.weight[:] = init_bf16
        if not tied:
            model.lm_head.weight[:] = init_bf16
    return model


# (tied, learning_rate, weight_decay, max_grad_norm): Flannel 1, Flannel 2, and a Thimble-like
# run (AdamW lr 3e-4, wd 0.1) whose small max_grad_norm makes clipping act on every step.
CONFIGS = {
    "flannel1-tied": (True, 1e-3, 0.0, 1.0),
    "flannel2-untied": (False, 1e-3, 0.0, 1.0),
    "thimble-decay-clipped": (True, 3e-4, 0.1, 0.05),
}


def run_trainer(ids: torch.Tensor, config: str, tmp_path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    tied, lr, wd, max_grad_norm = CONFIGS[config]
    model = notebook_model(tied)
    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=STEPS,
        per_device_train_batch_size=32,
        learning_rate=lr,
        weight_decay=wd,
        max_grad_norm=max_grad_norm,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        optim="adamw_torch",
        logging_steps=50,
        save_strategy="no",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        bf16=True,
        seed=SEED,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    recorder = RecordEW()
    trainer = NotebookTrainer(model=model, args=args, train_dataset=TokenDataset(ids, 128), callbacks=[recorder])
    trainer.train()
    return recorder.frames


def run_core(ids: torch.Tensor, config: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    tied, lr, wd, max_grad_norm = CONFIGS[config]
    training = Training(
        ids,
        ModelConfig(vocab_size=VOCAB, tied=tied),
        InitConfig(seed=SEED, std=0.02),
        DataConfig(seq_len=128, batch_size=32, target_offset=2, seed=SEED),
        OptimConfig(lr=lr, weight_decay=wd, max_grad_norm=max_grad_norm, schedule="linear"),
        TrainConfig(steps=STEPS, device="cpu"),
    )
    frames = []
    for _ in range(STEPS):
        result = training.step()
        if max_grad_norm < 1.0:
            assert result.grad_norm > max_grad_norm, "clipping must act for this config to test it"
        frames.append((training.tensor("E").clone(), training.tensor("W").clone()))
    return frames


@pytest.fixture(scope="module")
def corpus_ids() -> torch.Tensor:
    # Ids below 700 only: the top 300 rows are dead, as Thai rows were in Flannel.
    rng = np.random.default_rng(0)
    return torch.tensor(rng.integers(0, 700, size=20_000), dtype=torch.long)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_core_init_equals_notebook_init(tied):
    ours = build_model(ModelConfig(vocab_size=VOCAB, tied=tied), InitConfig(seed=SEED, std=0.02))
    theirs = notebook_model(tied)
    ours_params, theirs_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert ours_params.keys() == theirs_params.keys()
    for name, p in theirs_params.items():
        assert p.dtype == torch.bfloat16
        assert torch.equal(ours_params[name], p), name


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_core_matches_trainer_bit_for_bit(corpus_ids, config, tmp_path):
    tied = CONFIGS[config][0]
    theirs = run_trainer(corpus_ids, config, tmp_path)
    ours = run_core(corpus_ids, config)
    assert len(theirs) == len(ours) == STEPS
    e0 = build_model(ModelConfig(vocab_size=VOCAB, tied=tied), InitConfig(seed=SEED)).transformer.wte.weight
    for step, ((e_t, w_t), (e_c, w_c)) in enumerate(zip(theirs, ours), start=1):
        assert torch.equal(e_t, e_c), f"E differs after step {step}: max |diff| {(e_t.float() - e_c.float()).abs().max()}"
        assert torch.equal(w_t, w_c), f"W differs after step {step}: max |diff| {(w_t.float() - w_c.float()).abs().max()}"
    assert not torch.equal(ours[-1][1], e0), "W never moved: the comparison would prove nothing"
