"""Float64 reference implementations ("oracles") of every loss in :mod:`distillab.losses.kd`.

Written independently of kd.py and as plainly as possible: numpy float64, one row at a time, the
textbook formula on each line. They are slow on purpose and exist for the tests and for
``distillab check-loss``; never train with them. Inputs are array-likes (numpy or torch, converted
to float64); every function returns a Python float, batch-mean over rows, sum over classes.
"""

from __future__ import annotations

import math

import numpy as np


def _matrix(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _ints(y) -> np.ndarray:
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    return np.asarray(y, dtype=np.int64)


IGNORED = -100  # a label meaning "no target here": the row counts in neither term nor in the mean


def _kept_rows(y: np.ndarray) -> list[int]:
    return [i for i in range(len(y)) if y[i] != IGNORED]


def _teacher_row(row: np.ndarray, i: int) -> np.ndarray:
    """A teacher row must have a softmax: no NaN, no +inf, at least one finite value (-inf = probability 0)."""
    if np.any(np.isnan(row)) or np.any(row == np.inf) or not np.any(np.isfinite(row)):
        raise ValueError(f"teacher row {i} has no softmax: {row.tolist()}")
    return row


def log_softmax(row: np.ndarray) -> np.ndarray:
    """log softmax of one row, max-subtracted so exp never overflows."""
    shifted = row - np.max(row)
    return shifted - math.log(np.sum(np.exp(shifted)))


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) = Σ_k p_k log(p_k / q_k) for probability vectors; terms with p_k = 0 are 0."""
    total = 0.0
    for p_k, q_k in zip(p, q):
        if p_k > 0:
            total += p_k * (math.log(p_k) - math.log(q_k))
    return total


def _softmax(row: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(row))


def cross_entropy(student_logits, labels, label_smoothing: float = 0.0) -> float:
    """mean_i −Σ_k q_ik log p_ik with q_i = (1−ε)·onehot(y_i) + ε/K."""
    s, y = _matrix(student_logits), _ints(labels)
    n, k = s.shape
    total = 0.0
    for i in range(n):
        logp = log_softmax(s[i])
        target = np.full(k, label_smoothing / k)
        target[y[i]] += 1.0 - label_smoothing
        total += -float(np.dot(target, logp))
    return total / n


def kl_loss(student_logits, teacher_logits, T: float = 1.0) -> float:
    """mean_i KL(softmax(t_i/T) ‖ softmax(s_i/T))."""
    s, t = _matrix(student_logits), _matrix(teacher_logits)
    return sum(kl(_softmax(t[i] / T), _softmax(s[i] / T)) for i in range(len(s))) / len(s)


def reverse_kl_loss(student_logits, teacher_logits, T: float = 1.0) -> float:
    """mean_i KL(softmax(s_i/T) ‖ softmax(t_i/T))."""
    s, t = _matrix(student_logits), _matrix(teacher_logits)
    return sum(kl(_softmax(s[i] / T), _softmax(t[i] / T)) for i in range(len(s))) / len(s)


def generalized_jsd_loss(student_logits, teacher_logits, beta: float = 0.5, T: float = 1.0) -> float:
    """mean_i β·KL(p_t ‖ m) + (1−β)·KL(p_s ‖ m), m = β·p_t + (1−β)·p_s; β=0 → KL(p_t‖p_s), β=1 → KL(p_s‖p_t) (TRL)."""
    s, t = _matrix(student_logits), _matrix(teacher_logits)
    total = 0.0
    for i in range(len(s)):
        p_s, p_t = _softmax(s[i] / T), _softmax(t[i] / T)
        if beta == 0:
            total += kl(p_t, p_s)
        elif beta == 1:
            total += kl(p_s, p_t)
        else:
            m = beta * p_t + (1 - beta) * p_s
            total += beta * kl(p_t, m) + (1 - beta) * kl(p_s, m)
    return total / len(s)


def kd_loss(student_logits, teacher_logits, labels, T: float = 4.0, alpha: float = 0.7) -> float:
    """mean over rows i with y_i ≠ −100 of α·T²·KL(softmax(t_i/T) ‖ softmax(s_i/T)) + (1−α)·(−log softmax(s_i)[y_i]).

    No kept row: 0. A kept teacher row without a softmax (NaN, +inf, all −inf): ValueError.
    """
    s, t, y = _matrix(student_logits), _matrix(teacher_logits), _ints(labels)
    kept = _kept_rows(y)
    total = 0.0
    for i in kept:
        soft = kl(_softmax(_teacher_row(t[i], i) / T), _softmax(s[i] / T))
        hard = -log_softmax(s[i])[y[i]]
        total += alpha * T * T * soft + (1 - alpha) * hard
    return total / len(kept) if kept else 0.0


def kd_loss_grad(student_logits, teacher_logits, labels, T: float = 4.0, alpha: float = 0.7) -> np.ndarray:
    """d kd_loss / d s in closed form: [α·T·(p_s^T − p_t^T) + (1−α)·(p_s − onehot(y))] / N, N = kept rows.

    (d/ds of T²·KL(p_t^T ‖ p_s^T) is T²·(1/T)·(p_s^T − p_t^T): one T cancels.)
    """
    s, t, y = _matrix(student_logits), _matrix(teacher_logits), _ints(labels)
    kept = _kept_rows(y)  # ignored rows (y = −100) get a zero gradient and leave N
    grad = np.zeros_like(s)
    for i in kept:
        onehot = np.zeros(s.shape[1])
        onehot[y[i]] = 1.0
        grad[i] = alpha * T * (_softmax(s[i] / T) - _softmax(_teacher_row(t[i], i) / T)) + (1 - alpha) * (_softmax(s[i]) - onehot)
    return grad / max(len(kept), 1)


def hard_kd_loss(student_logits, teacher_logits, labels, alpha: float = 0.7) -> float:
    """mean_i α·(−log p_s[argmax t_i]) + (1−α)·(−log p_s[y_i])."""
    s, t, y = _matrix(student_logits), _matrix(teacher_logits), _ints(labels)
    total = 0.0
    for i in range(len(s)):
        logp = log_softmax(s[i])
        total += alpha * -logp[int(np.argmax(t[i]))] + (1 - alpha) * -logp[y[i]]
    return total / len(s)


def topk_kd_loss(
    student_logits, topk_ids, topk_logprobs, tail_logmass, labels, T: float = 4.0, alpha: float = 0.7,
    tail: str = "renormalize",
) -> float:
    """KD against a top-k teacher, written out per row (see kd.topk_kd_loss for the two tail modes).

    renormalize: q_j = softmax(logprob_j / T) over the k ids; KL = Σ_j q_j (log q_j − log p_s^T[id_j]).
    bucket: teacher buckets softmax([logprob_1..k, tail] / T); student buckets softmax([log p_s[id_j],
    log Σ_{c ∉ ids} p_s[c]] / T); KL over the k+1 buckets.
    """
    s, y = _matrix(student_logits), _ints(labels)
    ids, top, tails = _ints(topk_ids), _matrix(topk_logprobs), _matrix(tail_logmass)
    total = 0.0
    for i in range(len(s)):
        if tail == "renormalize":
            teacher = _softmax(top[i] / T)
            student = _softmax(s[i] / T)[ids[i]]
        else:
            p_s = _softmax(s[i])
            student_top = p_s[ids[i]]
            outside = np.ones(len(p_s), dtype=bool)
            outside[ids[i]] = False
            student_tail = float(np.sum(p_s[outside]))  # summed directly: 1 − Σ top would cancel
            # a bucket's "logit" is its log-mass; exp(log(m)/T) = m**(1/T), then normalise
            teacher_masses = np.append(np.exp(top[i]), math.exp(tails[i]))
            student_masses = np.append(student_top, student_tail)
            teacher = teacher_masses ** (1 / T) / np.sum(teacher_masses ** (1 / T))
            student = student_masses ** (1 / T) / np.sum(student_masses ** (1 / T))
        soft = kl(teacher, student)
        hard = -log_softmax(s[i])[y[i]]
        total += alpha * T * T * soft + (1 - alpha) * hard
    return total / len(s)


def numerical_grad(f, x, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of a scalar function f(x) for a float64 array x (O(h²) error)."""
    x = _matrix(x).copy()
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + h
        up = f(x)
        x[index] = original - h
        down = f(x)
        x[index] = original
        grad[index] = (up - down) / (2 * h)
    return grad
