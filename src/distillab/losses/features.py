"""Feature-, attention- and relation-based distillation losses: pure functions of model internals.

Conventions shared by every function here (and by :mod:`distillab.losses.feature_reference`):

- Inputs may be float16, bfloat16 or float32; the arithmetic is float32 (float64 inputs stay
  float64, so ``gradcheck`` works). Each loss returns a 0-dim tensor, a mean over the batch's
  valid units (each docstring names them).
- ``mask`` is ``[B, T]``, 1/True = a real token, 0 = padding (a Hugging Face ``attention_mask``;
  bool, int or float). Padded positions are zero-filled *before* any arithmetic, so what a padded
  position holds (garbage, NaN, a cache's fill value) reaches neither the value nor any gradient.
  A batch without a single real token gives 0 with a zero gradient, not the NaN of an empty mean.
- Teacher inputs are targets: nothing here detaches them (as in :mod:`distillab.losses.kd`).
- Where student and teacher widths must agree, the caller projects first: the projection is a
  trainable layer owned by the objective, not by the loss.

Bad settings raise :class:`~distillab.errors.ConfigError` (hyper-parameters: its subclass
:class:`~distillab.losses.kd.HyperparameterError`, also a ``ValueError``); malformed tensors raise
:class:`~distillab.errors.InputError`.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from distillab.errors import ConfigError, InputError
from distillab.losses.kd import HyperparameterError

NORM_EPS = 1e-12  # F.normalize's default: a zero vector normalises to zero, not NaN
RELATION_KINDS = tuple(a + b for a in "qkv" for b in "qkv")  # "qq", "qk", ..., "vv"


# --------------------------------------------------------------------------- layer pairing


def layer_map(spec, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs to distil, 0-based, from a config's ``layer_map``.

    - ``"uniform"``: every student layer s → ``min(round(s·L_t/L_s), L_t−1)`` (Python's round;
      32 → 80 layers maps 0→0, 15→38, 31→78);
    - ``"last:K"``: the last K student layers → the last K teacher layers, in order;
    - a list of ints: the teacher layer of each student layer, in order (one per student layer);
    - a list of ``[s, t]`` pairs, as given.
    """
    ls = _layer_count("student_layers", student_layers)
    lt = _layer_count("teacher_layers", teacher_layers)
    forms = "'uniform', 'last:K', a list of teacher layers (one per student layer) or a list of [student, teacher] pairs"
    if isinstance(spec, str):
        if spec == "uniform":
            return [(s, min(round(s * lt / ls), lt - 1)) for s in range(ls)]
        if spec.startswith("last:"):
            try:
                k = int(spec[len("last:"):])
            except ValueError:
                raise ConfigError(f"layer_map {spec!r}: K in 'last:K' must be an integer") from None
            if not 1 <= k <= min(ls, lt):
                raise ConfigError(f"layer_map {spec!r}: K must be between 1 and {min(ls, lt)} "
                                  f"(the student has {ls} layers, the teacher {lt})")
            return [(ls - k + i, lt - k + i) for i in range(k)]
        raise ConfigError(f"layer_map {spec!r} is not a known form; use {forms}")
    if not isinstance(spec, (list, tuple)) or not spec:
        raise ConfigError(f"layer_map must be {forms}; got {spec!r}")
    if all(_is_int(entry) for entry in spec):
        if len(spec) != ls:
            raise ConfigError(f"layer_map lists {len(spec)} teacher layers but the student has {ls} layers; "
                              "give one teacher layer per student layer, or [student, teacher] pairs")
        pairs = list(enumerate(spec))
    elif all(isinstance(e, (list, tuple)) and len(e) == 2 and all(_is_int(v) for v in e) for e in spec):
        pairs = [tuple(entry) for entry in spec]
    else:
        raise ConfigError(f"layer_map must be {forms}; got a list mixing other entries: {spec!r}")
    for i, (s, t) in enumerate(pairs):
        if not 0 <= s < ls:
            raise ConfigError(f"layer_map entry {i}: student layer {s} is out of range; valid student layers are 0..{ls - 1}")
        if not 0 <= t < lt:
            raise ConfigError(f"layer_map entry {i}: teacher layer {t} is out of range; valid teacher layers are 0..{lt - 1}")
    return [(int(s), int(t)) for s, t in pairs]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _layer_count(name: str, value) -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- shared helpers


def _positive(name: str, value) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise HyperparameterError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def _non_negative(name: str, value) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise HyperparameterError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def _as_float(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors in one compute dtype: float32, or float64 when any input is float64."""
    dtype = torch.float32
    for tensor in tensors:
        if not tensor.dtype.is_floating_point:
            raise InputError(f"expected floating-point tensors, got dtype {tensor.dtype}")
        dtype = torch.promote_types(dtype, tensor.dtype)
    return [tensor.to(dtype) for tensor in tensors]


def _token_mask(mask, batch: int, tokens: int) -> torch.Tensor | None:
    """``mask`` as bool [B, T] (True = real token), or None for "every position is real"."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (batch, tokens):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(f"mask must be a [B, T] = {(batch, tokens)} tensor (1 = real token), got {shape}")
    return mask if mask.dtype == torch.bool else mask != 0


def _zero_padding(states: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """[B, T, D] states with padded tokens set to 0 (masked_fill: their gradient is exactly 0)."""
    return states if keep is None else states.masked_fill(~keep[..., None], 0)


def _mean(total: torch.Tensor, count) -> torch.Tensor:
    """total / count, and 0 (zero gradient) for count 0: total is then an empty or all-zero sum."""
    if isinstance(count, torch.Tensor):
        return total / count.clamp_min(1).to(total.dtype)
    return total / max(count, 1)


def _same(name: str, tensor: torch.Tensor, expected: tuple, why: str) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise InputError(f"{name} must have shape {tuple(expected)} ({why}), got {tuple(tensor.shape)}")


# --------------------------------------------------------------------------- hidden states


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None,
               normalize: bool = False) -> torch.Tensor:
    """FitNets / TinyBERT hidden-state loss: ``nn.MSELoss`` over the valid entries.

    ``student`` is already projected to the teacher's width by the caller. Pooled ``[B, D]`` or
    token-level ``[B, T, D]`` (then ``mask [B, T]``). Value: mean over valid positions of the mean
    over D of (s − t)². ``normalize=True`` is the cosine objective instead, blind to the states'
    scale: mean over valid positions of ``1 − cos(s, t) = ½·Σ_d (ŝ − t̂)²`` on unit vectors (summed
    over D, not averaged: averaged, it would shrink by 2/D and vanish beside any other term).
    """
    if student.dim() not in (2, 3):
        raise InputError(f"student must be pooled [B, D] or token-level [B, T, D] states, got shape {tuple(student.shape)}")
    _same("teacher", teacher, student.shape, "project the student to the teacher's width first")
    s, t = _as_float(student, teacher)
    if s.dim() == 2:
        if mask is not None:
            raise InputError("mask is for token-level [B, T, D] states; pooled [B, D] states have no padding")
        s, t = s[:, None], t[:, None]
    keep = _token_mask(mask, s.shape[0], s.shape[1])
    s, t = _zero_padding(s, keep), _zero_padding(t, keep)
    if normalize:
        s, t = F.normalize(s, dim=-1, eps=NORM_EPS), F.normalize(t, dim=-1, eps=NORM_EPS)
    # [B, T]; 0 at padding
    per_position = (s - t).pow(2).sum(-1) / 2 if normalize else (s - t).pow(2).mean(-1)
    return _mean(per_position.sum(), per_position.numel() if keep is None else keep.sum())


# --------------------------------------------------------------------------- attention maps


def _match_heads(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the side with more heads in consecutive groups so both have min(H_s, H_t) heads."""
    if student.dim() != 4 or student.shape[-1] != student.shape[-2]:
        raise InputError(f"student_attn must be [B, H, T, T] attention maps, got shape {tuple(student.shape)}")
    if teacher.dim() != 4:
        raise InputError(f"teacher_attn must be [B, H, T, T] attention maps, got shape {tuple(teacher.shape)}")
    b, hs, n, _ = student.shape
    ht = teacher.shape[1]
    _same("teacher_attn", teacher, (b, ht, n, n), "the same batch and tokens as student_attn")
    if hs == ht:
        return student, teacher
    if ht % hs == 0:
        return student, teacher.reshape(b, hs, ht // hs, n, n).mean(2)
    if hs % ht == 0:
        return student.reshape(b, ht, hs // ht, n, n).mean(2), teacher
    raise ConfigError(f"attention heads: the student has {hs} heads and the teacher {ht}; one count must divide "
                      "the other (heads are averaged in consecutive groups); pair other layers or models")


def _pair_mask(mask, batch: int, tokens: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(keep [B, T], valid [B, 1, T, T]: query and key both real tokens), or (None, None) when all are."""
    keep = _token_mask(mask, batch, tokens)
    return (None, None) if keep is None else (keep, keep[:, None, :, None] & keep[:, None, None, :])


def attention_kl(student_attn: torch.Tensor, teacher_attn: torch.Tensor, mask: torch.Tensor | None = None,
                 eps: float = 1e-8) -> torch.Tensor:
    """TinyBERT attention transfer as KL(teacher ‖ student) over keys, per query row.

    Maps are ``[B, H, T, T]`` probabilities (rows = queries, softmax over keys). Unequal head
    counts: the side with more heads is averaged in consecutive groups. Both sides are
    ``log(clamp(p, min=eps))`` (a post-softmax map can hold exact zeros); teacher zeros add 0.
    Padded query rows and key columns are excluded; the rows are not renormalised. Mean over valid
    (batch, head, query).
    """
    eps = _positive("eps", eps)
    s, t = _as_float(student_attn, teacher_attn)
    s, t = _match_heads(s, t)
    b, h, n, _ = s.shape
    keep, valid = _pair_mask(mask, b, n)
    if valid is not None:  # excluded entries: teacher 0 and student 1 make their term exactly 0
        s, t = s.masked_fill(~valid, 1), t.masked_fill(~valid, 0)
    rows = (t * (t.clamp_min(eps).log() - s.clamp_min(eps).log())).sum(-1)  # [B, H, T]
    return _mean(rows.sum(), rows.numel() if keep is None else h * keep.sum())


def attention_mse(student_attn: torch.Tensor, teacher_attn: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """TinyBERT attention MSE: mean squared difference over valid (batch, head, query, key) entries.

    Head counts are matched as in :func:`attention_kl`.
    """
    s, t = _as_float(student_attn, teacher_attn)
    s, t = _match_heads(s, t)
    b, h, n, _ = s.shape
    keep, valid = _pair_mask(mask, b, n)
    if valid is not None:
        s, t = s.masked_fill(~valid, 0), t.masked_fill(~valid, 0)
    squares = (s - t).pow(2)
    return _mean(squares.sum(), squares.numel() if keep is None else h * keep.sum(1).pow(2).sum())


def _spatial_map(states: torch.Tensor, keep: torch.Tensor | None, p: float) -> torch.Tensor:
    """Zagoruyko & Komodakis's attention map: mean over channels of |h|^p, L2-normalised over positions."""
    if states.dim() == 4:  # [B, C, H, W] → [B, H·W, C]
        states = states.flatten(2).transpose(1, 2)
    a = _zero_padding(states, keep).abs().pow(p).mean(-1)  # [B, T]; 0 at padding
    return F.normalize(a, dim=-1, eps=NORM_EPS)


def attention_transfer(student_states: torch.Tensor, teacher_states: torch.Tensor, mask: torch.Tensor | None = None,
                       p: float = 2) -> torch.Tensor:
    """Activation-based attention transfer (Zagoruyko & Komodakis 2017) on token states.

    Token states ``[B, T, D]`` (widths may differ): a = mean over D of |h|^p → ``[B, T]``, padded
    tokens 0, L2-normalised over T. Conv maps ``[B, C, H, W]`` (no mask; spatial sizes equal,
    channels may differ): mean over C, positions flattened row-major. Loss =
    ``(a_s − a_t).pow(2).mean()`` over B and all T positions, exactly the authors' ``at_loss``
    (their β/2 weight is the caller's): padded positions count in the denominator (as 0), so
    the value scales with 1/T for a given padded length. The authors' ``x.pow(p)`` is |x|^p for
    even p; |h|^p keeps odd p a magnitude.
    """
    p = _positive("p", p)
    if student_states.dim() not in (3, 4) or teacher_states.dim() != student_states.dim():
        raise InputError("attention_transfer takes token states [B, T, D] or conv maps [B, C, H, W], the same kind "
                         f"for both; got shapes {tuple(student_states.shape)} and {tuple(teacher_states.shape)}")
    s, t = _as_float(student_states, teacher_states)
    if s.dim() == 4:
        if mask is not None:
            raise InputError("mask is for token states [B, T, D]; conv maps [B, C, H, W] have no padding")
        same = (s.shape[0],) + tuple(s.shape[2:])
        if (t.shape[0],) + tuple(t.shape[2:]) != same:
            raise InputError(f"teacher_states must have batch and spatial size {same} like the student "
                             f"(channels may differ), got {tuple(t.shape)}")
        keep = None
    else:
        if t.shape[:2] != s.shape[:2]:
            raise InputError(f"teacher_states must have the student's [B, T] = {tuple(s.shape[:2])} "
                             f"(widths may differ), got {tuple(t.shape)}")
        keep = _token_mask(mask, s.shape[0], s.shape[1])
    return (_spatial_map(s, keep, p) - _spatial_map(t, keep, p)).pow(2).mean()


# --------------------------------------------------------------------------- MiniLM relations


def _relation_logp(x: torch.Tensor, y: torch.Tensor, heads: int, keep) -> torch.Tensor:
    """log softmax(X_r Y_rᵀ / √(D/R)) over keys, padded keys excluded: [B, R, T, T]."""
    b, n, width = x.shape
    size = width // heads
    x, y = _zero_padding(x, keep), _zero_padding(y, keep)
    xr = x.reshape(b, n, heads, size).transpose(1, 2)  # [B, R, T, d]
    yr = y.reshape(b, n, heads, size).transpose(1, 2)
    scores = xr @ yr.transpose(-1, -2) / math.sqrt(size)
    if keep is not None:  # finfo.min, not -inf: a batch row without real tokens stays finite
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, -1)


def minilm_relations(student_qkv: dict, teacher_qkv: dict, relation_heads: int, mask: torch.Tensor | None = None,
                     relations=("qq", "kk", "vv")) -> torch.Tensor:
    """MiniLM / MiniLMv2 self-attention relation distillation.

    ``student_qkv`` / ``teacher_qkv``: ``{"q", "k", "v"} → [B, T, D]`` (one layer's projections
    before the head split; widths may differ between the models). Each is split into
    ``relation_heads`` heads of size D/R; relation "xy" = softmax(X_r Y_rᵀ / √(D/R)) over keys,
    padded keys masked out ("qq" is Q-Q; "qk" is MiniLMv1's attention distribution). Loss per
    relation: KL(teacher ‖ student) averaged over valid (batch, relation head, query); the
    relations' losses are summed (MiniLMv2). Only the keys the relations use are read.
    """
    if not _is_int(relation_heads) or relation_heads < 1:
        raise HyperparameterError(f"relation_heads must be an integer >= 1, got {relation_heads!r}")
    if isinstance(relations, str) or not isinstance(relations, (list, tuple)) or not relations:
        raise ConfigError(f"relations must be a non-empty list of {', '.join(RELATION_KINDS)}, got {relations!r}")
    bad = [r for r in relations if r not in RELATION_KINDS]
    if bad:
        raise ConfigError(f"relations: unknown relation {bad[0]!r}; use two of q, k, v, e.g. 'qq', 'kk', 'vv'")
    names = [name for name in "qkv" if name in "".join(relations)]
    tensors = {}
    for side, qkv in (("student", student_qkv), ("teacher", teacher_qkv)):
        if not isinstance(qkv, dict) or any(name not in qkv for name in names):
            raise InputError(f"{side}_qkv must be a dict with keys {names} ([B, T, D] tensors) for relations {list(relations)}")
        tensors[side] = dict(zip(names, _as_float(*(qkv[name] for name in names))))
    first = tensors["student"][names[0]]
    if first.dim() != 3:
        raise InputError(f"student_qkv[{names[0]!r}] must be [B, T, D], got shape {tuple(first.shape)}")
    for side in tensors:
        for name, tensor in tensors[side].items():
            if tensor.dim() != 3 or tensor.shape[:2] != first.shape[:2]:
                raise InputError(f"{side}_qkv[{name!r}] must be [B, T, D] with [B, T] = {tuple(first.shape[:2])}, "
                                 f"got shape {tuple(tensor.shape)}")
            if tensor.shape[-1] % relation_heads:
                raise ConfigError(f"relation_heads={relation_heads} does not divide the {side}'s {name} width "
                                  f"D={tensor.shape[-1]}; choose relation_heads dividing every q/k/v width")
    b, n, _ = first.shape
    keep = _token_mask(mask, b, n)
    valid = None if keep is None else keep[:, None, :, None] & keep[:, None, None, :]
    count = b * relation_heads * n if keep is None else relation_heads * keep.sum()
    total = first.new_zeros(())
    for relation in relations:
        logps = []
        for side in ("teacher", "student"):
            x, y = tensors[side][relation[0]], tensors[side][relation[1]]
            if x.shape[-1] != y.shape[-1]:
                raise InputError(f"relation {relation!r}: the {side}'s {relation[0]} and {relation[1]} widths "
                                 f"differ ({x.shape[-1]} vs {y.shape[-1]})")
            logp = _relation_logp(x, y, relation_heads, keep)
            logps.append(logp if valid is None else logp.masked_fill(~valid, 0))
        teacher_logp, student_logp = logps
        teacher_p = teacher_logp.exp() if valid is None else teacher_logp.exp().masked_fill(~valid, 0)
        total = total + _mean((teacher_p * (teacher_logp - student_logp)).sum(), count)
    return total


# --------------------------------------------------------------------------- relations between samples


def _distances(x: torch.Tensor) -> torch.Tensor:
    """[B, B] Euclidean distances from explicit differences (no |a|²+|b|²−2ab cancellation), diagonal 0."""
    squared = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return squared.clamp_min(1e-12).sqrt().masked_fill(eye, 0)  # clamp: a finite gradient for duplicate rows


def _angles(x: torch.Tensor) -> torch.Tensor:
    """[B, B, B]: entry (a, b, c) = e_ab · e_ac with e_ab = normalise(x_b − x_a), the cosine at vertex a."""
    e = F.normalize(x[None, :, :] - x[:, None, :], dim=-1, eps=NORM_EPS)
    return e @ e.transpose(1, 2)


def rkd(student: torch.Tensor, teacher: torch.Tensor, distance_weight: float = 1.0,
        angle_weight: float = 2.0) -> torch.Tensor:
    """Relational KD (Park et al. 2019) on pooled ``[B, Ds]`` / ``[B, Dt]`` representations.

    As the authors' code (lenscloth/RKD): distance loss = smooth_l1 (β = 1) between the [B, B]
    distance matrices, each divided by its mean off-diagonal distance, averaged over all B² entries
    (diagonal included, 0 on both sides); angle loss = smooth_l1 between the cosines e_ab·e_ac of
    all B³ triples (degenerate ones are 0 or 1 on both sides and add 0). Returns
    ``distance_weight·distance + angle_weight·angle``. Fewer than 2 rows: 0 (no distance exists);
    fewer than 3: the angle term is 0 (no angle exists). Two identical student rows whose teacher
    rows differ give a huge angle gradient, as in the authors' code.
    """
    distance_weight = _non_negative("distance_weight", distance_weight)
    angle_weight = _non_negative("angle_weight", angle_weight)
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
        raise InputError(f"rkd takes pooled [B, Ds] and [B, Dt] representations with the same B, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    s, t = _as_float(student, teacher)
    b = s.shape[0]
    loss = s[:0].sum()  # 0, still attached to the student's graph
    if b < 2:
        return loss
    if distance_weight:
        pairs = b * (b - 1)
        ds, dt = _distances(s), _distances(t)
        loss = loss + distance_weight * F.smooth_l1_loss(ds / (ds.sum() / pairs), dt / (dt.sum() / pairs), beta=1.0)
    if angle_weight and b >= 3:
        loss = loss + angle_weight * F.smooth_l1_loss(_angles(s), _angles(t), beta=1.0)
    return loss


def crd_lite(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """In-batch contrastive distillation (InfoNCE, a memory-bank-free CRD).

    Both ``[B, D]``, already projected to one width; L2-normalised; logits = s·tᵀ / temperature;
    cross-entropy with the diagonal as targets (student row i must pick teacher row i among the
    batch's teacher rows), mean over rows. One row: 0 (nothing to contrast with).
    """
    temperature = _positive("temperature", temperature)
    if student.dim() != 2:
        raise InputError(f"student must be [B, D], got shape {tuple(student.shape)}")
    _same("teacher", teacher, student.shape, "project both to a shared width first")
    s, t = _as_float(student, teacher)
    if s.shape[0] == 0:
        return s.sum()
    s, t = F.normalize(s, dim=-1, eps=NORM_EPS), F.normalize(t, dim=-1, eps=NORM_EPS)
    logits = s @ t.T / temperature
    return F.cross_entropy(logits, torch.arange(s.shape[0], device=s.device))
