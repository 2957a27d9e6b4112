"""Run a causal language model over a dataset's texts and cache its per-token top-k log-probabilities.

For vocabulary-level (LLM) distillation the dense [rows, tokens, vocab] tensor is far too large
to keep (79k rows × 128 tokens × 49k vocab × 2 bytes ≈ 1 TB), so each position keeps its top k
next-token log-probabilities, the log of the mass left in the tail, and the KL that truncation
costs; ``distillab cache inspect`` reports the mass and KL lost over the whole cache.

Position t of a row holds the teacher's distribution over the token at t+1 given tokens ≤ t,
for t < ``num_tokens``; ``input_ids`` are stored so a student with the same tokenizer can align.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from distillab.errors import InputError
from distillab.teacher.cache import DEFAULT_SHARD_ROWS, CacheWriter
from distillab.teacher.capture import (
    check_tokenizer,
    run_shards,
    select_rows,
    start_capture,
    topk_outputs,
)


def load_causal_lm(name_or_path: str, gguf_file: str | None = None, tokenizer_name=None):
    """(model, tokenizer) from a local folder or Hub id; ``gguf_file`` loads (and dequantises) a GGUF file.

    ``tokenizer_name`` is a path / Hub id, or an already loaded tokenizer, which is used as given.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **extra)
        if tokenizer_name is not None and not isinstance(tokenizer_name, (str, os.PathLike)):
            tokenizer = tokenizer_name
        else:
            tokenizer = (AutoTokenizer.from_pretrained(tokenizer_name) if tokenizer_name
                         else AutoTokenizer.from_pretrained(name_or_path, **extra))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a causal LM (or its tokenizer) from {name_or_path!r}: "
                         f"{str(exc).splitlines()[0]}") from None
    return model, tokenizer


def cache_causal_lm(
    model,
    dataset,
    out: str | os.PathLike,
    *,
    tokenizer=None,
    k: int = 20,
    splits: list[str] | None = None,
    temperature: float | None = None,
    dtype: str = "fp16",
    batch_size: int = 8,
    max_length: int = 128,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    overwrite: bool = False,
    gguf_file: str | None = None,
    progress: bool = True,
) -> Path:
    """Cache per-token top-k log-probs of ``softmax(logits / temperature)`` for ``splits`` of ``dataset``."""
    import torch

    if batch_size < 1 or max_length < 1:
        raise InputError(f"batch_size and max_length must be >= 1, got {batch_size} and {max_length}")
    name = model if isinstance(model, str) else getattr(model.config, "name_or_path", "") or type(model).__name__
    if isinstance(model, str):
        model, tokenizer = load_causal_lm(model, gguf_file, tokenizer)  # a loaded tokenizer is kept as given
    elif tokenizer is None:
        raise InputError("pass tokenizer= along with an already loaded model")
    check_tokenizer(model, tokenizer, name)
    splits, ids, texts, labels = select_rows(dataset, splits)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    settings = {"runner": "causal_lm", "splits": splits, "temperature": temperature, "dtype": dtype, "k": k,
                "max_length": max_length, "batch_size": batch_size}
    device, precision_ctx, fingerprint = start_capture(model, tokenizer, name, dataset, splits, ids, labels, settings)
    writer = CacheWriter(out, ids=ids, labels=labels, texts=texts, classes=list(dataset.classes),
                         fingerprint=fingerprint, kind="topk", width=vocab, dtype=dtype, k=k, tokens=max_length,
                         temperature=temperature, shard_rows=shard_rows)

    def compute(start: int, stop: int, advance) -> dict[str, np.ndarray]:
        rows = stop - start
        encoded = tokenizer(texts[start:stop], truncation=True, max_length=max_length)["input_ids"]
        input_ids = np.full((rows, max_length), pad_id, dtype=np.int32)  # [r, T], right-padded
        num_tokens = np.array([len(x) for x in encoded], dtype=np.int32)
        arrays = {
            "topk_ids": np.zeros((rows, max_length, k), dtype=np.int32),
            "topk_logprobs": np.zeros((rows, max_length, k), dtype=np.float32),
            "tail_logmass": np.zeros((rows, max_length), dtype=np.float32),
            "tail_kl": np.zeros((rows, max_length), dtype=np.float32),
        }
        order = np.argsort(-num_tokens, kind="stable")
        for begin in range(0, rows, batch_size):
            batch_rows = order[begin:begin + batch_size]
            width = int(num_tokens[batch_rows].max())
            if width == 0:  # texts that tokenise to nothing have no positions to store
                advance(len(batch_rows))
                continue
            batch = torch.full((len(batch_rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch_rows), width), dtype=torch.long)
            for j, row in enumerate(batch_rows):
                batch[j, : num_tokens[row]] = torch.tensor(encoded[row])
                mask[j, : num_tokens[row]] = 1
                input_ids[row, : num_tokens[row]] = encoded[row]
            with torch.inference_mode(), precision_ctx:
                logits = model(input_ids=batch.to(device), attention_mask=mask.to(device)).logits.float()
            if temperature is not None:
                logits = logits / temperature
            top = topk_outputs(logits.cpu(), k)  # [b, width, k] / [b, width]
            for j, row in enumerate(batch_rows):
                n = num_tokens[row]  # padded positions stay zero and are masked by num_tokens
                for key, value in top.items():
                    arrays[key][row, :n] = value[j, :n]
            advance(len(batch_rows))
        return dict(arrays, input_ids=input_ids, num_tokens=num_tokens)

    return run_shards(writer, compute, overwrite=overwrite, progress=progress, desc=f"teacher {Path(str(name)).name}")
