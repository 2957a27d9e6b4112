"""Training a causal-LM student under one arm's loss: token-level KD from a cache, sequence-level KD,
on-policy GKD with a live teacher, or plain CE.

Every loss is an existing one from :mod:`distillab.losses` evaluated chunk by chunk on the trained
positions only (:mod:`distillab.lm.chunked`); targets come from :func:`distillab.lm.sequences.make_batch`
(shifted once, padding by length). All arms see the same documents in the same order (a seeded
permutation), so their held-out differences are paired.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from distillab.lm.chunked import chunked_head_loss, final_hidden
from distillab.lm.config import Arm
from distillab.lm.generate import generate
from distillab.lm.sequences import make_batch
from distillab.losses.kd import generalized_jsd_loss, topk_kd_loss
from distillab.losses.sampled import sampled_kd_loss
from distillab.losses.token import topk_bucket_divergence


@dataclass
class TrainData:
    """What the arms read: the training documents' tokens and whichever teacher outputs the arms need.

    ``topk`` is (ids, logprobs, tail_logmass) and ``sampled`` (ids, weights, logprobs), each indexed
    [document, position, ...] with position t holding the teacher's distribution of token t + 1.
    ``generations`` maps a seq-KD arm's name to (sequences, prompt lengths).
    """

    sequences: list[np.ndarray]
    pad_id: int
    eos_id: int | None
    topk: tuple | None = None
    sampled: tuple | None = None
    generations: dict | None = None
    teacher: object = None


def _sum_ce(logits, labels):
    return F.cross_entropy(logits, labels, reduction="sum")


def _head_loss(model, batch, chunk_loss, per_position=(), chunk_rows=256):
    """Chunked loss over the batch's trained positions; ``per_position`` tensors are [B, L, ...] like the batch."""
    keep = batch.targets
    hidden = final_hidden(model, batch.input_ids, batch.attention_mask)[keep]
    rows = [batch.labels[keep]] + [t[:, : keep.shape[1]][keep] for t in per_position]
    return chunked_head_loss(hidden, model.get_output_embeddings(), chunk_loss, tuple(rows), chunk_rows)


def arm_loss(arm: Arm, model, rows: np.ndarray, data: TrainData, step: int, chunk_rows: int):
    """(loss, number of trained positions) of one step of ``arm`` on documents ``rows``."""
    s, loss = arm.settings, arm.loss
    if loss == "seq_kd":
        sequences, prompts = data.generations[arm.name]
        batch = make_batch([sequences[r] for r in rows], data.pad_id, [prompts[r] for r in rows])
    elif loss == "gkd":
        batch = _gkd_batch(arm, model, rows, data, step)
    else:
        batch = make_batch([data.sequences[r] for r in rows], data.pad_id)
    count = int(batch.targets.sum())
    if loss in ("ce", "seq_kd"):
        return _head_loss(model, batch, _sum_ce, chunk_rows=chunk_rows), count
    if loss == "gkd":
        with torch.no_grad():
            teacher_hidden = final_hidden(data.teacher, batch.input_ids, batch.attention_mask)[batch.targets]
            teacher_logits = data.teacher.get_output_embeddings()(teacher_hidden)  # [N, V], no graph

        def jsd(logits, labels, teacher):
            return generalized_jsd_loss(logits, teacher, beta=s["beta"], T=s["T"]) * logits.shape[0]

        keep = batch.targets
        hidden = final_hidden(model, batch.input_ids, batch.attention_mask)[keep]
        return chunked_head_loss(hidden, model.get_output_embeddings(), jsd, (batch.labels[keep], teacher_logits),
                                 chunk_rows), count
    cache = data.sampled if loss == "sampled_kd" else data.topk
    per_position = [torch.as_tensor(a[rows]) for a in cache]
    alpha = s["alpha"]
    if loss == "topk_kd":
        def chunk(logits, labels, ids, logprobs, tail):
            return topk_kd_loss(logits, ids, logprobs, tail, labels, T=s["T"], alpha=alpha, tail=s["tail"]) * len(labels)
    elif loss == "sampled_kd":
        def chunk(logits, labels, ids, weights, logprobs):  # drawn at the cache's temperature 1: T = 1
            return sampled_kd_loss(logits, ids, weights, labels, T=1.0, teacher_logprobs=logprobs, alpha=alpha) * len(labels)
    else:
        divergence = "reverse_kl" if loss == "topk_reverse_kl" else "jsd"

        def chunk(logits, labels, ids, logprobs, tail):
            soft = topk_bucket_divergence(logits, ids, logprobs, tail, None, divergence, s.get("beta", 0.5), s["T"])
            return alpha * soft * len(labels) + (1 - alpha) * _sum_ce(logits, labels)
    return _head_loss(model, batch, chunk, per_position, chunk_rows), count


def _gkd_batch(arm: Arm, model, rows, data: TrainData, step: int):
    """On-policy with probability ``on_policy`` (the student's own continuations), else the documents' own tokens.

    The draw and the sampling seed are functions of (arm seed, step), so a run is reproducible.
    """
    s = arm.settings
    prompt_tokens, new_tokens = s["prompt_tokens"], s["new_tokens"]
    documents = [data.sequences[r] for r in rows]
    prompts = [d[: min(prompt_tokens, len(d) - 1)] for d in documents]  # every document keeps >= 1 target
    if np.random.default_rng([s["seed"], step]).random() < s["on_policy"]:
        sequences = generate(model, prompts, new_tokens=new_tokens, pad_id=data.pad_id, eos_id=data.eos_id,
                             do_sample=True, temperature=s["temperature"], seed=s["seed"] * 1_000_003 + step,
                             batch_size=len(prompts))
    else:
        sequences = [d[: len(p) + new_tokens] for d, p in zip(documents, prompts)]
    return make_batch(sequences, data.pad_id, [len(p) for p in prompts])


def batch_order(documents: int, batch_size: int, steps: int, seed: int) -> list[np.ndarray]:
    """The documents of each step: seeded permutations, one per epoch, cut into batches."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(documents) for _ in range(math.ceil(steps * batch_size / documents) + 1)])
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def train_arm(model, arm: Arm, data: TrainData, training: dict, progress=None) -> dict:
    """Train ``model`` in place for ``training['steps']`` AdamW steps; returns the training log."""
    torch.manual_seed(training["seed"])
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=training["learning_rate"], weight_decay=0.0)
    steps = training["steps"]
    warmup = max(1, int(training["warmup"] * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min((i + 1) / warmup, max(0.0, (steps - i) / max(1, steps - warmup))))
    losses, seconds, targets = [], [], []
    for step, rows in enumerate(batch_order(len(data.sequences), training["batch_size"], steps, training["seed"])):
        started = time.perf_counter()
        loss, count = arm_loss(arm, model, rows, data, step, training["chunk_rows"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        seconds.append(time.perf_counter() - started)
        targets.append(count)
        if progress:
            progress(step, losses[-1], seconds[-1])
    model.eval()
    total = float(np.sum(seconds))
    return {"arm": arm.record(), "steps": steps, "seconds": total, "step_seconds_mean": total / steps,
            "trained_tokens": int(np.sum(targets)), "tokens_per_second": float(np.sum(targets)) / max(total, 1e-9),
            "loss_first": losses[0], "loss_last10": float(np.mean(losses[-10:])), "losses": losses}
