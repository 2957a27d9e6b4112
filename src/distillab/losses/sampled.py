"""Random-sampling KD: an unbiased sparse teacher target for large vocabularies.

A top-k cache keeps the k most likely tokens and renormalises them: a *biased* target (the
student is trained towards the truncated distribution however long it trains). A sampled cache
instead draws S tokens per position from the teacher's distribution p (at the capture temperature)
and keeps the distinct ids j with their counts c_j (Σ_j c_j = S). Because E[c_j / S] = p_j, ::

    E[ Σ_j (c_j/S) · (−log q(j)) ] = Σ_j p_j · (−log q(j)) = CE(p, q) = KL(p ‖ q) + H(p)

for any student distribution q: the sampled loss is an unbiased estimate of the full-distribution
cross-entropy, hence of forward KL up to the teacher-entropy constant (same gradient), and with the
teacher log-probabilities of the sampled ids (which the cache stores) of KL(p ‖ q) itself,
``E[Σ_j (c_j/S)·(log p_j − log q(j))] = KL(p ‖ q)``. This is random-sampling KD in the form of
Anshumann et al. (ACL 2025), with the teacher itself as the proposal, so the importance weights are
c_j / S. Its variance falls as 1/S; its bias is 0 at every S.

Conventions are :mod:`distillab.losses.kd`'s: logits ``[..., V]`` flattened into rows, batchmean over
the rows that are not ignored (label == ``ignore_index``), ``T²`` on the soft term, an
all-ignored batch gives 0 with a zero gradient, bad hyper-parameters raise
:class:`~distillab.losses.kd.HyperparameterError`, malformed teacher input raises
:class:`~distillab.errors.InputError` naming the row.

**Temperature.** Samples can only come from one distribution, fixed when they were drawn: the
cache's ``temperature`` (``softmax(logits / temperature)``; null = 1). ``T`` here divides the
student logits and scales the soft term by ``T²``. Pass the draw temperature as ``T`` and the
expectation is exactly :func:`~distillab.losses.kd.kd_loss` at that T (with ``teacher_logprobs``)::

    kd_loss(s, t, y, T, alpha) == E[sampled_kd_loss(s, *sample_targets(t, S, T=T), y, T, alpha=alpha)]
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from distillab.errors import InputError
from distillab.losses.kd import (
    IGNORE_INDEX,
    HyperparameterError,
    _as_rows,
    _ce_rows,
    _mean_rows,
    _same_rows,
    _temperature,
    _unit_interval,
)

__all__ = ["sample_targets", "sampled_kd_loss", "sampled_kd_loss_reference"]


# --------------------------------------------------------------------------- drawing samples


def sample_targets(teacher_logits, draws: int, *, T: float = 1.0, seed=None, generator: np.random.Generator | None = None):
    """Draw ``draws`` tokens per row from ``softmax(teacher_logits / T)``: the arrays a sampled cache stores.

    Returns ``(ids int32 [..., S], counts int32 [..., S], logprobs float32 [..., S])`` with
    ``S = min(draws, V)`` slots per row: the distinct drawn ids in ascending order, how often each
    was drawn (summing to ``draws``), and the teacher's log-probability of each (at T), followed by
    empty slots (id 0, count 0, log-prob 0). Draws are inverse-CDF lookups of float64 uniforms from
    ``generator`` (default ``numpy.random.default_rng(seed)``) in the softmax (computed in the logits'
    dtype, float32 or float64, accumulated in float64), on the CPU, so they depend only on the logits
    and the generator, never on the device. Weights are ``counts / draws``.
    """
    if isinstance(draws, bool) or int(draws) != draws or draws < 1:
        raise HyperparameterError(f"draws must be a positive integer, got {draws!r}")
    draws = int(draws)
    T = _temperature(T)
    logits = torch.as_tensor(teacher_logits.detach().cpu() if isinstance(teacher_logits, torch.Tensor)
                             else np.asarray(teacher_logits))
    if logits.dtype != torch.float64:  # float32 stays float32 (as a capture computes it); halves widen to it
        logits = logits.float()
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise InputError(f"teacher_logits must be [..., V], got shape {tuple(logits.shape)}")
    lead, vocab = tuple(logits.shape[:-1]), logits.shape[-1]
    rows = logits.reshape(-1, vocab)
    bad = ~torch.isfinite(rows.amax(-1)) | torch.isnan(rows).any(-1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise InputError(f"teacher_logits row {row} has no softmax (NaN, +inf, or no finite value)")
    rng = generator if generator is not None else np.random.default_rng(seed)
    ids, counts, logprobs = draw_from_logprobs(F.log_softmax(rows / T, -1), draws, rng)
    shape = lead + (ids.shape[-1],)
    return (ids.to(torch.int32).reshape(shape).numpy(), counts.to(torch.int32).reshape(shape).numpy(),
            logprobs.to(torch.float32).reshape(shape).numpy())


def draw_from_logprobs(logp: torch.Tensor, draws: int, rng: np.random.Generator):
    """The core of :func:`sample_targets` on log-probabilities ``[N, V]``: (ids, counts, logprobs) tensors."""
    vocab = logp.shape[-1]
    cdf = logp.exp().double().cumsum(-1)
    cdf = cdf / cdf[:, -1:]  # exactly 1 at the end, so every uniform in [0, 1) lands inside
    uniforms = torch.from_numpy(rng.random((logp.shape[0], draws)))
    # first index whose cdf exceeds u: token i is drawn with probability cdf[i] - cdf[i-1] = p_i (never when p_i = 0)
    drawn = torch.searchsorted(cdf, uniforms, right=True).clamp_max(vocab - 1)
    drawn, _ = drawn.sort(-1)
    first = torch.ones_like(drawn, dtype=torch.bool)
    first[:, 1:] = drawn[:, 1:] != drawn[:, :-1]
    slot = first.long().cumsum(-1) - 1  # the slot of each draw: its id's rank among the distinct ids
    width = min(draws, vocab)
    ids = torch.zeros((logp.shape[0], width), dtype=torch.long).scatter_(-1, slot, drawn)  # repeats write equal values
    counts = torch.zeros((logp.shape[0], width), dtype=torch.long).scatter_add_(-1, slot, torch.ones_like(drawn))
    logprobs = torch.where(counts > 0, logp.gather(-1, ids), torch.zeros((), dtype=logp.dtype))
    return ids, counts, logprobs


# --------------------------------------------------------------------------- the loss


def _check_labels(labels, student_logits, alpha: float, ignore_index: int):
    if labels is None:
        if alpha < 1:
            raise InputError("labels are required when alpha < 1 (the cross-entropy term has weight 1 - alpha)")
        return None
    labels = torch.as_tensor(labels, device=student_logits.device)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise InputError(f"labels must be integer class ids, got dtype {labels.dtype}")
    labels = _same_rows("labels", labels, student_logits).long()
    vocab = student_logits.shape[-1]
    bad = ((labels < 0) | (labels >= vocab)) & (labels != ignore_index)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise InputError(f"labels row {row} is {int(labels[row])}: labels must be ids in [0, {vocab}) "
                         f"or {ignore_index} (ignored)")
    return labels


def _sampled_rows(student, ids, weights, teacher_logprobs, labels, T: float, alpha: float):
    """Per-row α·T²·Σ_j w_j·(log p_j − log q_T(j)) + (1−α)·CE(s, y); without log p_j the CE form Σ_j w_j·(−log q_T(j))."""
    student_logq = F.log_softmax(student / T, -1).gather(-1, ids)  # [N, S]
    used = weights > 0
    zero = torch.zeros((), dtype=student.dtype, device=student.device)
    terms = torch.where(used, -student_logq, zero)
    if teacher_logprobs is not None:
        terms = terms + torch.where(used, teacher_logprobs, zero)
    rows = (alpha * T * T) * (weights * terms).sum(-1)  # T² keeps the soft gradient on the CE term's scale
    if alpha < 1:
        rows = rows + (1 - alpha) * _ce_rows(student, labels)
    return rows


def sampled_kd_loss(
    student_logits: torch.Tensor,
    ids: torch.Tensor,
    weights: torch.Tensor,
    labels: torch.Tensor | None = None,
    T: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
    *,
    teacher_logprobs: torch.Tensor | None = None,
    alpha: float = 1.0,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """KD against sampled teacher tokens: an unbiased estimate of full-vocabulary KD, batchmean.

    ``ids`` [..., S] are token ids drawn from the teacher at temperature ``T`` (see the module
    docstring), ``weights`` [..., S] their counts or ``counts / draws`` (each row is normalised to
    sum 1; empty slots have weight 0), ``teacher_logprobs`` [..., S] optional log p_T of those ids.
    Per row::

        α·T²·Σ_j w_j·(log p_j − log softmax(s/T)_j) + (1−α)·CE(s, y)

    whose expectation over the draws is :func:`~distillab.losses.kd.kd_loss`'s row; without
    ``teacher_logprobs`` the ``log p_j`` term is left out and the expectation is
    ``α·T²·CE(p_T, q_T)`` (forward KL plus the teacher entropy, a constant: the same gradient).
    The CE term uses unsoftened logits and needs ``labels`` (α < 1); ``labels`` also mark rows to
    skip (``ignore_index``: padding, prompt tokens), which leave the mean's denominator.

    A kept row whose weights are all 0 (no draws: a padding position read as a token) is refused,
    naming the row; so are negative or non-finite weights, ids outside [0, V) and non-finite
    teacher log-probabilities on drawn slots. ``chunk_rows`` bounds memory as in
    :func:`~distillab.losses.kd.chunked_kd_loss` (same value and gradient).
    """
    T, alpha = _temperature(T), _unit_interval("alpha", alpha)
    if isinstance(ignore_index, bool) or int(ignore_index) != ignore_index:
        raise HyperparameterError(f"ignore_index must be an integer, got {ignore_index!r}")
    student = _as_rows(student_logits)
    vocab = student.shape[-1]
    ids = torch.as_tensor(ids, device=student.device)
    slots = ids.shape[-1] if ids.dim() else 0
    if slots < 1:
        raise InputError(f"ids must be [..., S] with S >= 1 sampled slots, got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise InputError(f"ids must be integer token ids, got dtype {ids.dtype}")
    ids = _same_rows("ids", ids, student_logits, (slots,)).long()
    weights = _same_rows("weights", torch.as_tensor(weights, device=student.device), student_logits, (slots,))
    logprobs = None
    if teacher_logprobs is not None:
        logprobs = _same_rows("teacher_logprobs", torch.as_tensor(teacher_logprobs, device=student.device),
                              student_logits, (slots,))
    labels = _check_labels(labels, student_logits, alpha, int(ignore_index))
    keep = None if labels is None else labels != ignore_index
    if keep is not None and bool(keep.all()):
        keep = None
    _check_samples(ids, weights, logprobs, keep, vocab)
    if keep is not None:
        student, ids, weights = student[keep], ids[keep], weights[keep]
        logprobs = None if logprobs is None else logprobs[keep]
        labels = labels[keep]
    weights = weights.to(student.dtype)
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(student.dtype).tiny)
    row_tensors = [ids, weights]
    if logprobs is not None:
        row_tensors.append(logprobs.to(student.dtype))
    if alpha < 1:
        row_tensors.append(labels)
    has_lp = logprobs is not None

    def rows_fn(chunk, ids_chunk, weight_chunk, *rest):
        lp_chunk = rest[0] if has_lp else None
        label_chunk = rest[-1] if alpha < 1 else None
        return _sampled_rows(chunk, ids_chunk, weight_chunk, lp_chunk, label_chunk, T, alpha)

    return _mean_rows(rows_fn, student, tuple(row_tensors), chunk_rows)


def _check_samples(ids, weights, logprobs, keep, vocab: int) -> None:
    def refuse(mask, message):
        if keep is not None:
            mask = mask & keep
        if bool(mask.any()):
            row = int(mask.nonzero()[0, 0])
            raise InputError(message.format(row=row))

    if weights.dtype == torch.bool:
        raise InputError("weights must be numbers (counts or counts / draws), got dtype bool")
    weights = weights.double()
    refuse(((ids < 0) | (ids >= vocab)).any(-1), f"ids row {{row}} holds a token id outside [0, {vocab})")
    refuse((~torch.isfinite(weights) | (weights < 0)).any(-1),
           "weights row {row} holds a negative or non-finite weight (weights are draw counts or counts / draws)")
    refuse(weights.sum(-1) <= 0, "row {row} has zero draws (all its sample weights are 0): a padding position? "
                                 "mark it ignored in labels, or rebuild the sampled cache")
    if logprobs is not None:
        refuse(((weights > 0) & ~(torch.isfinite(logprobs) & (logprobs <= 1e-3))).any(-1),
               "teacher_logprobs row {row} is not a finite log-probability (<= 0) on a drawn slot")


# --------------------------------------------------------------------------- float64 reference


def sampled_kd_loss_reference(student_logits, ids, weights, labels=None, T: float = 1.0, ignore_index: int = IGNORE_INDEX,
                              *, teacher_logprobs=None, alpha: float = 1.0) -> float:
    """Float64 oracle of :func:`sampled_kd_loss`: numpy, one row at a time, the formula on each line."""

    def array(x, dtype):
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return np.asarray(x, dtype=dtype)

    s = array(student_logits, np.float64)
    s = s.reshape(-1, s.shape[-1])
    slots = np.shape(ids)[-1]
    i = array(ids, np.int64).reshape(-1, slots)
    w = array(weights, np.float64).reshape(-1, slots)
    lp = None if teacher_logprobs is None else array(teacher_logprobs, np.float64).reshape(-1, slots)
    y = None if labels is None else array(labels, np.int64).reshape(-1)
    total, kept = 0.0, 0
    for r in range(s.shape[0]):
        if y is not None and y[r] == ignore_index:
            continue
        z = s[r] / T
        log_q = z - z.max() - math.log(np.exp(z - z.max()).sum())
        norm = w[r].sum()
        if norm <= 0:
            raise ValueError(f"row {r} has zero draws")
        soft = 0.0
        for j in range(slots):
            if w[r, j] > 0:
                soft += (w[r, j] / norm) * ((lp[r, j] if lp is not None else 0.0) - log_q[i[r, j]])
        value = alpha * T * T * soft
        if alpha < 1:
            z1 = s[r] - s[r].max()
            value += (1 - alpha) * -(z1[y[r]] - math.log(np.exp(z1).sum()))
        total += value
        kept += 1
    return total / kept if kept else 0.0
