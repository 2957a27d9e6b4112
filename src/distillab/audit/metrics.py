"""Evaluation metrics in float64 numpy, exactly as DESIGN.md defines them.

Precision note: the course casts fp16 logits to float32 and takes the softmax in float32. We cast
to float64 (exact for fp16/fp32 inputs) and take a max-subtracted softmax in float64, so
probabilities may differ from the course's in the 7th significant digit; no published number
moves at the precision it was published.

All functions take probabilities ``[n, K]`` and integer labels ``[n]``; none reads global state.
"""

from __future__ import annotations

import numpy as np

PROB_FLOOR = 1e-12  # course clip for NLL, JS and entropy: keeps log finite for a zero probability
DEFAULT_BINS = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64; subtracting the row max keeps exp from overflowing."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(np.mean(labels == preds))


def f1_from_counts(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per-class F1 = 2TP / (support + predicted), 0 where both are 0 (sklearn's zero_division=0).

    Written as sklearn writes it (``2*tp / (true_sum + pred_sum)``) so that values agree bit for bit.
    """
    tp = np.asarray(tp, dtype=np.float64)
    denom = np.asarray(support, dtype=np.float64) + np.asarray(predicted, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(tp.shape, denom.shape))
    np.divide(2.0 * tp, denom, out=out, where=denom > 0)
    return out


def class_counts(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, support, predicted count) per class, each ``[K]`` int64."""
    tp = np.bincount(labels[labels == preds], minlength=num_classes)
    support = np.bincount(labels, minlength=num_classes)
    predicted = np.bincount(preds, minlength=num_classes)
    return tp, support, predicted


def per_class_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``f1_score(labels, preds, labels=range(K), average=None, zero_division=0)``."""
    return f1_from_counts(*class_counts(labels, preds, num_classes))


def macro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int, label_set: np.ndarray | None = None) -> float:
    """Macro F1 over ``label_set``; ``None`` means sklearn's default, the labels present in y_true ∪ y_pred.

    For a tier, pass that tier's rows and its label set: predictions into other classes then count
    as false negatives of the true class but as nobody's false positive, as in sklearn with ``labels=``.
    """
    tp, support, predicted = class_counts(labels, preds, num_classes)
    if label_set is None:
        label_set = np.flatnonzero(support + predicted)
    if len(label_set) == 0:
        return float("nan")
    return float(np.mean(f1_from_counts(tp, support, predicted)[label_set]))


def bin_edges(bins: int = DEFAULT_BINS) -> np.ndarray:
    return np.linspace(0.0, 1.0, bins + 1)


def confidence_bins(confidence: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin index per row for right-closed bins (e_i, e_{i+1}]; a confidence of exactly 0 joins bin 0.

    ``searchsorted(side="left")`` returns i+1 for e_i < c <= e_{i+1}, hence the -1.
    """
    idx = np.searchsorted(bin_edges(bins), confidence, side="left") - 1
    return np.clip(idx, 0, bins - 1)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> dict:
    """Per-bin count, accuracy and mean confidence (None for an empty bin), plus the edges."""
    return reliability_from(probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64), bins)


def reliability_from(confidence: np.ndarray, correct: np.ndarray, bins: int = DEFAULT_BINS) -> dict:
    """Reliability data from per-row top-1 confidence and correctness (float 0/1)."""
    b = confidence_bins(confidence, bins)
    count = np.bincount(b, minlength=bins)
    sum_conf = np.bincount(b, weights=confidence, minlength=bins)
    sum_acc = np.bincount(b, weights=correct, minlength=bins)
    edges = bin_edges(bins)
    rows = []
    for i in range(bins):
        n_b = int(count[i])
        rows.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "count": n_b,
                "accuracy": float(sum_acc[i] / n_b) if n_b else None,
                "confidence": float(sum_conf[i] / n_b) if n_b else None,
            }
        )
    return {"edges": edges.tolist(), "bins": rows}


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error: Σ_b (n_b/n)·|acc_b − conf_b| over non-empty right-closed bins."""
    return ece_from(probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64), bins)


def ece_from(confidence: np.ndarray, correct: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """ECE from per-row top-1 confidence and correctness (float 0/1)."""
    b = confidence_bins(confidence, bins)
    count = np.bincount(b, minlength=bins)
    nonempty = count > 0
    acc_b = np.bincount(b, weights=correct, minlength=bins)[nonempty] / count[nonempty]
    conf_b = np.bincount(b, weights=confidence, minlength=bins)[nonempty] / count[nonempty]
    return float(np.sum(count[nonempty] / confidence.shape[0] * np.abs(acc_b - conf_b)))


def nll_per_row(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -np.log(np.maximum(probs[np.arange(labels.shape[0]), labels], PROB_FLOOR))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean −ln(max(p_y, 1e-12)), natural log."""
    return float(np.mean(nll_per_row(probs, labels)))


def js_per_row(teacher: np.ndarray, student: np.ndarray) -> np.ndarray:
    """½KL(p‖m) + ½KL(q‖m), m = (p+q)/2, both clipped to [1e-12, 1] and NOT renormalised (course)."""
    p = np.clip(teacher, PROB_FLOOR, 1.0)
    q = np.clip(student, PROB_FLOOR, 1.0)
    m = 0.5 * (p + q)
    return 0.5 * np.sum(p * np.log(p / m), axis=1) + 0.5 * np.sum(q * np.log(q / m), axis=1)


def js_to_teacher(teacher: np.ndarray, student: np.ndarray) -> float:
    return float(np.mean(js_per_row(teacher, student)))


def agreement(teacher: np.ndarray, student: np.ndarray) -> float:
    """Fraction of rows whose top-1 class matches the teacher's."""
    return float(np.mean(teacher.argmax(axis=1) == student.argmax(axis=1)))


def entropy_per_row(probs: np.ndarray) -> np.ndarray:
    return -np.sum(probs * np.log(np.maximum(probs, PROB_FLOOR)), axis=1)


def entropy(probs: np.ndarray) -> float:
    """Mean predictive entropy −Σ p·ln(max(p, 1e-12)) in nats."""
    return float(np.mean(entropy_per_row(probs)))


def brier_per_row(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Σ_k (p_k − 1[k = y])², expanded as Σp² − 2p_y + 1 to avoid a one-hot matrix."""
    return np.sum(probs**2, axis=1) - 2.0 * probs[np.arange(labels.shape[0]), labels] + 1.0


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over rows of Σ_k (p_k − 1[k = y])²."""
    return float(np.mean(brier_per_row(probs, labels)))


def row_values(probs: np.ndarray, labels: np.ndarray, teacher_probs: np.ndarray | None = None) -> dict:
    """Per-row quantities every scalar metric averages; computed once, summarised on any subset of rows."""
    preds = probs.argmax(axis=1)
    values = {
        "labels": labels,
        "preds": preds,
        "confidence": probs.max(axis=1),
        "correct": (preds == labels).astype(np.float64),
        "nll": nll_per_row(probs, labels),
        "entropy": entropy_per_row(probs),
        "brier": brier_per_row(probs, labels),
    }
    if teacher_probs is not None:
        values["js_to_teacher"] = js_per_row(teacher_probs, probs)
        values["agreement"] = (teacher_probs.argmax(axis=1) == preds).astype(np.float64)
    return values


def summarize(
    values: dict, num_classes: int, rows: np.ndarray | None = None, label_set: np.ndarray | None = None,
    bins: int = DEFAULT_BINS,
) -> dict:
    """Every scalar metric over ``rows`` (a mask or indices; None = all) of :func:`row_values` output.

    An empty set of rows gives nulls. ``label_set`` as in :func:`macro_f1`.
    """
    v = values if rows is None else {key: arr[rows] for key, arr in values.items()}
    n = int(v["labels"].shape[0])
    if n == 0:
        keys = ("macro_f1", "accuracy", "ece", "nll", "js_to_teacher", "agreement", "entropy", "brier")
        return dict.fromkeys(keys) | {"n": 0}
    has_teacher = "js_to_teacher" in v
    return {
        "n": n,
        "macro_f1": macro_f1(v["labels"], v["preds"], num_classes, label_set),
        "accuracy": float(np.mean(v["correct"])),
        "ece": ece_from(v["confidence"], v["correct"], bins),
        "nll": float(np.mean(v["nll"])),
        "js_to_teacher": float(np.mean(v["js_to_teacher"])) if has_teacher else None,
        "agreement": float(np.mean(v["agreement"])) if has_teacher else None,
        "entropy": float(np.mean(v["entropy"])),
        "brier": float(np.mean(v["brier"])),
    }


def summary(
    probs: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    teacher_probs: np.ndarray | None = None,
    label_set: np.ndarray | None = None,
    bins: int = DEFAULT_BINS,
) -> dict:
    """Every scalar metric for one arm on one set of rows (an empty set gives nulls)."""
    return summarize(row_values(probs, labels, teacher_probs), num_classes, label_set=label_set, bins=bins)
