"""Scenario files: loading, inheritance, scales, overrides, and malformed files."""

from __future__ import annotations

import pytest

from core.optim import OptimConfig
from harness.scenario.load import load_scenario
from harness.scenario.schema import ScenarioError
from harness.scenario.cli import PROJECT_SCENARIOS


def test_seed_scenarios_load_at_every_scale():
    for name in ("flannel_1", "flannel_2", "flannel_7", "thimble_7"):
        full = load_scenario(PROJECT_SCENARIOS / f"{name}.toml")
        smoke = load_scenario(PROJECT_SCENARIOS / f"{name}.toml", scale="smoke")
        assert full.scales == ["full", "smoke"]
        assert smoke.train.steps < full.train.steps
        assert (smoke.model, smoke.optimizer, smoke.data) == (full.model, full.optimizer, full.data)


def test_seed_scenarios_state_the_notebooks_settings():
    f1 = load_scenario(PROJECT_SCENARIOS / "flannel_1.toml")
    assert f1.model.tied and f1.train.steps == 1000 and f1.optimizer.lr == 1e-3 and f1.optimizer.weight_decay == 0
    assert (f1.data.batch_size, f1.data.seq_len, f1.data.target_offset) == (32, 128, 2)
    assert f1.optimizer.max_grad_norm == 1.0 and f1.optimizer.schedule == "linear"
    f2 = load_scenario(PROJECT_SCENARIOS / "flannel_2.toml")
    assert not f2.model.tied and f2.train.steps == 1000 and {"E", "W"} <= set(f2.record.tensors)
    assert f2.optimizer == f1.optimizer and f2.data == f1.data  # inherited
    f7 = load_scenario(PROJECT_SCENARIOS / "flannel_7.toml")
    assert f7.train.steps == 500 and f7.record.tensors == ["W", "grad_W", "loss"]
    t7 = load_scenario(PROJECT_SCENARIOS / "thimble_7.toml")
    assert t7.optimizer == OptimConfig(lr=3e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
    assert t7.model.tied and t7.train.steps == 6000 and t7.record.every == 1


def test_child_replaces_expectations_and_merges_tables(write_scenario):
    parent = write_scenario('\n[[expect]]\ncheck = "finite"\ntensor = "W"\n', name="parent")
    child = parent.with_name("child.toml")
    child.write_text('name = "child"\nextends = "parent.toml"\n[optimizer]\nlr = 0.5\n'
                     '[[expect]]\ncheck = "equal"\na = "E"\nb = "W"\n')
    s = load_scenario(child)
    assert s.name == "child" and s.optimizer.lr == 0.5 and s.model.vocab_size == 800
    assert [e.check for e in s.expect] == ["equal"]


def test_overrides_name_existing_keys_with_the_right_type(write_scenario):
    path = write_scenario()
    s = load_scenario(path, overrides=["train.steps=7", "optimizer.lr=0.01", "record.every=2", "model.tied=true"])
    assert (s.train.steps, s.optimizer.lr, s.record.every, s.model.tied) == (7, 0.01, 2, True)
    assert load_scenario(path, overrides=["train.device=cpu"]).train.device == "cpu"  # bare word -> string
    assert load_scenario(path, scale="smoke", overrides=["train.steps=9"]).train.steps == 9  # --set beats the scale


MALFORMED = {
    "unknown-section-key": ('\n[optimizer]\nlearnin_rate = 0.1\n', r"unknown key optimizer.learnin_rate. Allowed in \[optimizer\]: lr, beta1"),
    "wrong-type-int": ('\n[init]\nseed = "forty-two"\n', r"init.seed = 'forty-two' has the wrong type: expected int"),
    "wrong-type-bool": ('\n[init]\nstd = true\n', r"init.std = True has the wrong type: expected float"),
    "wrong-type-list": ('\n[optimizer]\nlr = [1, 2]\n', r"optimizer.lr = \[1, 2\] has the wrong type"),
    "section-not-table": ('\n[init]\n[init.seed]\n', r"init.seed = \{\} has the wrong type"),
    "negative-lr": ('\n[optimizer]\nlr = -0.1\n', r"optimizer.lr = -0.1: must be > 0"),
    "beta-one": ('\n[optimizer]\nbeta2 = 1.0\n', r"optimizer.beta2 = 1.0: must lie in \[0, 1\)"),
    "unknown-schedule": ('\n[optimizer]\nschedule = "cosine"\n', "optimizer.schedule = 'cosine': allowed: linear, constant"),
    "unknown-check": ('\n[[expect]]\ncheck = "teleports"\n', "expect\\[0\\]: Unknown check 'teleports'. Available: .*decay_below_ulp_noop"),
    "missing-check": ('\n[[expect]]\ntensor = "E"\n', r"expect\[0\]: missing 'check'. Available:"),
    "unknown-check-argument": ('\n[[expect]]\ncheck = "finite"\ntensr = "E"\n', r"expect\[0\] \(finite\): unknown argument 'tensr'. Allowed: tensor"),
    "bad-token-set": ('\n[[expect]]\ncheck = "zero_displacement"\ntokens = "undead"\n', r"tokens = 'undead': expected one of dead, live, all"),
    "token-id-past-vocab": ('\n[[expect]]\ncheck = "zero_displacement"\ntokens = [1, 900]\n', "a list of token ids below 800"),
    "unrecorded-tensor": ('\n[[expect]]\ncheck = "finite"\ntensor = "exp_avg_W"\n', r"tensor = 'exp_avg_W' is not recorded; add it to record.tensors"),
    "wrong-arg-type": ('\n[[expect]]\ncheck = "equal"\nstep = "zero"\n', r"step = 'zero': expected an integer"),
    "xfail-not-string": ('\n[[expect]]\ncheck = "finite"\nxfail = true\n', "xfail must be a string"),
    "bad-scale-value": ('\n[[expect]]\ncheck = "finite"\nscales = ["huge"]\n', r"scales = \['huge'\]: allowed values \['full', 'smoke'\]"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_scenario_names_file_and_key(write_scenario, case):
    extra, message = MALFORMED[case]
    path = write_scenario(extra)
    with pytest.raises(ScenarioError, match=message) as info:
        load_scenario(path)
    assert str(path) in str(info.value)


REPLACED = {  # malformed by editing the base text rather than appending to it
    "unknown-top-level-key": (("version = 1", "version = 1\nlearning_rate = 1"), "unknown key 'learning_rate'. Allowed top-level keys: name"),
    "bad-key-in-a-scale": (("train.steps = 3", "train.stepz = 3"), r"scale.smoke: unknown key train.stepz. Allowed in \[train\]"),
    "steps-zero": (("steps = 4", "steps = 0"), r"train.steps = 0: must be >= 1"),
    "target-offset-zero": (("batch_size = 4", "batch_size = 4\ntarget_offset = 0"), r"data.target_offset = 0: must be in 1..seq_len \(32\)"),
    "seq-past-positions": (("seq_len = 32", "seq_len = 64"), r"data.seq_len = 64: exceeds model.n_positions = 32"),
    "unknown-device": (('device = "cpu"', 'device = "tpu"'), r"train.device = 'tpu': allowed: auto, cpu, cuda, mps"),
    "unknown-logits-matmul": (('device = "cpu"', 'device = "cpu"\nlogits_matmul = "fp16"'),
                              r"train.logits_matmul = 'fp16': allowed: bf16, fp32"),
    "unknown-matmul": (('device = "cpu"', 'device = "cpu"\nmatmul = "tf32"'), r"train.matmul = 'tf32': allowed: bf16, fp32"),
    "unknown-tensor": (('"grad_W", "loss"', '"grad_W", "V"'), r"record.tensors = 'V': unknown tensor. Allowed: E, W"),
    "heads-do-not-divide": (("n_positions = 32", "n_positions = 32\nn_head = 5"), r"model.n_head = 5: must divide model.n_embd = 64"),
    "bad-name": (('name = "tiny"', 'name = "tiny run/1"'), r"name = 'tiny run/1': use letters, digits"),
    "not-toml": (("[model]", "[model"), "not valid TOML"),
    "duplicate-tensor": (('"grad_W", "loss"', '"grad_W", "W"'), "lists a tensor twice"),
    "unknown-compression": (('"grad_W", "loss"]', '"grad_W", "loss"]\ncompression = "gzip"'),
                            r"record.compression = 'gzip': allowed: none, zstd, delta-zstd"),
    "keyframes-zero": (('"grad_W", "loss"]', '"grad_W", "loss"]\nkeyframe_every = 0'), r"record.keyframe_every = 0: must be >= 1"),
}


@pytest.mark.parametrize("case", list(REPLACED))
def test_malformed_scenario_edits(write_scenario, case):
    (old, new), message = REPLACED[case]
    path = write_scenario()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ScenarioError, match=message) as info:
        load_scenario(path)
    assert str(path) in str(info.value)


def test_missing_file_and_missing_parent(tmp_path):
    with pytest.raises(ScenarioError, match="Scenario file not found: .*nope.toml"):
        load_scenario(tmp_path / "nope.toml")
    child = tmp_path / "child.toml"
    child.write_text('name = "c"\nextends = "ghost.toml"\n')
    with pytest.raises(ScenarioError, match=r"child.toml: extends = 'ghost.toml': no such file"):
        load_scenario(child)


def test_extends_cycle_is_an_error(tmp_path):
    (tmp_path / "a.toml").write_text('name = "a"\nextends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('name = "b"\nextends = "a.toml"\n')
    with pytest.raises(ScenarioError, match="extends forms a cycle: a.toml -> b.toml -> a.toml"):
        load_scenario(tmp_path / "a.toml")


def test_unknown_scale_lists_the_available_ones(write_scenario):
    with pytest.raises(ScenarioError, match="no scale 'huge'. Available: full, smoke"):
        load_scenario(write_scenario(), scale="huge")


def test_scale_overrides_must_name_sections(write_scenario):
    path = write_scenario('\n[scale.tiny]\noptimiser.lr = 1.0\n')
    with pytest.raises(ScenarioError, match="scale.tiny.optimiser: unknown section"):
        load_scenario(path, scale="tiny")


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.stepz=3", r"unknown key train.stepz. Allowed in \[train\]: steps, device"),
        ("train.steps=3.5", r"train.steps = 3.5 has the wrong type: expected int"),
        ("trainer.steps=3", "unknown section 'trainer'"),
        ("steps=3", "the key must be section.key"),
        ("train.steps", "expected section.key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(write_scenario, override, message):
    with pytest.raises(ScenarioError, match=message):
        load_scenario(write_scenario(), overrides=[override])


def test_relative_data_paths_resolve_against_the_scenario_file(tmp_path, tiny_data):
    import shutil

    folder = tmp_path / "exp"
    folder.mkdir()
    shutil.copy(tiny_data[0], folder / "tok.json")
    (folder / "s.toml").write_text('name = "s"\n[data]\ntokenizer = "tok.json"\n')
    assert load_scenario(folder / "s.toml").data.tokenizer == str((folder / "tok.json").resolve())


@pytest.mark.parametrize("override, says", [
    ("optimizer.lr=nan", "optimizer.lr = nan: must be a finite number"),
    ("optimizer.lr=inf", "optimizer.lr = inf: must be a finite number"),
    ("optimizer.beta2=-inf", "optimizer.beta2 = -inf: must be a finite number"),
    ("optimizer.max_grad_norm=-1.0", "optimizer.max_grad_norm = -1.0: must be >= 0"),
    ("train.steps=0", "train.steps = 0: must be >= 1"),
])
def test_impossible_numbers_are_validation_errors_that_name_the_override(write_scenario, override, says):
    path = write_scenario()
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path, overrides=[override])
    assert str(caught.value) == f"{path}: {says} (set by --set {override})"
