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

import itertools
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


def position_logits(model, device, precision_ctx):
    """``forward(ids [b, L], real [b, L] bool) -> float32 logits [n_real, V]`` on the CPU, rows' real positions in order.

    Right padding needs no attention mask for a causal LM: a real position attends only to earlier
    positions, all real too. A transformers ``LlamaForCausalLM`` (SmolLM2) therefore runs through
    :func:`llama_hidden`, and its output layer only on real positions; other models run their own
    forward with the attention mask.
    """
    import torch
    from transformers import LlamaForCausalLM

    plain = type(model) is LlamaForCausalLM and getattr(model.config, "pretraining_tp", 1) == 1

    def forward(ids, real):
        with torch.inference_mode(), precision_ctx:
            if plain:
                logits = model.lm_head(llama_hidden(model.model, ids.to(device))[real.to(device)])
            else:
                logits = model(input_ids=ids.to(device), attention_mask=real.long().to(device)).logits[real.to(device)]
            return logits.float().cpu()

    return forward


def llama_hidden(llama, ids):
    """Final hidden states ``[b, L, H]`` of a transformers ``LlamaModel`` for right-padded ``ids``, causal attention only.

    The same modules, weights and operations as ``LlamaModel.forward`` with SDPA (RMSNorm as one fused
    op, the model's own rotary embedding and ``apply_rotary_pos_emb``), equal to it on real positions
    (checked in tests), without its per-call 4-D mask, cache and output bookkeeping: on SmolLM2 at 64
    tokens on this project's shared 2-core CPU, 1.0x (idle) to 1.5x (oversubscribed) faster than the
    model's own forward, since each of the dozens of small operations it skips waits on busy cores.
    """
    import torch
    import torch.nn.functional as F
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    x = llama.embed_tokens(ids)
    b, length, _ = x.shape
    cos, sin = llama.rotary_emb(x, torch.arange(length, device=ids.device)[None])
    for layer in llama.layers:
        attn, mlp = layer.self_attn, layer.mlp
        h = _rms_norm(layer.input_layernorm, x)
        q, k, v = (proj(h).view(b, length, -1, attn.head_dim).transpose(1, 2)
                   for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        groups = q.shape[1] // k.shape[1]
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attn.scaling)
        x = x + attn.o_proj(out.transpose(1, 2).reshape(b, length, -1))
        h = _rms_norm(layer.post_attention_layernorm, x)
        x = x + mlp.down_proj(mlp.act_fn(mlp.gate_proj(h)) * mlp.up_proj(h))
    return _rms_norm(llama.norm, x)


def _rms_norm(norm, x):
    import torch.nn.functional as F

    return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)


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
    forward = position_logits(model, device, precision_ctx)

    def compute(start: int, stop: int, advance) -> dict[str, np.ndarray]:
        rows = stop - start
        encoded = tokenizer(texts[start:stop], truncation=True, max_length=max_length)["input_ids"]
        num_tokens = np.array([len(x) for x in encoded], dtype=np.int32)
        real = np.arange(max_length)[None, :] < num_tokens[:, None]  # [r, T]
        input_ids = np.full((rows, max_length), pad_id, dtype=np.int32)  # right-padded
        input_ids[real] = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32, count=int(num_tokens.sum()))
        kinds = (("topk_ids", np.int32), ("topk_logprobs", np.float32)) if sampled is None else (
            ("sample_ids", np.int32), ("sample_counts", np.int32), ("sample_logprobs", np.float32))
        arrays = {key: np.zeros((rows, max_length, slots), dtype=dtype_) for key, dtype_ in kinds}
        arrays.update(tail_logmass=np.zeros((rows, max_length), dtype=np.float32),
                      tail_kl=np.zeros((rows, max_length), dtype=np.float32))
        order = np.argsort(-num_tokens, kind="stable")  # similar lengths share a batch: little padding
        for begin in range(0, rows, batch_size):
            batch_rows = order[begin:begin + batch_size]
            width = int(num_tokens[batch_rows].max())
            if width == 0:  # texts that tokenise to nothing have no positions to store
                advance(len(batch_rows))
                continue
            valid = real[batch_rows, :width]
            logits = forward(torch.from_numpy(input_ids[batch_rows, :width].astype(np.int64)), torch.from_numpy(valid))
            if temperature is not None:
                logits = logits / temperature
            row_of, position = np.nonzero(valid)  # the order of the [n_real, V] logits; padding stays zero
            row_of = batch_rows[row_of]
            if sampled is None:
                for key, value in topk_outputs(logits, k).items():
                    arrays[key][row_of, position] = value
            else:  # each row from its own generator: independent of batching and sharding
                ends = np.cumsum(num_tokens[batch_rows])
                for row, end in zip(batch_rows, ends):
                    n = num_tokens[row]
                    if n == 0:
                        continue
                    drawn = sampled_outputs(logits[end - n:end], sampled, row_generator(seed, ids[start + row]))
                    for key, value in drawn.items():
                        arrays[key][row, :n] = value
            advance(len(batch_rows))
        return dict(arrays, input_ids=input_ids, num_tokens=num_tokens)

    return run_shards(writer, compute, overwrite=overwrite, progress=progress, desc=f"teacher {Path(str(name)).name}")
