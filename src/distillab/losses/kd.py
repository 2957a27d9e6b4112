"""Distillation losses: pure functions of logits, labels and hyper-parameters.

Conventions shared by every function here (and by :mod:`distillab.losses.reference`):

- logits are ``[..., K]``; leading dimensions are flattened into rows, so a ``[B, L, V]`` language
  model batch is ``B·L`` rows. Labels have the leading shape (``[...]``, integer class ids).
- KL-type terms are **summed over classes and averaged over rows** (PyTorch's ``batchmean``), the
  convention of Hinton et al. and of the reference experiment; ``reduction="mean"`` (÷ rows·K) is a
  known silent bug, not an option.
- Temperature divides both logit sets. Only :func:`kd_loss` (and its sparse and chunked twins)
  multiplies the soft term by ``T²``, which keeps its gradient on the same scale as the CE term
  when T changes; the plain divergences (:func:`kl_loss`, :func:`reverse_kl_loss`,
  :func:`generalized_jsd_loss`) are divergences at temperature T, like TRL's.
- Teacher inputs are targets: nothing here detaches them, but the chunked path returns no
  gradient for them.
- Labels are class ids in [0, K), or ``-100`` (:data:`IGNORE_INDEX`, HF's padding label): an
  ignored row leaves every term and the mean's denominator, so KL and CE average over the same rows.
  When every row is ignored the loss is 0 with a zero gradient (a padding-only micro-batch must not
  turn an accumulated gradient into NaN).
- Teacher rows must have a softmax: a NaN or +inf teacher value, or a row with no finite value,
  raises :class:`~distillab.errors.InputError` naming the row (KL would otherwise count it as 0).
  ``-inf`` entries are allowed: they are classes the teacher gives probability 0.

Bad hyper-parameters raise :class:`HyperparameterError`, which is both a
:class:`~distillab.errors.ConfigError` (the CLI prints it on one line) and a :class:`ValueError`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from distillab.errors import ConfigError, InputError

TAIL_MODES = ("renormalize", "bucket")
IGNORE_INDEX = -100  # the label F.cross_entropy and HF use for "no target at this position"


class HyperparameterError(ConfigError, ValueError):
    """A loss hyper-parameter (T, alpha, beta, epsilon, tail, chunk_rows) is out of range."""


# --------------------------------------------------------------------------- validation


def _temperature(T) -> float:
    value = float(T)
    if not math.isfinite(value) or value <= 0:
        raise HyperparameterError(
            f"temperature T must be a finite number > 0, got {T!r}; the reference experiment uses T=4"
        )
    return value


def _unit_interval(name: str, value, *, upper_open: bool = False) -> float:
    number = float(value)
    upper_ok = number < 1 if upper_open else number <= 1
    if not (math.isfinite(number) and number >= 0 and upper_ok):
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise HyperparameterError(f"{name} must lie in {interval}, got {value!r}")
    return number


def _as_rows(student_logits: torch.Tensor) -> torch.Tensor:
    if student_logits.dim() < 2:
        raise InputError(
            f"student_logits must be [..., K] with at least 2 dimensions, got shape {tuple(student_logits.shape)}"
        )
    return student_logits.reshape(-1, student_logits.shape[-1])


def _same_rows(name: str, tensor: torch.Tensor, student_logits: torch.Tensor, trailing: tuple = ()) -> torch.Tensor:
    expected = tuple(student_logits.shape[:-1]) + trailing
    if tuple(tensor.shape) != expected:
        raise InputError(f"{name} must have shape {expected} to match student_logits, got {tuple(tensor.shape)}")
    return tensor.reshape((-1,) + trailing)


def _labels(labels, student_logits: torch.Tensor, alpha: float) -> torch.Tensor | None:
    """Rows of labels, or None when the hard term has zero weight (then labels may be omitted)."""
    if labels is None:
        if alpha < 1:
            raise InputError("labels are required when alpha < 1 (the cross-entropy term has weight 1 - alpha)")
        return None
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise InputError(f"labels must be integer class ids, got dtype {labels.dtype}")
    labels = _same_rows("labels", labels, student_logits).long()
    classes = student_logits.shape[-1]
    bad = ((labels < 0) | (labels >= classes)) & (labels != IGNORE_INDEX)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise InputError(f"labels row {row} is {int(labels[row])}: labels must be class ids in [0, {classes}) "
                         f"or {IGNORE_INDEX} (ignored)")
    return labels


def _kept(labels: torch.Tensor | None) -> torch.Tensor | None:
    """Mask of the rows to train on, or None when every row counts (the usual case, nothing to copy)."""
    if labels is None:
        return None
    keep = labels != IGNORE_INDEX
    return None if bool(keep.all()) else keep


def _only(keep: torch.Tensor | None, *tensors):
    """The kept rows of each tensor (None stays None)."""
    if keep is None:
        return tensors
    return tuple(None if t is None else t[keep] for t in tensors)


def _check_teacher(name: str, values: torch.Tensor, keep: torch.Tensor | None, *, per_row: bool = True) -> None:
    """Refuse a kept teacher row without a softmax: NaN or +inf anywhere, or (``per_row``) no finite value.

    F.log_softmax turns such a row into NaN and ``_kl_rows`` would count it as KL = 0: a silent
    hole in the distillation signal. -inf alone is a class with probability 0 and is fine.
    """
    # A row's max is NaN, +inf or -inf exactly in those cases (one reduction, no [rows, K] temporaries).
    bad = ~torch.isfinite(values.amax(-1)) if per_row else torch.isnan(values) | (values == float("inf"))
    if keep is not None:
        bad = bad & keep
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise InputError(
            f"{name} row {row} is not a usable teacher row (NaN, +inf, or no finite value): "
            "the teacher cache or teacher run produced non-finite outputs; rebuild it"
        )


# --------------------------------------------------------------------------- row-wise cores


def _kl_rows(target_logp: torch.Tensor, input_logp: torch.Tensor) -> torch.Tensor:
    """Per row Σ_k p_k (log p_k − log q_k) with p = exp(target_logp): KL(target ‖ input).

    Classes where the target puts no mass add exactly 0 (0·log 0 = 0), which matters for the empty
    tail bucket of a k = K cache and for float32 underflow of very peaked teachers.
    """
    p = target_logp.exp()
    return torch.where(p > 0, p * (target_logp - input_logp), torch.zeros((), dtype=p.dtype, device=p.device)).sum(-1)


def _ce_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


def _kd_rows(student: torch.Tensor, teacher: torch.Tensor, labels, T: float, alpha: float) -> torch.Tensor:
    """Per-row Hinton KD: α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y)."""
    # KL argument order: the teacher is the target distribution, the student the approximation.
    soft = _kl_rows(F.log_softmax(teacher.to(student.dtype) / T, -1), F.log_softmax(student / T, -1))
    rows = (alpha * T * T) * soft  # T² keeps the soft gradient (which scales as 1/T²) comparable to CE
    if alpha < 1:
        rows = rows + (1 - alpha) * _ce_rows(student, labels)  # unsoftened logits: CE at T = 1
    return rows


def _topk_kd_rows(student, topk_ids, topk_logprobs, tail_logmass, labels, T: float, alpha: float, tail: str):
    """Per-row KD against a top-k teacher; see :func:`topk_kd_loss` for the two tail treatments."""
    ids = topk_ids.long()
    teacher_top = topk_logprobs.to(student.dtype)  # [N, k] log p_t, before KD's temperature
    if tail == "renormalize":
        # Teacher restricted to its top-k and renormalised at T; the student keeps its full-vocab
        # normaliser, so mass it puts outside the teacher's top-k is penalised.
        teacher_logp = F.log_softmax(teacher_top / T, -1)
        student_logp = F.log_softmax(student / T, -1).gather(-1, ids)  # [N, k]
    else:
        # k+1 buckets: the top-k classes and one tail pseudo-class whose logit is its log-mass; the
        # temperature is applied to this (k+1)-way distribution on both sides.
        teacher_logp = F.log_softmax(torch.cat([teacher_top, tail_logmass.to(student.dtype)[:, None]], -1) / T, -1)
        student_logp1 = F.log_softmax(student, -1)  # [N, V]
        in_topk = torch.zeros_like(student, dtype=torch.bool).scatter_(-1, ids, True)
        # finfo.min, not -inf: an empty tail (k = V) must stay finite so its gradient is 0, not NaN.
        student_tail = torch.logsumexp(student_logp1.masked_fill(in_topk, torch.finfo(student.dtype).min), -1)
        student_buckets = torch.cat([student_logp1.gather(-1, ids), student_tail[:, None]], -1)  # [N, k+1]
        student_logp = F.log_softmax(student_buckets / T, -1)
    rows = (alpha * T * T) * _kl_rows(teacher_logp, student_logp)
    if alpha < 1:
        rows = rows + (1 - alpha) * _ce_rows(student, labels)
    return rows


def _chunked_value_and_grad(rows_fn: Callable, chunk_rows: int, student: torch.Tensor, row_tensors: tuple,
                            wants_grad: bool):
    """(mean over rows of ``rows_fn``, its gradient w.r.t. ``student`` or None), one chunk of rows at a time."""
    n = student.shape[0]
    grad = torch.empty_like(student) if wants_grad else None
    total = torch.zeros((), dtype=student.dtype, device=student.device)
    for start in range(0, n, chunk_rows):
        rows = slice(start, start + chunk_rows)
        chunk = student[rows].detach().requires_grad_(wants_grad)
        with torch.enable_grad():
            chunk_mean = rows_fn(chunk, *(t[rows] for t in row_tensors)).sum() / n  # its share of the mean
        if wants_grad:
            (grad[rows],) = torch.autograd.grad(chunk_mean, chunk)
        total += chunk_mean.detach()
    return total, grad


class _RowChunkedMean(torch.autograd.Function):
    """Mean over rows of ``rows_fn`` evaluated chunk by chunk, with bounded memory.

    Forward computes each chunk's value and its gradient w.r.t. the student logits (by autograd on
    the same row function the dense path uses), keeps only that gradient and frees the chunk's
    softmaxes. Peak memory is one gradient the size of the student logits plus one chunk's
    intermediates, instead of every intermediate for every row.

    Backward hands the stored gradient on without a copy (the usual case), and with it its
    ownership: autograd may keep it as the leaf's ``.grad`` and later add into it or zero it in
    place. So a second backward through the same graph (``retain_graph``) never reuses it but
    recomputes the gradient chunk by chunk.
    """

    @staticmethod
    def forward(ctx, rows_fn: Callable, chunk_rows: int, student: torch.Tensor, *row_tensors: torch.Tensor):
        total, grad = _chunked_value_and_grad(rows_fn, chunk_rows, student, row_tensors, ctx.needs_input_grad[2])
        ctx.grad, ctx.recompute = grad, (rows_fn, chunk_rows)
        ctx.save_for_backward(student, *row_tensors)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        student, *row_tensors = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[2]:
            if ctx.grad is None:  # handed over by an earlier backward: compute it afresh
                rows_fn, chunk_rows = ctx.recompute
                _, ctx.grad = _chunked_value_and_grad(rows_fn, chunk_rows, student, row_tensors, True)
            if bool(grad_output == 1):
                grad, ctx.grad = ctx.grad, None
            else:
                grad = ctx.grad * grad_output
        return (None, None, grad) + (None,) * len(row_tensors)


def _mean_rows(rows_fn: Callable, student: torch.Tensor, row_tensors: tuple, chunk_rows: int | None = None):
    if chunk_rows is not None and (int(chunk_rows) != chunk_rows or chunk_rows < 1):
        raise HyperparameterError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if student.shape[0] == 0:  # every row ignored: 0 with a zero gradient, not the NaN of an empty mean
        return student.sum()
    if chunk_rows is None:
        return rows_fn(student, *row_tensors).mean()
    return _RowChunkedMean.apply(rows_fn, int(chunk_rows), student, *row_tensors)


# --------------------------------------------------------------------------- public losses


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy; with ε > 0 the target is (1−ε)·one-hot + ε/K (Szegedy et al. 2016)."""
    epsilon = _unit_interval("label_smoothing (epsilon)", label_smoothing, upper_open=True)
    student = _as_rows(student_logits)
    labels = _labels(labels, student_logits, 0.0)
    student, labels = _only(_kept(labels), student, labels)
    return _mean_rows(lambda s, y: F.cross_entropy(s, y, label_smoothing=epsilon, reduction="none"), student, (labels,))


def kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Forward KL(softmax(t/T) ‖ softmax(s/T)), batchmean, no T² factor (the teacher is the target)."""
    T = _temperature(T)
    student = _as_rows(student_logits)
    teacher = _same_rows("teacher_logits", teacher_logits, student_logits, (student.shape[-1],))
    _check_teacher("teacher_logits", teacher, None)
    return _kl_rows(F.log_softmax(teacher.to(student.dtype) / T, -1), F.log_softmax(student / T, -1)).mean()


def reverse_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Reverse KL(softmax(s/T) ‖ softmax(t/T)), batchmean, no T² factor: mode-seeking (Gu et al. 2024, MiniLLM)."""
    T = _temperature(T)
    student = _as_rows(student_logits)
    teacher = _same_rows("teacher_logits", teacher_logits, student_logits, (student.shape[-1],))
    _check_teacher("teacher_logits", teacher, None)
    return _kl_rows(F.log_softmax(student / T, -1), F.log_softmax(teacher.to(student.dtype) / T, -1)).mean()


def generalized_jsd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5, T: float = 1.0
) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence JSD(β), batchmean, following TRL's ``generalized_jsd_loss``.

    With m = β·p_t + (1−β)·p_s (both at temperature T): JSD(β) = β·KL(p_t ‖ m) + (1−β)·KL(p_s ‖ m).
    The endpoints are special-cased exactly as in TRL (GKDTrainer): β = 0 is the forward
    KL(p_t ‖ p_s) = :func:`kl_loss`, β = 1 the reverse KL(p_s ‖ p_t) = :func:`reverse_kl_loss`.
    (The formula itself tends to 0 at both ends; the endpoints are a definition, not a limit.)
    """
    beta = _unit_interval("beta", beta)
    T = _temperature(T)
    student = _as_rows(student_logits)
    teacher = _same_rows("teacher_logits", teacher_logits, student_logits, (student.shape[-1],))
    _check_teacher("teacher_logits", teacher, None)
    student_logp = F.log_softmax(student / T, -1)
    teacher_logp = F.log_softmax(teacher.to(student.dtype) / T, -1)
    if beta == 0:
        return _kl_rows(teacher_logp, student_logp).mean()
    if beta == 1:
        return _kl_rows(student_logp, teacher_logp).mean()
    # log m computed in log space: logsumexp(log p_s + log(1−β), log p_t + log β)
    mixture_logp = torch.logaddexp(student_logp + math.log(1 - beta), teacher_logp + math.log(beta))
    return (beta * _kl_rows(teacher_logp, mixture_logp) + (1 - beta) * _kl_rows(student_logp, mixture_logp)).mean()


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None, T: float = 4.0, alpha: float = 0.7
) -> torch.Tensor:
    """Hinton KD: α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y), batchmean.

    The CE term uses the unsoftened student logits. Defaults are the reference experiment's
    (T=4, α=0.7). ``labels`` may be None when α = 1.
    """
    T, alpha = _temperature(T), _unit_interval("alpha", alpha)
    student = _as_rows(student_logits)
    teacher = _same_rows("teacher_logits", teacher_logits, student_logits, (student.shape[-1],))
    labels = _labels(labels, student_logits, alpha)
    keep = _kept(labels)
    _check_teacher("teacher_logits", teacher, keep)
    student, teacher, labels = _only(keep, student, teacher, labels)
    return _mean_rows(lambda s, t, y: _kd_rows(s, t, y, T, alpha), student, (teacher, labels))


def chunked_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    T: float = 4.0,
    alpha: float = 0.7,
    chunk_rows: int = 512,
) -> torch.Tensor:
    """:func:`kd_loss` computed ``chunk_rows`` rows at a time, for large vocabularies.

    Same value and student gradient as :func:`kd_loss` (same row function). Peak memory is the
    [rows, V] student gradient plus about 5·chunk_rows·V floats of one chunk's softmaxes, instead
    of about 5·rows·V for the dense path (benchmarks/bench_kd_memory.py). No gradient flows to the
    teacher logits, and the result cannot be differentiated twice.
    """
    T, alpha = _temperature(T), _unit_interval("alpha", alpha)
    student = _as_rows(student_logits)
    teacher = _same_rows("teacher_logits", teacher_logits, student_logits, (student.shape[-1],))
    labels = _labels(labels, student_logits, alpha)
    keep = _kept(labels)
    _check_teacher("teacher_logits", teacher, keep)
    student, teacher, labels = _only(keep, student, teacher, labels)
    row_tensors = (teacher,) if labels is None else (teacher, labels)

    def rows_fn(chunk, teacher_chunk, label_chunk=None):
        return _kd_rows(chunk, teacher_chunk, label_chunk, T, alpha)

    return _mean_rows(rows_fn, student, row_tensors, chunk_rows)


def topk_kd_loss(
    student_logits: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    tail_logmass: torch.Tensor,
    labels: torch.Tensor | None,
    T: float = 4.0,
    alpha: float = 0.7,
    tail: str = "renormalize",
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Hinton KD against a sparse top-k teacher cache, the tail handled explicitly.

    ``topk_ids`` [..., k], ``topk_logprobs`` [..., k] (log_softmax of the teacher logits that
    :func:`kd_loss` would get, i.e. with a cache's post-hoc temperature already in them, as the
    teacher cache stores them) and ``tail_logmass`` [...] (log of the teacher mass outside the
    top-k; −inf when k = K). KD's T is applied on top, as in :func:`kd_loss`. ``tail``:

    - ``"renormalize"``: the teacher is its top-k renormalised at T; the student's probabilities
      over the same ids keep their full-vocabulary normaliser (mass outside is penalised).
      ``tail_logmass`` is not used.
    - ``"bucket"``: the tail is one extra pseudo-class on both sides (student tail = its mass
      outside the teacher's top-k); temperature is applied to the (k+1)-way distributions. At T=1
      this is the exact KL of the coarse-grained distributions.

    With k = K both equal :func:`kd_loss`. ``chunk_rows`` bounds memory as in :func:`chunked_kd_loss`.
    """
    T, alpha = _temperature(T), _unit_interval("alpha", alpha)
    if tail not in TAIL_MODES:
        raise HyperparameterError(f"tail must be one of {TAIL_MODES}, got {tail!r}")
    student = _as_rows(student_logits)
    k = topk_ids.shape[-1] if topk_ids.dim() else 0
    if not 1 <= k <= student.shape[-1]:
        raise InputError(f"topk_ids must be [..., k] with 1 <= k <= K={student.shape[-1]}, got shape {tuple(topk_ids.shape)}")
    ids = _same_rows("topk_ids", topk_ids, student_logits, (k,))
    logprobs = _same_rows("topk_logprobs", topk_logprobs, student_logits, (k,))
    tail_mass = _same_rows("tail_logmass", tail_logmass, student_logits)
    labels = _labels(labels, student_logits, alpha)
    keep = _kept(labels)
    _check_teacher("topk_logprobs", logprobs, keep)
    _check_teacher("tail_logmass", tail_mass, keep, per_row=False)  # -inf (k = K: no tail) is fine
    student, ids, logprobs, tail_mass, labels = _only(keep, student, ids, logprobs, tail_mass, labels)
    row_tensors = (ids, logprobs, tail_mass) if labels is None else (ids, logprobs, tail_mass, labels)

    def rows_fn(chunk, ids_chunk, logprobs_chunk, tail_chunk, label_chunk=None):
        return _topk_kd_rows(chunk, ids_chunk, logprobs_chunk, tail_chunk, label_chunk, T, alpha, tail)

    return _mean_rows(rows_fn, student, row_tensors, chunk_rows)


def hard_kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None, alpha: float = 0.7
) -> torch.Tensor:
    """Hard-label KD: α·CE(s, argmax t) + (1−α)·CE(s, y) — the teacher's top-1 only.

    This is the "synthetic labels / closed-API teacher" recipe: no soft targets, no temperature.
    """
    alpha = _unit_interval("alpha", alpha)
    student = _as_rows(student_logits)
    teacher = _same_rows("teacher_logits", teacher_logits, student_logits, (student.shape[-1],))
    labels = _labels(labels, student_logits, alpha)
    keep = _kept(labels)
    _check_teacher("teacher_logits", teacher, keep)  # the argmax of a NaN row is meaningless
    student, teacher, labels = _only(keep, student, teacher, labels)

    def rows_fn(s, t, y):
        rows = alpha * _ce_rows(s, t.argmax(-1))
        return rows + (1 - alpha) * _ce_rows(s, y) if alpha < 1 else rows

    return _mean_rows(rows_fn, student, (teacher, labels))


def topk_targets(teacher_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (topk_ids int32, topk_logprobs, tail_logmass) triple a top-k cache stores, at temperature 1."""
    logp = F.log_softmax(teacher_logits.detach(), -1)
    top_logp, top_ids = logp.topk(k, dim=-1)
    outside = torch.ones_like(logp, dtype=torch.bool).scatter_(-1, top_ids, False)
    tail = torch.logsumexp(logp.masked_fill(~outside, float("-inf")), -1)  # −inf when k = K
    return top_ids.to(torch.int32), top_logp, tail
