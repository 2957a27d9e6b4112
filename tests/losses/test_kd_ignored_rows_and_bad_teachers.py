"""Issue 9, numerical #6 and #8: ignored (-100) rows, non-finite teacher rows, and repeated backward
through the chunked KD loss, each against the float64 reference in distillab.losses.reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distillab.errors import InputError
from distillab.losses import kd, reference


def _batch(rows=7, classes=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = 1.5 * torch.randn(rows, classes, generator=g, dtype=torch.float64)
    t = 3.0 * torch.randn(rows, classes, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (rows,), generator=g)
    return s, t, y


IGNORED = torch.tensor([1, 4, 5])


@pytest.mark.parametrize("alpha", [0.7, 1.0])
@pytest.mark.parametrize("chunk_rows", [None, 2])
def test_ignored_rows_leave_both_terms_and_the_denominator(alpha, chunk_rows):
    s, t, y = _batch()
    y[IGNORED] = kd.IGNORE_INDEX
    s.requires_grad_(True)
    if chunk_rows is None:
        loss = kd.kd_loss(s, t, y, T=4.0, alpha=alpha)
    else:
        loss = kd.chunked_kd_loss(s, t, y, T=4.0, alpha=alpha, chunk_rows=chunk_rows)
    (grad,) = torch.autograd.grad(loss, s)
    assert loss.item() == pytest.approx(reference.kd_loss(s, t, y, 4.0, alpha), rel=1e-12)
    np.testing.assert_allclose(grad.numpy(), reference.kd_loss_grad(s, t, y, 4.0, alpha), rtol=1e-10, atol=1e-14)
    assert torch.all(grad[IGNORED] == 0)
    keep = y != kd.IGNORE_INDEX  # the same as training on the kept rows only
    assert loss.item() == pytest.approx(kd.kd_loss(s[keep], t[keep], y[keep], T=4.0, alpha=alpha).item(), rel=1e-12)


def test_the_reference_skips_ignored_rows_independently():
    """The oracle itself: the ignored rows' values, however wild, change nothing."""
    s, t, y = _batch()
    y[IGNORED] = -100
    keep = (y != -100).numpy()
    wild_s, wild_t = s.clone(), t.clone()
    wild_s[IGNORED], wild_t[IGNORED] = 1e3, float("nan")
    expected = reference.kd_loss(s[keep], t[keep], y[keep], 2.0, 0.3)
    assert reference.kd_loss(wild_s, wild_t, y, 2.0, 0.3) == pytest.approx(expected, rel=1e-15)


def test_ignored_rows_in_a_sequence_batch_and_every_other_loss():
    s, t, y = _batch(rows=8)
    y[IGNORED] = kd.IGNORE_INDEX
    keep = y != kd.IGNORE_INDEX
    s3, t3, y3 = s.reshape(2, 4, 6), t.reshape(2, 4, 6), y.reshape(2, 4)  # [B, L, V] rows flatten
    assert kd.kd_loss(s3, t3, y3).item() == pytest.approx(reference.kd_loss(s, t, y), rel=1e-12)
    ids, logprobs, tails = kd.topk_targets(t, 6)
    pairs = [
        (kd.topk_kd_loss(s, ids, logprobs, tails, y, tail="bucket"),
         kd.topk_kd_loss(s[keep], ids[keep], logprobs[keep], tails[keep], y[keep], tail="bucket")),
        (kd.hard_kd_loss(s, t, y), kd.hard_kd_loss(s[keep], t[keep], y[keep])),
        (kd.cross_entropy(s, y, label_smoothing=0.1), kd.cross_entropy(s[keep], y[keep], label_smoothing=0.1)),
    ]
    for with_ignored, kept_only in pairs:
        assert with_ignored.item() == pytest.approx(kept_only.item(), rel=1e-12)


def test_a_batch_with_every_row_ignored_is_zero_with_a_zero_gradient():
    s, t, y = _batch()
    y[:] = kd.IGNORE_INDEX
    s.requires_grad_(True)
    for loss in (kd.kd_loss(s, t, y), kd.chunked_kd_loss(s, t, y, chunk_rows=3), kd.cross_entropy(s, y)):
        (grad,) = torch.autograd.grad(loss, s)
        assert loss.item() == 0.0 and not torch.any(grad)
    assert reference.kd_loss(s, t, y) == 0.0


@pytest.mark.parametrize("bad", [-1, 6, -99])
def test_labels_outside_the_classes_and_not_ignored_are_refused(bad):
    s, t, y = _batch()
    y[3] = bad
    with pytest.raises(InputError, match=rf"labels row 3 is {bad}: .*\[0, 6\) or -100"):
        kd.kd_loss(s, t, y)


@pytest.mark.parametrize("row", [
    [1.0, float("nan"), 0.0, 0.0, 0.0, 0.0],
    [1.0, float("inf"), 0.0, 0.0, 0.0, 0.0],
    [float("-inf")] * 6,
    [float("nan")] * 6,
])
def test_a_non_finite_teacher_row_raises_naming_the_row(row):
    s, t, y = _batch()
    t[2] = torch.tensor(row, dtype=t.dtype)
    calls = {
        "kd": lambda: kd.kd_loss(s, t, y),
        "chunked": lambda: kd.chunked_kd_loss(s, t, y, chunk_rows=3),
        "hard": lambda: kd.hard_kd_loss(s, t, y),
        "kl": lambda: kd.kl_loss(s, t, T=2.0),
        "reverse_kl": lambda: kd.reverse_kl_loss(s, t),
        "jsd": lambda: kd.generalized_jsd_loss(s, t),
    }
    for name, call in calls.items():
        with pytest.raises(InputError, match="teacher_logits row 2 is not a usable teacher row"):
            call()
    with pytest.raises(ValueError, match="teacher row 2"):
        reference.kd_loss(s, t, y)


def test_a_non_finite_top_k_teacher_raises():
    s, t, y = _batch()
    ids, logprobs, tails = kd.topk_targets(t, 3)
    bad_logprobs = logprobs.clone()
    bad_logprobs[4, 0] = float("nan")
    with pytest.raises(InputError, match="topk_logprobs row 4"):
        kd.topk_kd_loss(s, ids, bad_logprobs, tails, y)
    bad_tails = tails.clone()
    bad_tails[5] = float("nan")
    with pytest.raises(InputError, match="tail_logmass row 5"):
        kd.topk_kd_loss(s, ids, logprobs, bad_tails, y, tail="bucket")
    full_ids, full_logprobs, full_tails = kd.topk_targets(t, 6)  # k = K: a -inf tail is "no tail", fine
    assert torch.all(torch.isneginf(full_tails))
    assert math.isfinite(kd.topk_kd_loss(s, full_ids, full_logprobs, full_tails, y, tail="bucket").item())


def test_a_minus_inf_teacher_entry_is_a_zero_probability_class_and_a_bad_ignored_row_is_skipped():
    s, t, y = _batch()
    t[2, 3] = float("-inf")
    assert kd.kd_loss(s, t, y).item() == pytest.approx(reference.kd_loss(s, t, y), rel=1e-12)
    t[5] = float("nan")
    y[5] = kd.IGNORE_INDEX
    assert kd.kd_loss(s, t, y).item() == pytest.approx(reference.kd_loss(s, t, y), rel=1e-12)


def test_chunked_kd_repeated_backward_accumulates_the_true_gradient():
    """The stored gradient was handed to autograd and then mutated by the accumulation into .grad."""
    s, t, y = _batch(rows=9)
    expected = reference.kd_loss_grad(s, t, y, 4.0, 0.7)
    s.requires_grad_(True)
    loss = kd.chunked_kd_loss(s, t, y, chunk_rows=4)
    for _ in range(3):
        loss.backward(retain_graph=True)
    np.testing.assert_allclose(s.grad.numpy(), 3 * expected, rtol=1e-10, atol=1e-14)
    s.grad.zero_()  # what optimizer.zero_grad(set_to_none=False) does
    loss.backward(retain_graph=True)
    np.testing.assert_allclose(s.grad.numpy(), expected, rtol=1e-10, atol=1e-14)
    (loss * 2.5).backward()
    np.testing.assert_allclose(s.grad.numpy(), 3.5 * expected, rtol=1e-10, atol=1e-14)


def test_chunked_kd_passes_gradcheck():
    s, t, y = _batch(rows=5, classes=4)
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: kd.chunked_kd_loss(x, t, y, chunk_rows=2), (s,))
