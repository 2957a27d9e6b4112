"""Float64 reference implementations ("oracles") of the losses in :mod:`distillab.losses.features`.

Written independently of features.py and as plainly as possible: numpy float64, explicit loops
over batch, head, query and key, the paper's formula on each line, no torch. Slow on purpose; they
exist for the tests and for ``distillab check-loss --objective``. Inputs are array-likes (numpy or
torch, converted to float64; masks: nonzero = real token); every function returns a Python float.
"""

from __future__ import annotations

import math

import numpy as np

from distillab.losses.reference import kl, log_softmax

NORM_EPS = 1e-12  # a vector shorter than this is divided by it (so a zero vector stays zero)


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _keep(mask, batch: int, tokens: int) -> np.ndarray:
    """bool [B, T]: True = real token; no mask = every token is real."""
    if mask is None:
        return np.ones((batch, tokens), dtype=bool)
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask) != 0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(math.sqrt(float(np.sum(v * v))), NORM_EPS)


def _smooth_l1(x: float) -> float:
    """Huber with β = 1: ½x² for |x| < 1, |x| − ½ otherwise."""
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


# --------------------------------------------------------------------------- hidden states


def hidden_mse(student, teacher, mask=None, normalize: bool = False) -> float:
    """mean over valid positions (b, i) of (1/D)·Σ_d (s_bid − t_bid)²; normalize: of 1 − cos(s_bi, t_bi)."""
    s, t = _array(student), _array(teacher)
    if s.ndim == 2:  # pooled: one position per row
        s, t = s[:, None, :], t[:, None, :]
    batch, tokens, width = s.shape
    keep = _keep(mask, batch, tokens)
    total, count = 0.0, 0
    for b in range(batch):
        for i in range(tokens):
            if not keep[b, i]:
                continue
            x, y = s[b, i], t[b, i]
            if normalize:
                x, y = _unit(x), _unit(y)
                total += 0.5 * sum((x[d] - y[d]) ** 2 for d in range(width))  # = 1 − cos (non-zero vectors)
            else:
                total += sum((x[d] - y[d]) ** 2 for d in range(width)) / width
            count += 1
    return total / count if count else 0.0


# --------------------------------------------------------------------------- attention maps


def _group_mean(maps: np.ndarray, heads: int) -> np.ndarray:
    """[B, H, T, T] → [B, heads, T, T]: head h is the mean of the consecutive group h·g .. h·g+g−1."""
    batch, total, tokens, _ = maps.shape
    g = total // heads
    out = np.zeros((batch, heads, tokens, tokens))
    for b in range(batch):
        for h in range(heads):
            for j in range(g):
                out[b, h] += maps[b, h * g + j]
            out[b, h] /= g
    return out


def _matched_heads(student, teacher):
    s, t = _array(student), _array(teacher)
    hs, ht = s.shape[1], t.shape[1]
    if ht > hs:
        if ht % hs:
            raise ValueError(f"head counts {hs} and {ht} do not divide")
        t = _group_mean(t, hs)
    elif hs > ht:
        if hs % ht:
            raise ValueError(f"head counts {hs} and {ht} do not divide")
        s = _group_mean(s, ht)
    return s, t


def attention_kl(student_attn, teacher_attn, mask=None, eps: float = 1e-8) -> float:
    """mean over valid (b, h, q) of Σ_{valid k} p_t·(log max(p_t, eps) − log max(p_s, eps)); p_t = 0 adds 0."""
    s, t = _matched_heads(student_attn, teacher_attn)
    batch, heads, tokens, _ = s.shape
    keep = _keep(mask, batch, tokens)
    total, count = 0.0, 0
    for b in range(batch):
        for h in range(heads):
            for q in range(tokens):
                if not keep[b, q]:
                    continue
                for k in range(tokens):
                    if keep[b, k] and t[b, h, q, k] != 0:
                        p_t, p_s = t[b, h, q, k], s[b, h, q, k]
                        total += p_t * (math.log(max(p_t, eps)) - math.log(max(p_s, eps)))
                count += 1
    return total / count if count else 0.0


def attention_mse(student_attn, teacher_attn, mask=None) -> float:
    """mean over valid (b, h, q, k) of (p_s − p_t)²."""
    s, t = _matched_heads(student_attn, teacher_attn)
    batch, heads, tokens, _ = s.shape
    keep = _keep(mask, batch, tokens)
    total, count = 0.0, 0
    for b in range(batch):
        for h in range(heads):
            for q in range(tokens):
                for k in range(tokens):
                    if keep[b, q] and keep[b, k]:
                        total += (s[b, h, q, k] - t[b, h, q, k]) ** 2
                        count += 1
    return total / count if count else 0.0


def _at_map(states: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    """[B, positions]: a_bi = (1/D)·Σ_d |h_bid|^p (0 at padding), then a_b / ‖a_b‖₂."""
    batch, positions, width = states.shape
    a = np.zeros((batch, positions))
    for b in range(batch):
        for i in range(positions):
            if keep[b, i]:
                a[b, i] = sum(abs(states[b, i, d]) ** p for d in range(width)) / width
        a[b] = _unit(a[b])
    return a


def _positions(x: np.ndarray) -> np.ndarray:
    """Token states stay [B, T, D]; conv maps [B, C, H, W] become [B, H·W, C] (position i·W + j)."""
    if x.ndim == 3:
        return x
    batch, channels, height, width = x.shape
    out = np.zeros((batch, height * width, channels))
    for b in range(batch):
        for c in range(channels):
            for i in range(height):
                for j in range(width):
                    out[b, i * width + j, c] = x[b, c, i, j]
    return out


def attention_transfer(student_states, teacher_states, mask=None, p: float = 2) -> float:
    """(1/(B·T))·Σ_b Σ_i (a_s[b, i] − a_t[b, i])², padded positions included (as 0) in the count."""
    s, t = _positions(_array(student_states)), _positions(_array(teacher_states))
    batch, positions, _ = s.shape
    keep = _keep(mask, batch, positions)
    a_s, a_t = _at_map(s, keep, p), _at_map(t, keep, p)
    total = 0.0
    for b in range(batch):
        for i in range(positions):
            total += (a_s[b, i] - a_t[b, i]) ** 2
    return total / (batch * positions)


# --------------------------------------------------------------------------- MiniLM relations


def _relation_row(x: np.ndarray, y: np.ndarray, b: int, r: int, q: int, heads: int, keep: np.ndarray) -> np.ndarray:
    """softmax over the real keys k of (x_bq · y_bk) / √d restricted to relation head r (d = D/R)."""
    size = x.shape[2] // heads
    lo, hi = r * size, (r + 1) * size
    keys = [k for k in range(x.shape[1]) if keep[b, k]]
    scores = np.array([float(np.dot(x[b, q, lo:hi], y[b, k, lo:hi])) / math.sqrt(size) for k in keys])
    return np.exp(log_softmax(scores))


def minilm_relations(student_qkv, teacher_qkv, relation_heads: int, mask=None, relations=("qq", "kk", "vv")) -> float:
    """Σ over relations "xy" of mean over valid (b, r, q) of KL(teacher relation row ‖ student relation row)."""
    total = 0.0
    for relation in relations:
        xs, ys = _array(student_qkv[relation[0]]), _array(student_qkv[relation[1]])
        xt, yt = _array(teacher_qkv[relation[0]]), _array(teacher_qkv[relation[1]])
        for x in (xs, xt):
            if x.shape[2] % relation_heads:
                raise ValueError(f"relation_heads={relation_heads} does not divide D={x.shape[2]}")
        batch, tokens, _ = xs.shape
        keep = _keep(mask, batch, tokens)
        part, count = 0.0, 0
        for b in range(batch):
            for r in range(relation_heads):
                for q in range(tokens):
                    if keep[b, q]:
                        teacher_row = _relation_row(xt, yt, b, r, q, relation_heads, keep)
                        student_row = _relation_row(xs, ys, b, r, q, relation_heads, keep)
                        part += kl(teacher_row, student_row)
                        count += 1
        total += part / count if count else 0.0
    return total


# --------------------------------------------------------------------------- relations between samples


def _distance_matrix(x: np.ndarray) -> np.ndarray:
    """d_ij = ‖x_i − x_j‖ (√1e-12 at the least, as the authors' clamp) for i ≠ j, 0 on the diagonal,
    divided by the mean of the B(B−1) off-diagonal distances."""
    n = len(x)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                d[i, j] = math.sqrt(max(float(np.sum((x[i] - x[j]) ** 2)), 1e-12))
    return d / (np.sum(d) / (n * (n - 1)))


def rkd(student, teacher, distance_weight: float = 1.0, angle_weight: float = 2.0) -> float:
    """distance_weight·(1/B²)·Σ_ij huber(d_s − d_t) + angle_weight·(1/B³)·Σ_ijk huber(cos_s − cos_t),

    cos_ijk = e_ij · e_kj with e_ij = (x_i − x_j)/‖x_i − x_j‖ (the zero vector when i = j): the angle
    at vertex j. B < 2: 0; B < 3: no angle term.
    """
    s, t = _array(student), _array(teacher)
    n = len(s)
    if n < 2:
        return 0.0
    ds, dt = _distance_matrix(s), _distance_matrix(t)
    distance = sum(_smooth_l1(ds[i, j] - dt[i, j]) for i in range(n) for j in range(n)) / n**2
    angle = 0.0
    if n >= 3:
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    cos_s = float(np.dot(_unit(s[i] - s[j]), _unit(s[k] - s[j])))
                    cos_t = float(np.dot(_unit(t[i] - t[j]), _unit(t[k] - t[j])))
                    angle += _smooth_l1(cos_s - cos_t)
        angle /= n**3
    return distance_weight * distance + angle_weight * angle


def crd_lite(student, teacher, temperature: float = 0.07) -> float:
    """mean_i −log softmax_j(ŝ_i · t̂_j / τ)[i], with ŝ, t̂ the rows scaled to unit length."""
    s, t = _array(student), _array(teacher)
    n = len(s)
    total = 0.0
    for i in range(n):
        logits = np.array([float(np.dot(_unit(s[i]), _unit(t[j]))) / temperature for j in range(n)])
        total += -log_softmax(logits)[i]
    return total / n if n else 0.0
