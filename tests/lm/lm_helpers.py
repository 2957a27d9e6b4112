"""Tiny causal LMs for the LM tests: a WordLevel tokenizer whose pad token *is* its EOS (as SmolLM2's),
Llama models of a few layers built from a config, and a small news-like corpus. No download."""

from __future__ import annotations

import json

import numpy as np
import torch

WORDS = ("the a of to in market price rose fell shares bank rates oil trade said company profit loss year "
         "week quarter up down new high low sales growth report stock bond dollar yen").split()
SPECIALS = ["<unk>", "<eos>"]


def make_tokenizer(words=WORDS):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(SPECIALS + list(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")


def tiny_llama(vocab: int, layers: int = 4, seed: int = 0, context: int = 128):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=context,
                         pad_token_id=1, eos_token_id=1, bos_token_id=None, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def save_tiny_llama(path, layers: int = 4, seed: int = 0, context: int = 128, words=WORDS) -> str:
    tokenizer = make_tokenizer(words)
    model = tiny_llama(len(tokenizer), layers, seed, context)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def documents(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 14)))) for _ in range(n)]


def write_corpus(folder, n_train: int = 12, n_test: int = 6, texts: dict | None = None) -> dict:
    """JSONL train/test splits (text, label) and the dataset spec that loads them."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = texts or {"train": documents(n_train, 1), "test": documents(n_test, 2)}
    for split, rows in texts.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for i, text in enumerate(rows):
                handle.write(json.dumps({"text": text, "label": "ab"[i % 2]}) + "\n")
    return {"path": str(folder)}
