"""Every metric against an independent reference: sklearn or a plain float64 loop (the course's code)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import accuracy_score, f1_score

from distillab.audit import metrics as M
from distillab.data.tiers import assign_tiers

from audit_cases import long_tail_case

K = 113


def course_softmax(logits):
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def course_ece(probs, labels, n_bins=15):
    """LAB [00bac8a0]: right-closed equal-width bins, empty bins skipped."""
    edges = np.linspace(0, 1, n_bins + 1)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.sum() > 0:
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return total


def loop_js(p, q):
    total = 0.0
    for pr, qr in zip(p, q):
        pr, qr = np.clip(pr, 1e-12, 1), np.clip(qr, 1e-12, 1)
        m = (pr + qr) / 2
        total += 0.5 * sum(a * math.log(a / c) for a, c in zip(pr, m)) + 0.5 * sum(b * math.log(b / c) for b, c in zip(qr, m))
    return total / len(p)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    logits, labels = long_tail_case(seed)
    probs = M.softmax(logits)
    preds = probs.argmax(axis=1)
    assert M.accuracy(labels, preds) == accuracy_score(labels, preds)
    assert M.macro_f1(labels, preds, K) == f1_score(labels, preds, average="macro", zero_division=0)
    np.testing.assert_array_equal(
        M.per_class_f1(labels, preds, K), f1_score(labels, preds, labels=range(K), average=None, zero_division=0)
    )
    # Per tier: the tier's rows only, the tier's classes present in the evaluated labels.
    class_tiers = assign_tiers(np.bincount(labels, minlength=K))
    row_tiers = class_tiers[labels]
    for tier in ("head", "mid", "tail"):
        m = row_tiers == tier
        tier_labels = np.unique(labels[m])
        expected = f1_score(labels[m], preds[m], labels=tier_labels, average="macro", zero_division=0)
        assert M.macro_f1(labels[m], preds[m], K, tier_labels) == expected


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("bins", [15, 10, 40])
def test_ece_and_reliability_match_loop(seed, bins):
    logits, labels = long_tail_case(seed)
    probs = M.softmax(logits)
    assert M.ece(probs, labels, bins) == pytest.approx(course_ece(probs, labels, bins), abs=1e-14)
    rel = M.reliability(probs, labels, bins)
    counts = [b["count"] for b in rel["bins"]]
    assert sum(counts) == len(labels) and 0 in counts  # the case has empty bins
    conf = probs.max(axis=1)
    for b in rel["bins"]:
        in_bin = (conf > b["lower"]) & (conf <= b["upper"])
        assert b["count"] == in_bin.sum()
        if b["count"]:
            assert b["confidence"] == pytest.approx(conf[in_bin].mean(), rel=1e-12)
            assert b["accuracy"] == pytest.approx((probs.argmax(1) == labels)[in_bin].mean(), rel=1e-12)


def test_ece_hand_computed():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.5, 0.5]])
    labels = np.array([0, 1, 1, 0])
    # bins of 0.5: (0,0.5] holds the tie row (conf 0.5, right), (0.5,1] holds 0.9 right, 0.6 wrong, 0.6 right.
    expected = 1 / 4 * abs(1 - 0.5) + 3 / 4 * abs(2 / 3 - (0.9 + 0.6 + 0.6) / 3)
    assert M.ece(probs, labels, bins=2) == pytest.approx(expected, abs=1e-15)


def test_softmax_matches_course_and_is_stable():
    logits, _ = long_tail_case(0)
    np.testing.assert_allclose(M.softmax(logits), course_softmax(logits), rtol=1e-15, atol=0)
    big = np.array([[1000.0, 999.0, -1000.0]])
    assert np.isfinite(M.softmax(big)).all()


def test_nll_entropy_brier_js_agreement_match_loops(case):
    logits, labels = case
    probs = M.softmax(logits)
    rng = np.random.default_rng(5)
    teacher = M.softmax(logits.astype(np.float64) + rng.normal(0, 1, logits.shape))
    teacher[0] = 0.0
    teacher[0, 3] = 1.0  # exact zeros exercise the 1e-12 clip
    n = len(labels)
    assert M.nll(probs, labels) == pytest.approx(
        sum(-math.log(max(probs[i, labels[i]], 1e-12)) for i in range(n)) / n, rel=1e-13
    )
    assert M.entropy(probs) == pytest.approx(
        sum(-sum(p * math.log(max(p, 1e-12)) for p in row) for row in probs) / n, rel=1e-12
    )
    assert M.brier(probs, labels) == pytest.approx(
        sum(sum((p - (k == labels[i])) ** 2 for k, p in enumerate(row)) for i, row in enumerate(probs)) / n, rel=1e-12
    )
    assert M.js_to_teacher(teacher[:300], probs[:300]) == pytest.approx(loop_js(teacher[:300], probs[:300]), rel=1e-12)
    assert M.agreement(teacher, probs) == np.mean(teacher.argmax(1) == probs.argmax(1))


def test_nll_clips_zero_probability():
    probs = np.array([[1.0, 0.0]])
    assert M.nll(probs, np.array([1])) == pytest.approx(-math.log(1e-12))


def test_summary_of_empty_rows_is_null():
    out = M.summary(np.zeros((0, 3)), np.zeros(0, dtype=int), 3)
    assert out["n"] == 0 and out["macro_f1"] is None and out["ece"] is None


prob_rows = arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(2, 8)), elements=st.floats(-30, 30))


@settings(max_examples=60, deadline=None)
@given(prob_rows, st.integers(1, 30))
def test_ece_in_unit_interval(logits, bins):
    probs = M.softmax(logits)
    labels = np.arange(len(probs)) % probs.shape[1]
    assert 0.0 <= M.ece(probs, labels, bins) <= 1.0


@settings(max_examples=60, deadline=None)
@given(prob_rows, st.integers(0, 2**31 - 1), st.floats(0.01, 50))
def test_js_bounded_by_ln2(logits, seed, scale):
    p = M.softmax(logits)
    q = M.softmax(np.random.default_rng(seed).normal(0, scale, logits.shape))
    js = M.js_per_row(p, q)
    # Clipping without renormalising can push the bound by at most K·1e-12 (see js_per_row).
    assert (js >= -1e-15).all() and (js <= math.log(2) * (1 + logits.shape[1] * 1e-12) + 1e-15).all()
    assert (M.js_per_row(p, p) == 0).all()


def test_summary_agrees_with_each_metric(case):
    logits, labels = case
    probs = M.softmax(logits)
    teacher = M.softmax(np.roll(logits.astype(np.float64), 1, axis=1))
    out = M.summary(probs, labels, K, teacher)
    preds = probs.argmax(1)
    assert out["macro_f1"] == M.macro_f1(labels, preds, K) and out["accuracy"] == M.accuracy(labels, preds)
    assert out["ece"] == M.ece(probs, labels) and out["nll"] == M.nll(probs, labels)
    assert out["js_to_teacher"] == M.js_to_teacher(teacher, probs) and out["agreement"] == M.agreement(teacher, probs)
    assert out["entropy"] == M.entropy(probs) and out["brier"] == M.brier(probs, labels) and out["n"] == len(labels)
