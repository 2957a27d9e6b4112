"""The vectorised paired bootstrap against the course's slow loop (LAB §2h), draw for draw."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from audit_cases import long_tail_case
from distillab.audit import metrics as M
from distillab.audit.bootstrap import NOT_SIGNIFICANT, paired_bootstrap, verdict
from distillab.data.tiers import assign_tiers

K = 113
R = 60


@pytest.fixture(scope="module")
def two_arms():
    logits, labels = long_tail_case(seed=11, n=700)
    rng = np.random.default_rng(2)
    other = logits.astype(np.float64) + rng.normal(0, 0.8, logits.shape)
    probs = {"vanilla": M.softmax(logits), "distilled": M.softmax(other)}
    row_tiers = assign_tiers(np.bincount(labels, minlength=K), cutoffs=(10, 30))[labels]
    return probs, labels, row_tiers


def course_loop(probs, labels, row_tiers, metric_fn, n_resamples, seed=42):
    """LAB [86d6b94e] generalised to any metric, plus the overall group drawn after the tail."""
    rng = np.random.RandomState(seed)
    preds = {a: p.argmax(1) for a, p in probs.items()}
    out = {}
    for tier in ("head", "mid", "tail", "overall"):
        idx = np.arange(len(labels)) if tier == "overall" else np.where(row_tiers == tier)[0]
        tier_labels = None if tier == "overall" else sorted(set(labels[idx]))
        deltas = []
        for _ in range(n_resamples):
            samp = rng.choice(idx, size=len(idx), replace=True)
            d = metric_fn(probs["distilled"][samp], preds["distilled"][samp], labels[samp], tier_labels)
            v = metric_fn(probs["vanilla"][samp], preds["vanilla"][samp], labels[samp], tier_labels)
            deltas.append(d - v)
        deltas = np.array(deltas)
        out[tier] = (np.median(deltas), np.quantile(deltas, 0.025), np.quantile(deltas, 0.975))
    return out


def sk_f1(p, pred, y, tier_labels):
    if tier_labels is None:
        return f1_score(y, pred, average="macro", zero_division=0)
    return f1_score(y, pred, labels=tier_labels, average="macro", zero_division=0)


REFERENCES = {
    "macro_f1": (sk_f1, 0.0),
    "accuracy": (lambda p, pred, y, tl: accuracy_score(y, pred), 0.0),
    "ece": (lambda p, pred, y, tl: M.ece(p, y), 1e-12),
    "nll": (lambda p, pred, y, tl: M.nll(p, y), 1e-12),
}


@pytest.mark.parametrize("metric", list(REFERENCES))
def test_equals_course_loop(two_arms, metric):
    probs, labels, row_tiers = two_arms
    fn, tol = REFERENCES[metric]
    expected = course_loop(probs, labels, row_tiers, fn, R)
    # chunk=25 does not divide R: chunk boundaries must not disturb the stream.
    records = paired_bootstrap(probs, labels, row_tiers, baseline="vanilla", metrics=(metric,), n_resamples=R, chunk=25)
    got = {r["tier"]: (r["median"], r["ci_low"], r["ci_high"]) for r in records}
    for tier, values in expected.items():
        if tol == 0.0:
            assert got[tier] == values, tier  # macro-F1 and accuracy: exactly the course's numbers
        else:
            np.testing.assert_allclose(got[tier], values, rtol=0, atol=tol)


def test_arm_against_itself_is_exactly_zero(two_arms):
    probs, labels, row_tiers = two_arms
    probs = {"vanilla": probs["vanilla"], "copy": probs["vanilla"].copy()}
    records = paired_bootstrap(probs, labels, row_tiers, baseline="vanilla", n_resamples=50)
    assert len(records) == 4 * 4
    for r in records:
        assert (r["median"], r["ci_low"], r["ci_high"]) == (0.0, 0.0, 0.0)
        assert r["verdict"] == NOT_SIGNIFICANT and not r["excludes_zero"]


def test_metric_choice_does_not_change_the_stream(two_arms):
    probs, labels, row_tiers = two_arms
    alone = paired_bootstrap(probs, labels, row_tiers, "vanilla", metrics=("nll",), n_resamples=30)
    together = paired_bootstrap(probs, labels, row_tiers, "vanilla", n_resamples=30)
    assert alone == [r for r in together if r["metric"] == "nll"]


@pytest.mark.parametrize(
    "low, high, metric, expected",
    [
        (0.01, 0.03, "macro_f1", "significant improvement"),
        (-0.03, -0.01, "macro_f1", "significant degradation"),
        (-0.03, -0.01, "ece", "significant improvement"),
        (0.01, 0.03, "nll", "significant degradation"),
        (-0.01, 0.03, "macro_f1", NOT_SIGNIFICANT),
        (0.0, 0.03, "macro_f1", NOT_SIGNIFICANT),
    ],
)
def test_verdict_wording(low, high, metric, expected):
    assert verdict(low, high, metric) == expected
    assert "no effect" not in verdict(low, high, metric)
