"""core.data: windows, targets and the Trainer's batch order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data import IGNORE_INDEX, BatchOrder, Batches, DataConfig, Windows
from core.token_tables import input_usage


def test_one_window_per_start_position_like_token_dataset():
    ids = torch.arange(1000)
    w = Windows(ids, seq_len=128, target_offset=2)
    assert len(w) == 1000 - 128  # TokenDataset.__len__
    inputs, targets = w.gather(torch.tensor([0, 871]))
    assert inputs.shape == targets.shape == (2, 128)
    assert inputs[1, -1] == 871 + 127  # the last window reaches the corpus end minus one


def test_target_offset_two_is_the_notebooks_double_shift():
    ids = torch.arange(100, 400)
    inputs, targets = Windows(ids, seq_len=128, target_offset=2).gather(torch.tensor([5]))
    chunk = ids[5 : 5 + 129]  # TokenDataset chunk
    labels = chunk[1:]  # notebook's pre-shifted labels; GPT-2 shifts again:
    hf_targets = torch.cat([labels[1:], torch.tensor([IGNORE_INDEX])])
    assert torch.equal(inputs[0], chunk[:-1])
    assert torch.equal(targets[0], hf_targets)
    assert (targets[0] != IGNORE_INDEX).sum() == 127


def test_target_offset_one_is_next_token():
    ids = torch.arange(300)
    inputs, targets = Windows(ids, seq_len=16, target_offset=1).gather(torch.tensor([3]))
    assert torch.equal(targets[0], inputs[0] + 1)


def test_batch_order_is_seeded_randperm_per_epoch_with_short_last_batch():
    order = BatchOrder(n_windows=70, batch_size=32, seed=42)
    assert order.batches_per_epoch == 3  # 32 + 32 + 6
    perm0 = torch.randperm(70, generator=torch.Generator().manual_seed(42))
    perm1 = torch.randperm(70, generator=torch.Generator().manual_seed(43))
    assert torch.equal(order.starts(0), perm0[:32])
    assert torch.equal(order.starts(2), perm0[64:])
    assert len(order.starts(2)) == 6
    assert torch.equal(order.starts(3), perm1[:32])
    assert torch.equal(BatchOrder(70, 32, 42, drop_last=True).starts(2), perm1[:32])


def test_batches_are_a_pure_function_of_the_step():
    ids = torch.arange(5000) % 97
    a, b = Batches(ids, DataConfig(seq_len=32, batch_size=8)), Batches(ids, DataConfig(seq_len=32, batch_size=8))
    for step in (7, 0, 500, 7):  # any order, any repeat
        assert all(torch.equal(x, y) for x, y in zip(a[step], b[step]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ids=torch.arange(500), seq_len=128, target_offset=0), "target_offset must be >= 1"),
        (dict(ids=torch.arange(500), seq_len=16, target_offset=17), "leaves no target"),
        (dict(ids=torch.tensor([], dtype=torch.long), seq_len=16, target_offset=1), "^The corpus has no tokens\\.$"),
        (dict(ids=torch.arange(600).reshape(2, 300), seq_len=16, target_offset=1),
         "^The corpus must be one sequence of token ids, got shape \\(2, 300\\)\\.$"),
        (dict(ids=torch.arange(500), seq_len=0, target_offset=1), "^seq_len must be >= 1, got 0\\.$"),
        (dict(ids=torch.arange(100), seq_len=128, target_offset=2), "fewer than one window of seq_len \\+ 1 = 129"),
    ],
    ids=["offset-zero", "offset-past-window", "empty-corpus", "two-dimensional", "no-seq-len", "shorter-than-a-window"],
)
def test_bad_data_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Windows(**kwargs)


def test_corpus_of_exactly_one_window_works_and_one_token_less_is_an_error_naming_both_counts():
    w = Windows(torch.arange(129), seq_len=128, target_offset=2)
    assert len(w) == 1
    with pytest.raises(ValueError, match="corpus has 128 tokens, fewer than one window of seq_len \\+ 1 = 129"):
        Windows(torch.arange(128), seq_len=128, target_offset=2)


def test_seq_len_one_and_an_offset_of_the_whole_window_are_valid():
    ids = torch.arange(1000, 1010)  # distinct ids: the target's source shows
    inputs, targets = Windows(ids, seq_len=1, target_offset=1).gather(torch.tensor([0, 8]))
    assert inputs.tolist() == [[1000], [1008]] and targets.tolist() == [[1001], [1009]]
    # target_offset == seq_len: only position 0 has a target, the window's last token
    _, targets = Windows(ids, seq_len=4, target_offset=4).gather(torch.tensor([2]))
    assert targets.tolist() == [[1006, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="target_offset 5 leaves no target in a window of seq_len 4"):
        Windows(ids, seq_len=4, target_offset=5)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_a_compactly_stored_corpus_gathers_int64_ids_and_signed_ignore_targets(dtype):
    # A tokenized corpus is often stored as uint16/int32; the loss needs int64 targets with -100.
    ids = np.arange(60000, 60020).astype(dtype)
    inputs, targets = Windows(ids, seq_len=4, target_offset=2).gather(torch.tensor([0, 15]))
    assert inputs.dtype == targets.dtype == torch.long
    assert inputs.tolist() == [[60000, 60001, 60002, 60003], [60015, 60016, 60017, 60018]]
    assert targets[:, -1].tolist() == [IGNORE_INDEX, IGNORE_INDEX] and targets[1, 2] == 60019


def test_input_usage_counts_the_inputs_of_exactly_the_run_batches():
    ids = torch.tensor([5, 1, 2, 3, 1, 2, 9, 4, 0, 1, 2, 7])  # token 6 and 8 never occur
    batches = Batches(ids, DataConfig(seq_len=3, batch_size=2, target_offset=1, seed=0))
    steps, vocab = 4, 10
    counts, first = input_usage(batches, steps, vocab)
    want_counts, want_first = torch.zeros(vocab, dtype=torch.long), torch.full((vocab,), -1)
    for step in range(steps):
        inputs, targets = batches[step]
        want_counts += torch.bincount(inputs.flatten(), minlength=vocab)
        for token in inputs.flatten().tolist():
            if want_first[token] < 0:
                want_first[token] = step + 1
    assert counts.tolist() == want_counts.tolist() and first.tolist() == want_first.tolist()
    assert counts.sum() == steps * 2 * 3 and first[6] == first[8] == -1
    assert first[7] == -1  # the corpus's last token is only ever a target, never an input


@pytest.mark.parametrize("offset", [1, 2])
def test_the_last_window_targets_the_corpus_last_token(offset):
    ids = torch.arange(1000, 1300)  # distinct ids: a target read from the wrong place shows
    w = Windows(ids, seq_len=16, target_offset=offset)
    _, targets = w.gather(torch.tensor([len(w) - 1]))
    assert targets[0, 16 - offset] == 1299  # the last position with a target reads the final token
    assert torch.equal(targets[0, : 17 - offset], ids[-(17 - offset):])


def test_batch_size_one_is_valid_and_a_smaller_one_is_an_error_naming_it():
    order = BatchOrder(n_windows=5, batch_size=1, seed=0)
    assert order.batches_per_epoch == 5
    assert [int(order.starts(k)) for k in range(5)] == torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        BatchOrder(n_windows=5, batch_size=0, seed=0)


def test_a_remainder_of_one_window_is_one_more_batch_and_none_is_no_extra_batch():
    short = BatchOrder(n_windows=65, batch_size=32, seed=1)
    assert short.batches_per_epoch == 3 and len(short.starts(2)) == 1
    assert set(torch.cat([short.starts(k) for k in range(3)]).tolist()) == set(range(65))  # every window, once
    exact = BatchOrder(n_windows=64, batch_size=32, seed=1)
    assert exact.batches_per_epoch == 2 and len(exact.starts(2)) == 32  # step 2 opens the next epoch


def test_drop_last_with_exactly_one_batch_of_windows_works_and_too_few_is_an_error_naming_both():
    order = BatchOrder(n_windows=8, batch_size=8, seed=0, drop_last=True)
    assert order.batches_per_epoch == 1 and len(order.starts(0)) == 8
    assert order.drop_last is True and BatchOrder(8, 8, 0).drop_last is False  # a checkpoint compares it on resume
    with pytest.raises(ValueError, match="drop_last with 7 windows leaves no batch of 8"):
        BatchOrder(n_windows=7, batch_size=8, seed=0, drop_last=True)


def test_a_negative_step_is_an_error_naming_it():
    order = BatchOrder(n_windows=70, batch_size=32, seed=42)
    for step in (-1, -3, -100):  # -1..-3 once read an unset cache; -100 drew from a negative epoch's seed
        with pytest.raises(ValueError, match=rf"^step must be >= 0, got {step}\.$"):
            order.starts(step)
    assert torch.equal(order.starts(0), order.epoch_permutation(0)[:32])


def test_batches_draw_in_the_order_of_their_config_seed_and_drop_last():
    ids = torch.arange(1000, 1020)  # distinct ids: 20 - 3 = 17 windows, window s starts with token 1000 + s
    batches = Batches(ids, DataConfig(seq_len=3, batch_size=4, target_offset=1, seed=7, drop_last=True))
    perm0, perm1 = (torch.randperm(17, generator=torch.Generator().manual_seed(s)) for s in (7, 8))
    assert (batches[0][0][:, 0] - 1000).tolist() == perm0[:4].tolist()  # seed 7, not the default 42
    assert (batches[3][0][:, 0] - 1000).tolist() == perm0[12:16].tolist()
    assert (batches[4][0][:, 0] - 1000).tolist() == perm1[:4].tolist()  # drop_last: the 17th window is skipped
