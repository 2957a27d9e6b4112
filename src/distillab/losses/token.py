"""Reverse KL and generalised JSD against a sparse top-k teacher cache: what is honestly computable.

Reverse KL(q ‖ p) = Σ_v q_v (log q_v − log p_v) needs the teacher's log p_v wherever the *student*
puts mass, i.e. over the whole vocabulary; a top-k cache knows log p_v only on the teacher's k ids
and the total mass of the tail. (A sampled cache is worse: its draws estimate expectations under
p, not under q, so neither divergence has an estimator from it; only forward KL does.)

What *is* exact is the divergence between the **coarse-grained** distributions: k + 1 buckets, the
teacher's top-k ids and one tail bucket holding the rest of the mass, on both sides (the student's
tail is its mass outside the teacher's top-k). By the data-processing inequality this is a lower
bound on the full-vocabulary divergence, equal to it when k = V; the student is not told how to
spread its mass inside the tail. This is the ``tail="bucket"`` treatment of
:func:`distillab.losses.kd.topk_kd_loss`, applied to :func:`~distillab.losses.kd.reverse_kl_loss`
and :func:`~distillab.losses.kd.generalized_jsd_loss` (same conventions: batchmean over rows whose
label is not ``-100``, temperature applied to the (k+1)-way distributions, no T² factor).
With a live teacher (on-policy GKD) the full-vocabulary divergences are used instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from distillab.errors import InputError
from distillab.losses.kd import IGNORE_INDEX, HyperparameterError, generalized_jsd_loss, reverse_kl_loss

DIVERGENCES = ("reverse_kl", "jsd")


def bucket_logprobs(student_logits, topk_ids, topk_logprobs, tail_logmass):
    """(student, teacher) log-probabilities over the k + 1 buckets, each [N, k+1], at temperature 1."""
    ids = topk_ids.long()
    student_logp = F.log_softmax(student_logits, -1)
    in_topk = torch.zeros_like(student_logp, dtype=torch.bool).scatter_(-1, ids, True)
    # finfo.min, not -inf: an empty tail (k = V) must keep a finite, zero gradient
    student_tail = torch.logsumexp(student_logp.masked_fill(in_topk, torch.finfo(student_logp.dtype).min), -1)
    student = torch.cat([student_logp.gather(-1, ids), student_tail[:, None]], -1)
    teacher = torch.cat([topk_logprobs, tail_logmass[:, None]], -1).to(student.dtype)
    return student, teacher


def topk_bucket_divergence(student_logits, topk_ids, topk_logprobs, tail_logmass, labels=None,
                           divergence: str = "reverse_kl", beta: float = 0.5, T: float = 1.0) -> torch.Tensor:
    """Reverse KL or JSD(β) between the student's and the teacher's (k+1)-bucket distributions, batchmean.

    Inputs are a top-k cache's arrays (``[..., k]``, ``[..., k]``, ``[...]``) beside ``student_logits``
    ``[..., V]``; ``labels`` (``[...]``, optional) only mark rows to skip with ``-100``.
    """
    if divergence not in DIVERGENCES:
        raise HyperparameterError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    vocab = student_logits.shape[-1]
    k = topk_ids.shape[-1]
    if not 1 <= k <= vocab or tuple(topk_ids.shape[:-1]) != tuple(student_logits.shape[:-1]):
        raise InputError(f"topk_ids must be [..., k] with 1 <= k <= {vocab} beside student_logits "
                         f"{tuple(student_logits.shape)}, got {tuple(topk_ids.shape)}")
    student = student_logits.reshape(-1, vocab)
    ids, logprobs, tail = topk_ids.reshape(-1, k), topk_logprobs.reshape(-1, k), tail_logmass.reshape(-1)
    if labels is not None:
        keep = labels.reshape(-1) != IGNORE_INDEX
        student, ids, logprobs, tail = student[keep], ids[keep], logprobs[keep], tail[keep]
    if student.shape[0] == 0:
        return student.sum()
    student_b, teacher_b = bucket_logprobs(student, ids, logprobs, tail)
    if divergence == "reverse_kl":
        return reverse_kl_loss(student_b, teacher_b, T=T)
    return generalized_jsd_loss(student_b, teacher_b, beta=beta, T=T)


def topk_bucket_divergence_reference(student_logits, topk_ids, topk_logprobs, tail_logmass, labels=None,
                                     divergence: str = "reverse_kl", beta: float = 0.5, T: float = 1.0) -> float:
    """Float64 oracle of :func:`topk_bucket_divergence`: numpy, one row at a time, the formulas written out."""
    def array(x, dtype):
        return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=dtype)

    s = array(student_logits, np.float64)
    s = s.reshape(-1, s.shape[-1])
    k = np.shape(topk_ids)[-1]
    ids = array(topk_ids, np.int64).reshape(-1, k)
    lp = array(topk_logprobs, np.float64).reshape(-1, k)
    tail = array(tail_logmass, np.float64).reshape(-1)
    y = None if labels is None else array(labels, np.int64).reshape(-1)

    def tempered(logp):  # log softmax(logp / T) over the buckets
        z = logp / T
        z = z - z[np.isfinite(z)].max()
        return z - math.log(np.exp(z).sum())

    def kl(a, b):  # KL(exp a ‖ exp b), 0·log 0 = 0
        return sum(math.exp(x) * (x - yy) for x, yy in zip(a, b) if math.exp(x) > 0)

    total, kept = 0.0, 0
    for r in range(s.shape[0]):
        if y is not None and y[r] == IGNORE_INDEX:
            continue
        z = s[r] - s[r].max()
        logq = z - math.log(np.exp(z).sum())
        outside = np.ones(s.shape[1], dtype=bool)
        outside[ids[r]] = False
        q_tail = math.log(np.exp(logq[outside]).sum()) if outside.any() else -np.inf
        q = tempered(np.append(logq[ids[r]], q_tail))
        p = tempered(np.append(lp[r], tail[r]))
        if divergence == "reverse_kl" or beta == 1:
            value = kl(q, p)
        elif beta == 0:
            value = kl(p, q)
        else:
            m = np.log(beta * np.exp(p) + (1 - beta) * np.exp(q))
            value = beta * kl(p, m) + (1 - beta) * kl(q, m)
        total += value
        kept += 1
    return total / kept if kept else 0.0
