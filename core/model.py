"""Tiny GPT-2 (Flannel / Thimble shape) from transformers, in bfloat16, seeded as the notebooks.

Initialisation order, as notebooks 1.20a/b ran it:
  1. torch.manual_seed(weights_seed, default seed); build GPT2LMHeadModel (GPT-2's own init for every weight);
     cast the whole model to bfloat16.
  2. torch.manual_seed(seed) again; draw randn(vocab, dim) in float32, multiply by `std`,
     cast to bfloat16; copy into E (wte). Untied runs copy the same matrix into W
     (lm_head) too, unless `untied_init = "independent"` draws W as the next randn.

The draw always happens on the CPU generator, so the initial weights are the same on
every device (the notebooks drew on MPS, whose stream cannot be reproduced elsewhere).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

log = logging.getLogger(__name__)

UNTIED_INITS = ("copy", "independent")


@dataclass
class ModelConfig:
    vocab_size: int = 10_000  # Flannel tokenizer: 10k char-level BPE
    n_positions: int = 128  # notebooks: n_positions = MAX_SEQ_LEN
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 2
    tied: bool = True  # Flannel 1 / Thimble: tied; Flannel 2: untied


@dataclass
class InitConfig:
    seed: int = 42  # notebooks: RANDOM_SEED = 42 (INIT_SEED in 1.20h): seeds the embedding draw
    std: float = 0.02  # notebooks: INIT_SCALE = 0.02
    weights_seed: int = -1  # seeds GPT-2's own init of the other weights; -1 = `seed` (1.20h: BASE_TRAIN_SEED)
    untied_init: str = "copy"  # untied runs: W starts as a copy of E ("copy") or its own draw


def build_model(cfg: ModelConfig, init: InitConfig, device: torch.device | str = "cpu") -> GPT2LMHeadModel:
    """A bf16 GPT-2 with the notebooks' embedding init, on `device`."""
    if cfg.n_embd % cfg.n_head:
        raise ValueError(f"n_embd {cfg.n_embd} is not divisible by n_head {cfg.n_head}.")
    if init.untied_init not in UNTIED_INITS:
        raise ValueError(f"Unknown untied_init {init.untied_init!r}. Available: {', '.join(UNTIED_INITS)}.")
    config = GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=cfg.tied,
        bos_token_id=None,  # GPT-2's 50256 lies outside a 10k vocab; no generation here
        eos_token_id=None,
    )
    torch.manual_seed(init.seed if init.weights_seed < 0 else init.weights_seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # GPT2Config chatter about unused loss_type etc.
    try:
        model = GPT2LMHeadModel(config)
    finally:
        hf_logging.set_verbosity(verbosity)
    model = model.to(torch.bfloat16)

    torch.manual_seed(init.seed)
    shape = (cfg.vocab_size, cfg.n_embd)
    e_init = (torch.randn(shape, dtype=torch.float32) * init.std).to(torch.bfloat16)  # (V, D)
    with torch.no_grad():
        embedding(model).copy_(e_init)
        if not cfg.tied:
            if init.untied_init == "copy":
                w_init = e_init
            else:
                w_init = (torch.randn(shape, dtype=torch.float32) * init.std).to(torch.bfloat16)
            unembedding(model).copy_(w_init)
    model.train()
    return model.to(device)


def embedding(model: GPT2LMHeadModel) -> nn.Parameter:
    """E: the input embedding, (vocab, dim)."""
    return model.transformer.wte.weight


def unembedding(model: GPT2LMHeadModel) -> nn.Parameter:
    """W: the output (unembedding) matrix, (vocab, dim); the same tensor as E when tied."""
    return model.lm_head.weight


def is_tied(model: GPT2LMHeadModel) -> bool:
    return embedding(model) is unembedding(model)
