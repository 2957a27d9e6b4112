"""Random-sampling KD: unbiased where top-k is not, against a float64 reference, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillab.errors import InputError
from distillab.losses.kd import HyperparameterError, kd_loss, topk_kd_loss, topk_targets
from distillab.losses.sampled import sample_targets, sampled_kd_loss, sampled_kd_loss_reference


def problem(rows=4, vocab=6, seed=0):
    """Student and teacher logits (float64) on a small vocabulary; the teacher spread enough that top-2 drops mass."""
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(rows, vocab, generator=g, dtype=torch.float64)
    teacher = 1.5 * torch.randn(rows, vocab, generator=g, dtype=torch.float64)
    return student, teacher


def value_and_grad(fn, student):
    s = student.clone().requires_grad_(True)
    value = fn(s)
    (grad,) = torch.autograd.grad(value, s)
    return float(value.detach()), grad


def sampled_estimates(student, teacher, draws, T, seeds, with_logprobs=True):
    """(values [n], grads [n, rows, V]) of the sampled loss, one fresh set of draws per seed."""
    values, grads = [], []
    for seed in range(seeds):
        ids, counts, logprobs = (torch.from_numpy(a) for a in sample_targets(teacher, draws, T=T, seed=seed))
        extra = {"teacher_logprobs": logprobs} if with_logprobs else {}
        value, grad = value_and_grad(lambda s: sampled_kd_loss(s, ids, counts, T=T, **extra), student)
        values.append(value)
        grads.append(grad)
    return np.array(values), torch.stack(grads).numpy()


# --------------------------------------------------------------------------- unbiasedness


@pytest.fixture(scope="module")
def estimates():
    torch.set_num_threads(1)
    student, teacher = problem()
    T, draws, seeds = 2.0, 4, 3000
    values, grads = sampled_estimates(student, teacher, draws, T, seeds)
    return student, teacher, T, values, grads


def test_sampled_estimator_mean_equals_the_dense_loss_and_gradient(estimates):
    student, teacher, T, values, grads = estimates
    dense_value, dense_grad = value_and_grad(lambda s: kd_loss(s, teacher, None, T=T, alpha=1.0), student)
    n = len(values)
    se = values.std(ddof=1) / np.sqrt(n)
    assert se > 0
    assert abs(values.mean() - dense_value) < 4 * se, (values.mean(), dense_value, se)
    grad_se = grads.std(axis=0, ddof=1) / np.sqrt(n)
    gap = np.abs(grads.mean(axis=0) - dense_grad.numpy())
    assert (gap < 4 * grad_se + 1e-12).all(), (gap / grad_se).max()
    # the noise is real (each draw differs from the dense loss) and shrinks like 1/sqrt(n): it is variance, not bias
    assert values.std() > 20 * se


def test_top_k_truncation_bias_does_not_average_away(estimates):
    """Top-2 renormalised is deterministic: its error is far outside the sampled estimator's standard error."""
    student, teacher, T, values, grads = estimates
    dense_value, dense_grad = value_and_grad(lambda s: kd_loss(s, teacher, None, T=T, alpha=1.0), student)
    top_ids, top_lp, tail = topk_targets(teacher, 2)
    topk_value, topk_grad = value_and_grad(
        lambda s: topk_kd_loss(s, top_ids, top_lp, tail, None, T=T, alpha=1.0, tail="renormalize"), student)
    n = len(values)
    se = values.std(ddof=1) / np.sqrt(n)
    assert abs(topk_value - dense_value) > 10 * se, (topk_value, dense_value, se)
    grad_se = grads.std(axis=0, ddof=1) / np.sqrt(n)
    assert (np.abs(topk_grad.numpy() - dense_grad.numpy()) / (grad_se + 1e-12)).max() > 10
    # and the sampled estimator with the same seeds, more of them, is no further from the dense loss
    assert abs(values.mean() - dense_value) < abs(topk_value - dense_value) / 5


def test_cross_entropy_form_is_kl_plus_teacher_entropy():
    """Without the teacher's log-probs the estimate is α·T²·CE(p_T, q_T): KL plus the (constant) entropy."""
    student, teacher = problem(seed=1)
    T = 1.5
    values, grads = sampled_estimates(student, teacher, 3, T, 1500, with_logprobs=False)
    p = torch.softmax(teacher / T, -1)
    entropy = float(-(p * p.log()).sum(-1).mean())
    dense_value, dense_grad = value_and_grad(lambda s: kd_loss(s, teacher, None, T=T, alpha=1.0), student)
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - (dense_value + T * T * entropy)) < 4 * se
    grad_se = grads.std(axis=0, ddof=1) / np.sqrt(len(values))
    assert (np.abs(grads.mean(axis=0) - dense_grad.numpy()) < 4 * grad_se + 1e-12).all()


def test_student_equal_to_teacher_gives_zero_for_every_draw():
    _, teacher = problem(seed=2)
    for seed in range(5):
        ids, counts, logprobs = (torch.from_numpy(a) for a in sample_targets(teacher, 7, T=2.0, seed=seed))
        loss = sampled_kd_loss(teacher.clone(), ids, counts, T=2.0, teacher_logprobs=logprobs)
        assert abs(float(loss)) < 1e-5


# --------------------------------------------------------------------------- sampling


def test_sample_targets_layout_and_frequencies():
    logits = torch.tensor([[0.0, 1.0, 2.0, float("-inf"), -1.0]], dtype=torch.float64)
    draws = 200_000
    ids, counts, logprobs = sample_targets(logits, draws, T=1.0, seed=7)
    assert ids.dtype == np.int32 and counts.dtype == np.int32 and logprobs.dtype == np.float32
    assert ids.shape == counts.shape == (1, 5)  # min(draws, V) slots
    assert counts.sum() == draws and 3 not in ids[counts > 0]  # probability 0 is never drawn
    p = torch.softmax(logits, -1).numpy()[0]
    freq = np.zeros(5)
    np.add.at(freq, ids[0], counts[0])  # empty slots add 0 at id 0
    assert (np.abs(freq / draws - p) < 5 * np.sqrt(p * (1 - p) / draws) + 1e-12).all()
    np.testing.assert_allclose(logprobs[counts > 0], np.log(p[ids[counts > 0]]), rtol=1e-6)
    # distinct ids ascending, then empty slots (id 0, count 0, log-prob 0)
    ids, counts, logprobs = sample_targets(torch.randn(3, 50), 6, seed=1)
    for row_ids, row_counts, row_lp in zip(ids, counts, logprobs):
        used = row_counts > 0
        assert row_counts.sum() == 6 and np.all(np.diff(row_ids[used]) > 0)
        assert used[: used.sum()].all() and (row_ids[~used] == 0).all() and (row_lp[~used] == 0).all()
    again = sample_targets(torch.randn(3, 50, generator=torch.Generator().manual_seed(0)), 6,
                           generator=np.random.default_rng(1))
    same = sample_targets(torch.randn(3, 50, generator=torch.Generator().manual_seed(0)), 6, seed=1)
    for a, b in zip(again, same):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(HyperparameterError, match="draws"):
        sample_targets(logits, 0)


# --------------------------------------------------------------------------- against the float64 reference


@pytest.mark.parametrize("T,alpha,with_lp,ignore_index", [(1.0, 1.0, True, -100), (2.0, 0.7, True, -100),
                                                          (4.0, 0.5, False, -1), (0.5, 1.0, False, -100)])
def test_matches_float64_reference_and_chunks(T, alpha, with_lp, ignore_index):
    g = torch.Generator().manual_seed(3)
    student = torch.randn(2, 5, 11, generator=g, dtype=torch.float64)
    teacher = 2 * torch.randn(2, 5, 11, generator=g, dtype=torch.float64)
    ids, counts, logprobs = (torch.from_numpy(a) for a in sample_targets(teacher, 6, T=T, seed=4))
    labels = torch.randint(0, 11, (2, 5), generator=g)
    labels[0, 1] = labels[1, 4] = ignore_index
    counts[0, 1] = 0  # an ignored position may hold no draws
    kwargs = dict(T=T, ignore_index=ignore_index, alpha=alpha, teacher_logprobs=logprobs if with_lp else None)
    expected = sampled_kd_loss_reference(student, ids, counts, labels, **kwargs)
    value, grad = value_and_grad(lambda s: sampled_kd_loss(s, ids, counts, labels, **kwargs), student)
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)
    chunked, chunked_grad = value_and_grad(lambda s: sampled_kd_loss(s, ids, counts, labels, chunk_rows=3, **kwargs),
                                           student)
    assert chunked == pytest.approx(value, rel=1e-12)
    torch.testing.assert_close(chunked_grad, grad, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(lambda s: sampled_kd_loss(s, ids, counts, labels, **kwargs),
                                    (student.clone().requires_grad_(True),))
    # weights = counts / draws give the same loss as raw counts (each row is normalised)
    assert float(sampled_kd_loss(student, ids, counts.double() / 6, labels, **kwargs)) == pytest.approx(value, rel=1e-12)


def test_all_ignored_is_zero_with_zero_gradient():
    student = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    ids = torch.zeros(3, 2, dtype=torch.long)
    loss = sampled_kd_loss(student, ids, torch.zeros(3, 2), torch.full((3,), -100))
    loss.backward()
    assert float(loss.detach()) == 0 and float(student.grad.abs().sum()) == 0


# --------------------------------------------------------------------------- refusals


def test_zero_draws_on_a_kept_row_is_refused_naming_the_row():
    student = torch.randn(4, 7)
    ids = torch.tensor([[1, 2]] * 4)
    weights = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.0, 0.0], [0.25, 0.75]])
    with pytest.raises(InputError, match="row 2 has zero draws"):
        sampled_kd_loss(student, ids, weights)
    with pytest.raises(InputError, match="row 2 has zero draws"):
        sampled_kd_loss(student, ids, weights, torch.tensor([1, 2, 3, 4]))
    sampled_kd_loss(student, ids, weights, torch.tensor([1, 2, -100, 4]))  # ignored: fine


@pytest.mark.parametrize("change,message", [
    (lambda ids, w, lp: (ids.fill_(7), w, lp), "outside \\[0, 7\\)"),
    (lambda ids, w, lp: (ids, w.index_fill_(0, torch.tensor([1]), -1.0), lp), "negative or non-finite"),
    (lambda ids, w, lp: (ids, w.index_fill_(0, torch.tensor([1]), float("nan")), lp), "negative or non-finite"),
    (lambda ids, w, lp: (ids, w, lp.index_fill_(0, torch.tensor([1]), float("-inf"))), "not a finite log-probability"),
])
def test_malformed_samples_are_refused(change, message):
    ids, weights, logprobs = torch.tensor([[1, 2]] * 3), torch.full((3, 2), 0.5), torch.full((3, 2), -1.0)
    ids, weights, logprobs = change(ids, weights, logprobs)
    with pytest.raises(InputError, match=message):
        sampled_kd_loss(torch.randn(3, 7), ids, weights, teacher_logprobs=logprobs)


def test_bad_hyperparameters_and_shapes():
    student, ids, weights = torch.randn(3, 7), torch.tensor([[1, 2]] * 3), torch.full((3, 2), 0.5)
    with pytest.raises(HyperparameterError):
        sampled_kd_loss(student, ids, weights, T=0)
    with pytest.raises(InputError, match="labels are required"):
        sampled_kd_loss(student, ids, weights, alpha=0.5)
    with pytest.raises(InputError, match="weights must have shape"):
        sampled_kd_loss(student, ids, weights[:2])
    with pytest.raises(InputError, match="integer token ids"):
        sampled_kd_loss(student, ids.float(), weights)
