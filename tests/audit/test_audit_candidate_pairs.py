"""Paired CIs between any two candidates, and the SLA threshold searched below the grid (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest

from distillab.audit.bootstrap import paired_bootstrap, pairwise_bootstrap
from distillab.audit.coverage import threshold_search


def _probs(rng, labels, k, strength):
    logits = rng.normal(size=(labels.size, k))
    logits[np.arange(labels.size), labels] += strength
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def arms():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, size=300)
    tiers = np.array(["head", "head", "mid", "mid", "tail", "tail"])[labels]
    probs = {name: _probs(rng, labels, 6, s) for name, s in (("vanilla", 1.5), ("kd", 1.7), ("kd_b", 1.6))}
    return probs, labels, tiers


def test_pairwise_equals_the_baseline_bootstrap_and_is_antisymmetric(arms):
    probs, labels, tiers = arms
    pairs = pairwise_bootstrap(probs, labels, tiers, metrics=("macro_f1",), n_resamples=60, seed=42)
    records = paired_bootstrap(probs, labels, tiers, baseline="vanilla", metrics=("macro_f1",), n_resamples=60, seed=42)
    names = pairs["candidates"]
    for r in records:  # same seed and groups: the same resamples, so the same numbers
        stats = pairs["groups"][r["tier"]]["macro_f1"]
        i, j = names.index(r["arm"]), names.index("vanilla")
        assert (stats["median"][i][j], stats["ci_low"][i][j], stats["ci_high"][i][j]) == pytest.approx(
            (r["median"], r["ci_low"], r["ci_high"]), abs=1e-12)
    stats = pairs["groups"]["overall"]["macro_f1"]
    i, j = names.index("kd"), names.index("kd_b")  # a pair without the baseline: what a decision needs
    assert stats["ci_low"][i][j] == pytest.approx(-stats["ci_high"][j][i], abs=1e-12)
    assert stats["median"][i][i] is None


def test_threshold_search_goes_below_the_grid_to_where_the_sla_stops_holding():
    rng = np.random.default_rng(0)
    n, k = 2000, 5
    labels = rng.integers(0, k, size=n)
    conf = rng.uniform(0.25, 1.0, size=n)
    correct = rng.uniform(size=n) < np.clip(conf + 0.45, 0, 1)  # accurate even at low confidence
    preds = np.where(correct, labels, (labels + 1) % k)
    probs = np.repeat(((1 - conf) / (k - 1))[:, None], k, axis=1)  # the rest spread evenly: argmax = preds
    probs[np.arange(n), preds] = conf
    found = threshold_search(probs, labels, (0.5, 0.6, 0.7, 0.8, 0.9), 0.95)
    grid_only = [r for r in found["rows"] if r["source"] == "grid"]
    assert [r["threshold"] for r in grid_only] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert grid_only[0]["accuracy"] >= 0.95  # the grid's bottom meets the SLA: the old answer was "0.50"
    assert found["threshold"] < 0.5 and not found["floor_hit"]
    below = found["fails_below"]
    assert below["threshold"] < found["threshold"] and below["accuracy"] < 0.95
    assert found["floor"] <= conf.min()


def test_threshold_search_says_when_it_hit_its_floor():
    labels = np.arange(40) % 4
    probs = np.full((40, 4), 0.1)
    probs[np.arange(40), labels] = 0.7  # every row right: the SLA holds at every threshold
    found = threshold_search(probs, labels, (0.5, 0.9), 0.95)
    assert found["floor_hit"] and found["threshold"] == found["floor"] and found["coverage"] == 1.0
    assert found["fails_below"] is None
