"""The capture's fast forward (Llama without transformers' wrappers, output layer on real positions only)
gives the model's own logits on every real position of a right-padded batch."""

from __future__ import annotations

import contextlib

import pytest
import torch

import distillab.teacher.causal_lm as causal_lm

LLAMA_HIDDEN = causal_lm.llama_hidden  # the real one, called through the counting stand-in


def right_padded(lengths, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (len(lengths), max(lengths)), generator=g)
    real = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~real, 0), real


def llama(**extra):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=64, **extra)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("extra", [{}, {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 16}},
                                   {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True}])
def test_llama_fast_path_equals_the_model_on_real_positions(extra, monkeypatch):
    model = llama(**extra)
    calls = []
    monkeypatch.setattr(causal_lm, "llama_hidden", lambda *a: calls.append(1) or LLAMA_HIDDEN(*a))
    ids, real = right_padded([9, 5, 1, 9], 50)
    got = causal_lm.position_logits(model, torch.device("cpu"), contextlib.nullcontext())(ids, real)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=real.long()).logits[real]
    assert calls and got.shape == (24, 50) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_other_causal_lms_run_their_own_forward():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()
    ids, real = right_padded([7, 3], 40)
    got = causal_lm.position_logits(model, torch.device("cpu"), contextlib.nullcontext())(ids, real)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=real.long()).logits[real]
    torch.testing.assert_close(got, expected)
