"""`python -m harness run|validate|list` on real files."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import torch

from core.trajectory import Trajectory
from harness.cli import main


def test_run_writes_out_scenario_h5_and_prints_verdicts(write_scenario, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    path = write_scenario('\n[[expect]]\ncheck = "zero_displacement"\ntensor = "E"\ntokens = "dead"\n')
    out = tmp_path / "out"
    code = main(["run", str(path), "--out", str(out), "--set", "train.steps=6", "--set", "record.every=2", "-q"])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"trajectory: {out / 'tiny.h5'}" in printed
    assert "PASS  tiny-dead-E-zero_displacement:" in printed
    with Trajectory(out / "tiny.h5") as traj:
        assert traj.steps.tolist() == [0, 2, 4, 6]
        assert traj.meta["scenario"]["train"]["steps"] == 6
    assert any("step      6/6 | loss" in r.getMessage() and "steps/s" in r.getMessage() for r in caplog.records)


def test_run_exits_nonzero_when_an_expectation_fails(write_scenario, tmp_path, capsys):
    path = write_scenario('\n[[expect]]\ncheck = "zero_displacement"\ntensor = "W"\ntokens = "dead"\n')
    assert main(["run", str(path), "--out", str(tmp_path), "--scale", "smoke", "-q"]) == 1
    assert "FAIL  tiny-dead-W-zero_displacement: expected W rows of dead tokens never to move" in capsys.readouterr().out


def test_run_refuses_to_overwrite_without_force(write_scenario, tmp_path, capsys):
    path = write_scenario()
    assert main(["run", str(path), "--out", str(tmp_path), "--scale", "smoke", "-q", "--no-check"]) == 0
    before = (tmp_path / "tiny.h5").read_bytes()
    assert main(["run", str(path), "--out", str(tmp_path), "--scale", "smoke", "-q"]) == 2
    assert "tiny.h5 already exists; refusing to overwrite it" in capsys.readouterr().err
    assert (tmp_path / "tiny.h5").read_bytes() == before
    assert main(["run", str(path), "--out", str(tmp_path), "--scale", "smoke", "-q", "--force", "--no-check"]) == 0


def test_bad_override_and_unknown_scenario_are_clear_errors(write_scenario, capsys):
    assert main(["run", str(write_scenario()), "--set", "train.stepz=1"]) == 2
    assert "unknown key train.stepz. Allowed in [train]: steps, device" in capsys.readouterr().err
    assert main(["run", "no_such_scenario"]) == 2
    err = capsys.readouterr().err
    assert "No scenario 'no_such_scenario': not a file, and not in scenarios/. Known: flannel_1" in err


def test_validate_reports_each_file(write_scenario, capsys):
    good = write_scenario()
    bad = write_scenario('\n[[expect]]\ncheck = "teleports"\n', name="bad")
    assert main(["validate", str(good.parent)]) == 1
    printed = capsys.readouterr().out
    assert f"ok    {good}: tiny (scales: full, smoke; 0 expectations)" in printed
    assert f"error {bad}: expect[0]: Unknown check 'teleports'. Available:" in printed
    assert main(["validate", str(good)]) == 0


def test_list_and_validate_the_project_scenarios(capsys):
    assert main(["validate", "scenarios"]) == 0
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    for name in ("flannel_1", "flannel_2", "flannel_7", "thimble_7"):
        assert name in printed


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "validate", "list", "data"):
        assert command in proc.stdout


def test_compressed_run_reads_and_checks_like_an_uncompressed_one(write_scenario, tmp_path, capsys):
    path = write_scenario('\n[[expect]]\ncheck = "zero_displacement"\ntensor = "E"\ntokens = "dead"\n'
                          '\n[[expect]]\ncheck = "nonzero_displacement"\ntensor = "W"\ntokens = "dead"\n'
                          '\n[[expect]]\ncheck = "equal"\na = "E"\nb = "W"\nstep = 0\n')
    verdicts = {}
    for compression in ("none", "delta-zstd"):
        code = main(["run", str(path), "--out", str(tmp_path / compression), "--scale", "smoke", "-q",
                     "--set", f"record.compression={compression}", "--set", "record.keyframe_every=2"])
        assert code == 0
        verdicts[compression] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("PASS")]
    assert len(verdicts["none"]) == 3 and verdicts["delta-zstd"] == verdicts["none"]
    with Trajectory(tmp_path / "none" / "tiny.h5") as plain, Trajectory(tmp_path / "delta-zstd" / "tiny.h5") as packed:
        assert packed.meta["compression"] == "delta-zstd" and plain.meta["compression"] == "none"
        for name in ("E", "W", "grad_E", "grad_W", "loss"):
            a, b = plain[name][:], packed[name][:]
            assert (torch.equal(a, b) if isinstance(a, torch.Tensor) else np.array_equal(a, b, equal_nan=True)), name


def test_compress_rewrites_a_run_bit_for_bit_and_back(write_scenario, tmp_path, capsys):
    path = write_scenario(tied=True, tensors='["W", "grad_W", "exp_avg_W", "exp_avg_sq_W", "logits", "loss"]')
    assert main(["run", str(path), "--out", str(tmp_path), "--scale", "smoke", "-q", "--no-check"]) == 0
    run = tmp_path / "tiny.h5"
    assert main(["compress", str(run), "--keyframe-every", "2", "-q"]) == 0
    packed = tmp_path / "tiny.delta-zstd.h5"
    assert f"{packed}: 4 frames, delta-zstd" in capsys.readouterr().out
    assert main(["compress", str(packed), "--compression", "none", "--out", str(tmp_path / "back.h5"), "-q"]) == 0
    with Trajectory(run) as a, Trajectory(packed) as b, Trajectory(tmp_path / "back.h5") as c:
        assert b.meta["compression"] == "delta-zstd" and c.meta["compression"] == "none"
        assert b.meta["scenario"] == a.meta["scenario"] and b.meta["environment"] == a.meta["environment"]
        assert b.meta["recompressed_from"] == str(run) and b.meta["closed_cleanly"] is True
        assert b.names == a.names and b.strings == a.strings and np.array_equal(b.dead, a.dead)
        for table in ("dead_mask", "counts", "input_counts", "first_input_step"):  # every token table travels
            assert np.array_equal(getattr(b.token_tables(), table), getattr(a, table)), table
        for name in a.names:
            x, y, z = a[name][:], b[name][:], c[name][:]
            same = (lambda p, q: torch.equal(p.view(torch.int16), q.view(torch.int16))) if isinstance(x, torch.Tensor) \
                else (lambda p, q: np.array_equal(p, q, equal_nan=True))
            assert same(x, y) and same(x, z), name
    assert main(["compress", str(run), "--out", str(run)]) == 2
    assert "is the source file" in capsys.readouterr().err


def test_validate_checks_the_data_files_without_training(write_scenario, tiny_data, tmp_path, capsys):
    """Three errors validate finds in the data, each naming the scenario file, the key and the data file;
    `run` refuses the same scenario before it trains."""
    tokenizer, corpus = (str(p) for p in tiny_data)
    missing = write_scenario(name="missing")
    missing.write_text(missing.read_text().replace(corpus, str(tmp_path / "gone.txt")))
    vocab = write_scenario(name="vocab")
    vocab.write_text(vocab.read_text().replace("vocab_size = 800", "vocab_size = 1000"))
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text('{"body": "some text"}\n{"body": "more"}\n', encoding="utf-8")
    field = write_scenario(name="field")
    field.write_text(field.read_text().replace(corpus, str(jsonl)))
    assert main(["validate", str(missing.parent)]) == 1
    out = capsys.readouterr().out
    gone = tmp_path / "gone.txt"
    assert f"error {missing}: data.corpus = '{gone}': cannot be read (No such file or directory)" in out
    assert f"error {vocab}: data.tokenizer = '{tokenizer}' has a vocab of 800 tokens, but model.vocab_size = 1,000" \
        in out
    assert f"error {field}: data.text_field = 'text' is not in line 1 of {jsonl} (it has: body)" in out
    assert main(["run", str(vocab), "--out", str(tmp_path / "runs"), "-q"]) == 2
    assert "model.vocab_size = 1,000" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
