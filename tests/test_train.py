"""core.train / model / optim: determinism, untied invariants, bf16 facts, bad input."""

from __future__ import annotations

import re

import pytest
import torch

from core.data import DataConfig
from core.device import resolve_device
from core.model import InitConfig, ModelConfig, build_model, embedding, unembedding
from core.optim import OptimConfig, build_optimizer, clip_gradients, describe_groups, lr_factor, set_lr
from core.step import REFERENCE, forward_backward, train_step
from core.train import Training, TrainConfig

SMALL = dict(vocab_size=1000)


def small_training(ids, tied=True, steps=4, **optim) -> Training:
    return Training(
        ids,
        ModelConfig(**SMALL, tied=tied),
        InitConfig(),
        DataConfig(seq_len=64, batch_size=8),
        OptimConfig(**optim),
        TrainConfig(steps=steps, device="cpu"),
    )


def test_same_config_twice_gives_bit_identical_weights(random_ids):
    a, b = small_training(random_ids), small_training(random_ids)
    for _ in range(4):
        la, lb = a.step().loss, b.step().loss
        assert torch.equal(la, lb)
    for (name, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.tensor("W"), small_training(random_ids).tensor("W")), "training moved W"


def test_untied_starts_with_e_equal_w_and_independent_option_differs():
    model = build_model(ModelConfig(**SMALL, tied=False), InitConfig())
    assert embedding(model) is not unembedding(model)
    assert torch.equal(embedding(model), unembedding(model))
    independent = build_model(ModelConfig(**SMALL, tied=False), InitConfig(untied_init="independent"))
    assert torch.equal(embedding(independent), embedding(model))
    assert not torch.equal(unembedding(independent), embedding(independent))


def test_tied_model_shares_one_tensor():
    model = build_model(ModelConfig(**SMALL, tied=True), InitConfig())
    assert embedding(model) is unembedding(model)
    assert model.transformer.wte.weight.dtype == torch.bfloat16


def test_embedding_init_is_seeded_normal_in_bf16():
    e = embedding(build_model(ModelConfig(**SMALL), InitConfig(seed=7, std=0.02)))
    assert e.std().item() == pytest.approx(0.02, rel=0.05)
    other = embedding(build_model(ModelConfig(**SMALL), InitConfig(seed=8, std=0.02)))
    assert not torch.equal(e, other)


def test_untied_rows_of_absent_tokens_get_zero_gradient_and_never_move(random_ids):
    t = small_training(random_ids, tied=False, steps=5)
    e0, w0 = t.tensor("E").clone(), t.tensor("W").clone()
    seen = torch.zeros(1000, dtype=torch.bool)
    for step in range(5):
        inputs, _ = t.batches[step]
        seen[inputs.unique()] = True
        result = t.step(capture_grads=("grad_E", "grad_W"))
        absent = ~seen
        assert absent.sum() > 300, "ids 700..999 never occur, and most others are absent from 5 small batches"
        assert (result.grads["grad_E"][absent] == 0).all()
        assert (result.grads["grad_E"][seen].abs().sum(dim=1) > 0).any()
    e, w = t.tensor("E"), t.tensor("W")
    assert torch.equal(e[~seen], e0[~seen]), "rows of E for absent tokens moved"
    assert not torch.equal(w[~seen], w0[~seen]), "W rows of absent tokens do move (softmax gradient)"
    assert (t.tensor("exp_avg_E")[~seen] == 0).all() and (t.tensor("exp_avg_sq_E")[~seen] == 0).all()


def test_decay_below_half_ulp_is_rounded_away_in_bf16(random_ids):
    # Thimble's AdamW: lr 3e-4 x wd 0.1 = 3e-5 < 2^-9, so p * (1 - lr*wd) rounds back to p.
    t = small_training(random_ids, tied=False, steps=3, lr=3e-4, weight_decay=0.1)
    e0 = t.tensor("E").clone()
    for _ in range(3):
        t.step()
    dead = torch.arange(700, 1000)
    assert torch.equal(t.tensor("E")[dead], e0[dead])
    # Above the threshold the same rows do shrink: the test can tell the two apart.
    big = small_training(random_ids, tied=False, steps=3, lr=0.05, weight_decay=0.5)
    for _ in range(3):
        big.step()
    assert (big.tensor("E")[dead].float().abs().sum() < e0[dead].float().abs().sum()).item()


def test_zero_gradient_row_keeps_zero_moments_and_does_not_move():
    p = torch.nn.Parameter(torch.randn(4, 8).to(torch.bfloat16))
    model = torch.nn.Module()
    model.p = p
    opt = build_optimizer(model, OptimConfig(lr=1e-3))
    before = p.detach().clone()
    for _ in range(3):
        p.grad = torch.zeros_like(p)
        p.grad[0] = 1.0
        opt.step()
    state = opt.state[p]
    assert state["exp_avg"].dtype == torch.bfloat16 == state["exp_avg_sq"].dtype
    assert (state["exp_avg"][1:] == 0).all() and (state["exp_avg_sq"][1:] == 0).all()
    assert torch.equal(p[1:], before[1:])
    assert not torch.equal(p[0], before[0])


def test_decay_groups_exempt_biases_and_layernorms():
    model = build_model(ModelConfig(**SMALL), InitConfig())
    opt = build_optimizer(model, OptimConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(p is embedding(model) for p in decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("ln_" in names[id(p)] or "bias" in names[id(p)] for p in no_decay["params"])
    exempt = {n for n, p in model.named_parameters() if n.endswith("bias") or ".ln_" in n}
    assert {"transformer.h.0.attn.c_attn.bias", "transformer.ln_f.weight"} <= exempt  # every bias, every LayerNorm
    assert {names[id(p)] for p in no_decay["params"]} == exempt
    assert {names[id(p)] for p in decay["params"]} == set(names.values()) - exempt


@pytest.mark.parametrize("root", [torch.nn.Linear(4, 4), torch.nn.LayerNorm(4)], ids=["linear", "layernorm"])
def test_a_bias_or_layernorm_at_the_model_root_is_exempt_from_decay_too(root):
    decay, no_decay = build_optimizer(root, OptimConfig(weight_decay=0.1)).param_groups
    exempt = {id(p) for p in no_decay["params"]}
    assert id(root.bias) in exempt and not any(p is root.bias for p in decay["params"])
    assert (id(root.weight) in exempt) == isinstance(root, torch.nn.LayerNorm)


def test_set_lr_changes_every_group_lr():
    model = build_model(ModelConfig(**SMALL), InitConfig())
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3, weight_decay=0.1))
    set_lr(optimizer, 0.25)
    assert [group["lr"] for group in optimizer.param_groups] == [0.25, 0.25]


def test_the_boundary_optimizer_settings_are_valid():
    # beta 0 (no moment averaging), max_grad_norm 0 (no clipping), no decay, the smallest positive lr and eps
    cfg = OptimConfig(lr=1e-30, eps=1e-30, beta1=0.0, beta2=0.0, weight_decay=0.0, max_grad_norm=0.0)
    optimizer = build_optimizer(torch.nn.Linear(3, 2), cfg)
    assert [(g["lr"], g["eps"], g["betas"]) for g in optimizer.param_groups] == [(1e-30, 1e-30, (0.0, 0.0))] * 2


@pytest.mark.parametrize("setting, value, rule", [
    ("lr", 0.0, "> 0"), ("lr", float("nan"), "> 0"), ("eps", 0.0, "> 0"), ("weight_decay", -0.1, ">= 0"),
    ("weight_decay", float("nan"), ">= 0"), ("max_grad_norm", -1.0, ">= 0")])
def test_an_impossible_optimizer_setting_is_an_error_naming_it_and_its_value(setting, value, rule):
    with pytest.raises(ValueError, match=rf"^optimizer {setting} must be {re.escape(rule)}, got {value}\.$"):
        build_optimizer(torch.nn.Linear(3, 2), OptimConfig(**{setting: value}))


@pytest.mark.parametrize("beta1, beta2", [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.999), (0.9, -0.1)])
def test_a_beta_outside_zero_one_is_an_error_naming_both(beta1, beta2):
    with pytest.raises(ValueError, match=rf"^beta1 and beta2 must lie in \[0, 1\), got {beta1}, {beta2}\.$"):
        build_optimizer(torch.nn.Linear(3, 2), OptimConfig(beta1=beta1, beta2=beta2))


def test_linear_schedule_decays_to_zero_without_warmup():
    assert lr_factor(0, 1000, "linear") == 1.0
    assert lr_factor(500, 1000, "linear") == 0.5
    assert lr_factor(1000, 1000, "linear") == 0.0
    assert lr_factor(999, 1000, "constant") == 1.0
    assert (lr_factor(0, 1, "linear"), lr_factor(1, 1, "linear")) == (1.0, 0.0)  # a one-step run uses the full lr


def test_clipping_caps_the_global_grad_norm_and_reports_the_pre_clip_norm():
    model = torch.nn.Linear(8, 8).to(torch.bfloat16)
    model(torch.randn(4, 8).to(torch.bfloat16)).float().pow(2).sum().mul(100).backward()
    pre = torch.linalg.vector_norm(torch.cat([p.grad.float().flatten() for p in model.parameters()]))
    assert pre > 1.0
    reported = clip_gradients(model, max_grad_norm=1.0)
    post = torch.linalg.vector_norm(torch.cat([p.grad.float().flatten() for p in model.parameters()]))
    assert reported.float().item() == pytest.approx(pre.item(), rel=1e-2)
    assert post.item() == pytest.approx(1.0, rel=1e-2)
    before = [p.grad.clone() for p in model.parameters()]
    unclipped = clip_gradients(model, max_grad_norm=0.0)  # 0 = off: grads untouched
    assert unclipped.float().item() == pytest.approx(post.item(), rel=1e-2)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before)), "max_grad_norm 0 clipped"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(data=DataConfig(seq_len=256)), ValueError, "seq_len 256 exceeds the model's n_positions 128"),
        (dict(data=DataConfig(target_offset=0)), ValueError, "target_offset must be >= 1"),
        (dict(train=TrainConfig(device="tpu")), ValueError, "Unknown device 'tpu'. Available: auto, cpu, cuda, mps"),
        (dict(train=TrainConfig(steps=0)), ValueError, "steps must be >= 1"),
        (dict(optim=OptimConfig(schedule="cosine")), ValueError, "Unknown schedule 'cosine'. Available: linear, constant\\.$"),
        (dict(model=ModelConfig(vocab_size=500)), ValueError, "token id 699, outside the model's vocab of 500"),
    ],
    ids=["seq-len-past-positions", "offset-zero", "unknown-device", "no-steps", "unknown-schedule", "id-past-vocab"],
)
def test_bad_config_is_a_clear_error(random_ids, kwargs, error, message):
    with pytest.raises(error, match=message):
        Training(
            random_ids,
            kwargs.get("model", ModelConfig(**SMALL)),
            InitConfig(),
            kwargs.get("data", DataConfig()),
            kwargs.get("optim", OptimConfig()),
            kwargs.get("train", TrainConfig(device="cpu")),
        )


def test_empty_and_short_corpora_are_clear_errors():
    with pytest.raises(ValueError, match="no tokens"):
        Training(torch.tensor([], dtype=torch.long), ModelConfig(**SMALL), train_cfg=TrainConfig(device="cpu"))
    with pytest.raises(ValueError, match="fewer than one window"):
        Training(torch.arange(50), ModelConfig(**SMALL), train_cfg=TrainConfig(device="cpu"))


def test_unavailable_device_is_an_error_not_a_fallback():
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")


def test_running_past_the_configured_steps_is_an_error(random_ids):
    t = small_training(random_ids, steps=1)
    t.step()
    with pytest.raises(RuntimeError, match="1 of 1 steps done"):
        t.step()



def test_describe_groups_reads_each_group_as_the_live_optimizer_holds_it():
    model = build_model(ModelConfig(**SMALL, tied=True), InitConfig())
    optimizer = build_optimizer(model, OptimConfig(lr=3e-4, weight_decay=0.1, beta1=0.8, beta2=0.99, eps=1e-6))
    optimizer.param_groups[0]["lr"] = 0.5  # as a schedule sets it: what the optimizer holds is what is described
    decay, exempt = describe_groups(model, optimizer)
    assert (decay["lr"], decay["weight_decay"], decay["betas"], decay["eps"]) == (0.5, 0.1, [0.8, 0.99], 1e-6)
    assert (exempt["lr"], exempt["weight_decay"]) == (3e-4, 0.0)
    assert {"transformer.wte.weight", "lm_head.weight"} <= set(decay["params"])  # tied: the one parameter, both names
    assert exempt["params"] and all(n.endswith("bias") or ".ln_" in n for n in exempt["params"])
    named = sorted(n for n, _ in model.named_parameters(remove_duplicate=False))
    assert sorted(decay["params"] + exempt["params"]) == named
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": 0.3})
    assert describe_groups(model, optimizer)[2]["params"] == ["?"]  # a parameter the model does not hold


def test_the_reference_step_names_itself_in_what_it_records():
    assert REFERENCE.describe() == {"kernels": "reference"} and REFERENCE.name == "reference"


def step_inputs(vocab: int = 1000, batch: int = 3, seq: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) random ids and their next-token targets: every sequence differs from every other."""
    ids = torch.randint(0, vocab, (batch, seq + 1), generator=torch.Generator().manual_seed(5))
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


def test_the_captured_logits_row_is_sequence_0_last_position_and_only_when_asked():
    model = build_model(ModelConfig(**SMALL), InitConfig())
    inputs, targets = step_inputs()
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = model(input_ids=inputs).logits  # (B, T, V) bf16
    assert not torch.equal(logits[0, -1], logits[1, -1]) and not torch.equal(logits[0, -1], logits[0, -2])
    captured = forward_backward(model, inputs, targets, 1.0, capture_logits=True).logits_row
    assert torch.equal(captured, logits[0, -1])  # as the notebooks sampled: sequence 0, last position
    assert REFERENCE.forward_backward(model, inputs, targets, 1.0, capture_logits=True).logits_row is not None
    # by default a step captures no logits (a (V,) copy per step costs time and file space)
    assert forward_backward(model, inputs, targets, 1.0).logits_row is None
    assert forward_backward(model, inputs, targets, 1.0, capture_logits=False).logits_row is None
    assert REFERENCE.forward_backward(model, inputs, targets, 1.0).logits_row is None


def test_an_untied_run_captures_w_gradient_as_grad_w_not_e_gradient():
    model = build_model(ModelConfig(**SMALL, tied=False), InitConfig())
    inputs, targets = step_inputs()
    grads = forward_backward(model, inputs, targets, 0.0, capture_grads=("grad_E", "grad_W")).grads
    assert torch.equal(grads["grad_W"], unembedding(model).grad) and torch.equal(grads["grad_E"], embedding(model).grad)
    absent = torch.ones(1000, dtype=torch.bool)
    absent[inputs.unique()] = False
    assert (grads["grad_E"][absent] == 0).all() and (grads["grad_W"][absent] != 0).any()  # W's softmax gradient


def test_the_step_runs_bf16_autocast_whatever_the_process_default():
    """On CUDA autocast defaults to float16: the step must ask for bf16, not inherit the default."""
    model = build_model(ModelConfig(**SMALL), InitConfig())
    inputs, targets = step_inputs()
    default = torch.get_autocast_dtype("cpu")
    torch.set_autocast_dtype("cpu", torch.float16)
    try:
        row = forward_backward(model, inputs, targets, 1.0, capture_logits=True).logits_row
    finally:
        torch.set_autocast_dtype("cpu", default)
    assert row.dtype == torch.bfloat16


def test_a_train_step_leaves_no_gradient_and_no_logits_by_default():
    model = build_model(ModelConfig(**SMALL), InitConfig())
    optimizer = build_optimizer(model, OptimConfig())
    inputs, targets = step_inputs()
    result = train_step(model, optimizer, inputs, targets, lr=0.5e-3, max_grad_norm=1.0, step=1)
    assert result.logits_row is None and result.lr == 0.5e-3
    assert all(p.grad is None for p in model.parameters()), "gradients set to None, as the Trainer's zero_grad"
