"""Run a causal language model over a dataset's texts and cache its per-token top-k log-probabilities
(or, with ``sampled=S``, S tokens drawn per position from its distribution, with their counts).

For vocabulary-level (LLM) distillation the dense [rows, tokens, vocab] tensor is far too large
to keep (79k rows × 128 tokens × 49k vocab × 2 bytes ≈ 1 TB), so each position keeps its top k
next-token log-probabilities, the log of the mass left in the tail, and the KL that truncation
costs; ``distillab cache inspect`` reports the mass and KL lost over the whole cache.

A top-k target is biased (the student learns the renormalised truncation); a sampled cache is
unbiased: S draws per position from ``softmax(logits / temperature)`` with a generator seeded by
(``seed``, row id), stored as distinct ids, counts and teacher log-probs, so the loss
:func:`distillab.losses.sampled.sampled_kd_loss` equals full-vocabulary KD in expectation.

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
    row_generator,
    run_shards,
    sampled_outputs,
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
    k: int | None = None,
    splits: list[str] | None = None,
    temperature: float | None = None,
    dtype: str = "fp16",
    batch_size: int = 8,
    max_length: int = 128,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    overwrite: bool = False,
    gguf_file: str | None = None,
    progress: bool = True,
    sampled: int | None = None,
    seed: int = 0,
) -> Path:
    """Cache per-token top-k log-probs of ``softmax(logits / temperature)`` for ``splits`` of ``dataset``.

    ``k`` defaults to 20. ``sampled=S`` (without ``k``) caches S draws per position from that distribution instead
    (kind ``"sampled"``); ``seed`` (recorded, with S and the temperature, in the manifest and the
    fingerprint) seeds each row's generator together with its row id.
    """
    import torch

    if batch_size < 1 or max_length < 1:
        raise InputError(f"batch_size and max_length must be >= 1, got {batch_size} and {max_length}")
    if sampled is not None:
        if k is not None:
            raise InputError(f"give k (top-k) or sampled (draws per position), not both; got k={k!r}, sampled={sampled!r}")
        if isinstance(sampled, bool) or int(sampled) != sampled or sampled < 1:
            raise InputError(f"sampled must be a positive number of draws per position, got {sampled!r}")
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {seed!r}")
        sampled, seed, k = int(sampled), int(seed), None
    elif k is None:
        k = 20
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
    if sampled is not None:  # top-k settings (and so their fingerprints) stay exactly what they were
        settings = {**{key: value for key, value in settings.items() if key != "k"}, "sampled": sampled, "seed": seed}
    device, precision_ctx, fingerprint = start_capture(model, tokenizer, name, dataset, splits, ids, labels, settings)
    writer = CacheWriter(out, ids=ids, labels=labels, texts=texts, classes=list(dataset.classes),
                         fingerprint=fingerprint, kind="topk" if sampled is None else "sampled", width=vocab,
                         dtype=dtype, k=k if sampled is None else min(sampled, vocab), tokens=max_length,
                         temperature=temperature, shard_rows=shard_rows,
                         sampled=None if sampled is None else {"draws": sampled, "seed": seed})
    slots = writer.k

    def compute(start: int, stop: int, advance) -> dict[str, np.ndarray]:
        rows = stop - start
        encoded = tokenizer(texts[start:stop], truncation=True, max_length=max_length)["input_ids"]
        input_ids = np.full((rows, max_length), pad_id, dtype=np.int32)  # [r, T], right-padded
        num_tokens = np.array([len(x) for x in encoded], dtype=np.int32)
        kinds = (("topk_ids", np.int32), ("topk_logprobs", np.float32)) if sampled is None else (
            ("sample_ids", np.int32), ("sample_counts", np.int32), ("sample_logprobs", np.float32))
        arrays = {key: np.zeros((rows, max_length, slots), dtype=dtype_) for key, dtype_ in kinds}
        arrays.update(tail_logmass=np.zeros((rows, max_length), dtype=np.float32),
                      tail_kl=np.zeros((rows, max_length), dtype=np.float32))
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
            logits = logits.cpu()
            top = topk_outputs(logits, k) if sampled is None else None  # [b, width, k] / [b, width]
            for j, row in enumerate(batch_rows):
                n = num_tokens[row]  # padded positions stay zero and are masked by num_tokens
                if sampled is not None:  # each row from its own generator: independent of batching and sharding
                    if n == 0:
                        continue
                    drawn = sampled_outputs(logits[j, :n], sampled, row_generator(seed, ids[start + row]))
                    for key, value in drawn.items():
                        arrays[key][row, :n] = value
                    continue
                for key, value in top.items():
                    arrays[key][row, :n] = value[j, :n]
            advance(len(batch_rows))
        return dict(arrays, input_ids=input_ids, num_tokens=num_tokens)

    return run_shards(writer, compute, overwrite=overwrite, progress=progress, desc=f"teacher {Path(str(name)).name}")
