"""Top-k maths against float64 references, and the teacher scores inspect prints against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from distillab.teacher.cache import truncation_stats
from distillab.teacher.capture import topk_outputs
from distillab.teacher.summary import macro_f1


def reference_topk(logits: np.ndarray, k: int):
    """Float64 loop: sort each row's probabilities, keep k, measure the tail the slow obvious way."""
    ids, lps, tails, kls = [], [], [], []
    for row in logits.reshape(-1, logits.shape[-1]).astype(np.float64):
        logp = row - np.log(np.exp(row - row.max()).sum()) - row.max()
        p = np.exp(logp)
        order = np.argsort(-logp, kind="stable")
        keep, rest = order[:k], order[k:]
        tail_mass = p[rest].sum()
        # p̂: top-k exact, tail mass spread evenly over the V-k others
        p_hat = p.copy()
        p_hat[rest] = tail_mass / max(len(rest), 1)
        kl = sum(p[i] * np.log(p[i] / p_hat[i]) for i in rest if p[i] > 0)
        ids.append(keep)
        lps.append(logp[keep])
        tails.append(np.log(tail_mass) if len(rest) else -np.inf)
        kls.append(kl)
    shape = logits.shape[:-1]
    return (np.array(ids).reshape(*shape, k), np.array(lps).reshape(*shape, k), np.array(tails).reshape(shape),
            np.array(kls).reshape(shape))


@pytest.mark.parametrize("shape,k,scale", [((6, 10), 3, 1.0), ((4, 10), 1, 5.0), ((2, 5, 50), 7, 3.0), ((3, 8), 8, 2.0)])
def test_topk_outputs_match_float64_reference(shape, k, scale):
    logits = (np.random.RandomState(sum(shape) + k).normal(size=shape) * scale).astype(np.float32)
    out = topk_outputs(logits, k)
    ids, lps, tails, kls = reference_topk(logits, k)
    np.testing.assert_array_equal(out["topk_ids"], ids)
    np.testing.assert_allclose(out["topk_logprobs"], lps, atol=1e-5)
    np.testing.assert_allclose(out["tail_logmass"], tails, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["tail_kl"], kls, atol=1e-6)
    assert out["topk_ids"].dtype == np.int32


def test_uniform_tail_costs_nothing_and_hand_computed_case():
    # p = (1/2, 1/6, 1/6, 1/6): the tail is already uniform, so spreading it evenly loses no KL.
    logits = np.log(np.array([[3.0, 1.0, 1.0, 1.0]], dtype=np.float32))
    out = topk_outputs(logits, 1)
    np.testing.assert_allclose(out["tail_logmass"], [np.log(0.5)], rtol=1e-6)
    np.testing.assert_allclose(out["tail_kl"], [0.0], atol=1e-7)
    stats = truncation_stats([out])
    assert stats["positions"] == 1
    assert stats["mass_lost_mean"] == pytest.approx(0.5, rel=1e-6)
    assert stats["kl_renormalized_mean"] == pytest.approx(np.log(2), rel=1e-6)  # KL(q‖p) = −log kept mass


def test_truncation_stats_skip_padded_positions():
    arrays = {"tail_logmass": np.log(np.array([[0.1, 0.3, 0.9]], dtype=np.float32)),
              "tail_kl": np.array([[0.01, 0.03, 5.0]], dtype=np.float32), "num_tokens": np.array([2])}
    stats = truncation_stats([arrays])
    assert stats["positions"] == 2
    assert stats["mass_lost_mean"] == pytest.approx(0.2, rel=1e-6)
    assert stats["mass_lost_max"] == pytest.approx(0.3, rel=1e-6)
    assert stats["kl_uniform_tail_mean"] == pytest.approx(0.02, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_macro_f1_matches_sklearn(seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 6, size=50)
    preds = np.where(rng.rand(50) < 0.6, labels, rng.randint(0, 8, size=50))  # some classes only predicted
    assert macro_f1(labels, preds) == pytest.approx(f1_score(labels, preds, average="macro", zero_division=0))


@pytest.mark.parametrize("k", [1, 4, 10])
def test_capture_topk_equals_the_loss_side_topk_targets(k):
    """The cache writes what topk_kd_loss is tested against: two implementations of one triple must agree."""
    import torch

    from distillab.losses.kd import topk_targets

    logits = (np.random.RandomState(k).normal(size=(5, 10)) * 4).astype(np.float32)
    out = topk_outputs(logits, k)
    ids, logprobs, tail = topk_targets(torch.from_numpy(logits), k)
    np.testing.assert_array_equal(out["topk_ids"], ids.numpy())
    np.testing.assert_allclose(out["topk_logprobs"], logprobs.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["tail_logmass"], tail.numpy(), rtol=1e-6, atol=1e-6)
