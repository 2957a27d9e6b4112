"""Next-token targets: shifted exactly once, padding found by length (pad == eos keeps the real EOS a target)."""

import numpy as np
import torch
import torch.nn.functional as F

from distillab.lm.chunked import final_hidden
from distillab.lm.sequences import make_batch, next_token_labels, token_counts
from distillab.lm.train import _head_loss, _sum_ce
from lm_helpers import make_tokenizer, tiny_llama

EOS = 1


def test_pad_equal_to_eos_keeps_the_real_eos_a_target():
    tokenizer = make_tokenizer()
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == EOS
    long = tokenizer("the market rose <eos>")["input_ids"]
    short = tokenizer("oil fell <eos>")["input_ids"]
    assert long[-1] == short[-1] == EOS
    batch = make_batch([np.array(long), np.array(short)], pad_id=tokenizer.pad_token_id)
    assert batch.input_ids[1].tolist() == short + [EOS]  # padded with the EOS id
    # the short row's EOS (position 2) is the target at position 1; position 2 (padding follows) is not trained
    assert batch.labels[1].tolist() == [short[1], EOS, -100, -100]
    assert batch.labels[0].tolist() == long[1:] + [-100]
    # the peer-library bug: masking by token id would drop the real EOS target
    by_id = batch.input_ids.roll(-1, 1).masked_fill(batch.input_ids.roll(-1, 1) == tokenizer.pad_token_id, -100)
    assert (by_id == EOS).sum() == 0 and (batch.labels == EOS).sum() == 2


def test_eos_target_enters_the_loss():
    model = tiny_llama(40, layers=1)
    sequences = [np.array([5, 6, 7, EOS]), np.array([8, 9, EOS])]
    batch = make_batch(sequences, pad_id=EOS)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    by_hand = []
    for row, sequence in enumerate(sequences):
        for t in range(len(sequence) - 1):
            by_hand.append(F.cross_entropy(logits[row, t][None], torch.tensor([sequence[t + 1]])))
    assert len(by_hand) == 5  # both EOS tokens are targets, no padding is
    torch.testing.assert_close(_head_loss(model, batch, _sum_ce, chunk_rows=2), torch.stack(by_hand).mean())


def test_labels_are_shifted_exactly_once():
    """The loss equals HF's own (which shifts internally); an unshifted or doubly shifted pair does not."""
    model = tiny_llama(40, layers=2, seed=1)
    sequences = [np.array([3, 4, 5, 6, 7, EOS]), np.array([9, 10, 11])]
    batch = make_batch(sequences, pad_id=EOS)
    ours = _head_loss(model, batch, _sum_ce, chunk_rows=3)
    hf_labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)  # HF shifts these itself
    hf = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=hf_labels).loss
    torch.testing.assert_close(ours, hf)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    unshifted = F.cross_entropy(logits.flatten(0, 1), hf_labels.flatten(), ignore_index=-100)
    doubly = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=-100)
    ours = float(ours.detach())
    assert abs(float(unshifted.detach()) - ours) > 1e-3 and abs(float(doubly.detach()) - ours) > 1e-3


def test_a_model_that_predicts_the_next_token_has_zero_loss_only_when_shifted_once():
    sequences = [np.array([3, 4, 5, 6, EOS]), np.array([7, 8, EOS])]
    batch = make_batch(sequences, pad_id=EOS)
    perfect = 50.0 * F.one_hot(batch.input_ids.roll(-1, 1), 20).float()  # logits[t] point at token t+1
    keep = batch.targets
    ours = F.cross_entropy(perfect[keep], batch.labels[keep])
    unshifted = F.cross_entropy(perfect[keep], batch.input_ids[keep])
    doubly = F.cross_entropy(perfect[keep], batch.labels.roll(-1, 1)[keep].clamp_min(0))
    assert float(ours) < 1e-6 and float(unshifted) > 10 and float(doubly) > 10


def test_prompt_positions_are_masked_by_position():
    input_ids = torch.tensor([[3, 4, 5, 6, 7, 1], [8, 9, 10, 1, 1, 1]])
    labels = next_token_labels(input_ids, [6, 4], prompt_lengths=[3, 2])
    assert labels.tolist() == [[-100, -100, 6, 7, 1, -100], [-100, 10, 1, -100, -100, -100]]


def test_train_token_counts_count_targets():
    counts = token_counts([np.array([3, 4, 4, 1]), np.array([4, 1])], vocab=6)
    assert counts.tolist() == [0, 2, 0, 0, 2, 0]


def test_final_hidden_feeds_the_head_to_the_models_logits():
    model = tiny_llama(40, layers=2)
    batch = make_batch([np.array([3, 4, 5]), np.array([6, 7])], pad_id=EOS)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    head = model.get_output_embeddings()(final_hidden(model, batch.input_ids, batch.attention_mask))
    torch.testing.assert_close(head, logits)
