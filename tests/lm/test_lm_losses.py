"""Token-level losses for causal LMs: the chunked head+loss equals the dense one (values and gradients),
the (k+1)-bucket reverse KL / JSD of a sparse cache against a float64 reference, golden values."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distillab.lm.chunked import chunked_head_loss, dense_head_loss
from distillab.losses.kd import generalized_jsd_loss, reverse_kl_loss, topk_kd_loss, topk_targets
from distillab.losses.sampled import sample_targets, sampled_kd_loss
from distillab.losses.token import topk_bucket_divergence, topk_bucket_divergence_reference

ROWS, HIDDEN, VOCAB, K = 37, 8, 50, 5


def setup(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(ROWS, HIDDEN, generator=g, dtype=dtype)
    head = torch.nn.Linear(HIDDEN, VOCAB, bias=False).to(dtype)
    with torch.no_grad():
        head.weight.copy_(torch.randn(VOCAB, HIDDEN, generator=g, dtype=dtype))
    teacher = 2 * torch.randn(ROWS, VOCAB, generator=g, dtype=dtype)
    labels = torch.randint(0, VOCAB, (ROWS,), generator=g)
    return hidden, head, teacher, labels


def losses(teacher, labels):
    ids, logprobs, tail = topk_targets(teacher, K)
    s_ids, s_counts, s_lp = (torch.as_tensor(a) for a in sample_targets(teacher, 16, seed=0))
    return {
        "ce": (lambda z, y: F.cross_entropy(z, y, reduction="sum"), (labels,)),
        "topk_kd": (lambda z, y, i, lp, t: topk_kd_loss(z, i, lp, t, y, T=2.0, alpha=0.5) * len(y),
                    (labels, ids, logprobs, tail)),
        "sampled_kd": (lambda z, y, i, w, lp: sampled_kd_loss(z, i, w, y, teacher_logprobs=lp, alpha=0.5) * len(y),
                       (labels, s_ids, s_counts.double(), s_lp.double())),
        "bucket_rkl": (lambda z, i, lp, t: topk_bucket_divergence(z, i, lp, t, divergence="reverse_kl") * len(z),
                       (ids, logprobs, tail)),
        "jsd_live": (lambda z, t: generalized_jsd_loss(z, t, beta=0.3) * len(z), (teacher,)),
    }


@pytest.mark.parametrize("name", ["ce", "topk_kd", "sampled_kd", "bucket_rkl", "jsd_live"])
@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_chunked_equals_dense_values_and_gradients(name, chunk_rows):
    hidden, head, teacher, labels = setup()
    fn, rows = losses(teacher, labels)[name]
    results = []
    for chunked in (True, False):
        h = hidden.clone().requires_grad_(True)
        head.zero_grad()
        value = chunked_head_loss(h, head, fn, rows, chunk_rows) if chunked else dense_head_loss(h, head, fn, rows)
        value.backward()
        results.append((value.detach(), h.grad.clone(), head.weight.grad.clone()))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_chunked_gradient_scales_with_the_upstream_gradient_and_skips_empty_batches():
    hidden, head, teacher, labels = setup()
    fn, rows = losses(teacher, labels)["ce"]
    h = hidden.clone().requires_grad_(True)
    (3.0 * chunked_head_loss(h, head, fn, rows, 5)).backward()
    h2 = hidden.clone().requires_grad_(True)
    (3.0 * dense_head_loss(h2, head, fn, rows)).backward()
    torch.testing.assert_close(h.grad, h2.grad)
    empty = hidden[:0].clone().requires_grad_(True)
    value = chunked_head_loss(empty, head, fn, (labels[:0],), 5)
    value.backward()
    assert float(value) == 0.0


@pytest.mark.parametrize("divergence,beta", [("reverse_kl", 0.5), ("jsd", 0.0), ("jsd", 0.3), ("jsd", 1.0)])
@pytest.mark.parametrize("T", [1.0, 2.0])
def test_bucket_divergence_matches_float64_reference(divergence, beta, T):
    _, _, teacher, labels = setup(seed=3)
    student = torch.randn(ROWS, VOCAB, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ids, logprobs, tail = topk_targets(teacher, K)
    labels = labels.clone()
    labels[::4] = -100
    got = topk_bucket_divergence(student, ids, logprobs, tail, labels, divergence, beta, T)
    want = topk_bucket_divergence_reference(student, ids, logprobs, tail, labels, divergence, beta, T)
    assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_bucket_divergence_is_exact_at_full_k_and_a_lower_bound_below():
    _, _, teacher, _ = setup(seed=5)
    student = torch.randn(ROWS, VOCAB, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    full = reverse_kl_loss(student, teacher)
    ids, logprobs, tail = topk_targets(teacher, VOCAB)
    torch.testing.assert_close(topk_bucket_divergence(student, ids, logprobs, tail), full)
    torch.testing.assert_close(topk_bucket_divergence(student, ids, logprobs, tail, divergence="jsd", beta=0.4),
                               generalized_jsd_loss(student, teacher, beta=0.4))
    for k in (1, 5, 20):
        ids, logprobs, tail = topk_targets(teacher, k)
        assert float(topk_bucket_divergence(student, ids, logprobs, tail)) <= float(full) + 1e-12


def test_golden_values_on_a_seeded_batch():
    """Frozen values (float64): a change in any loss or in the chunking shows up here."""
    hidden, head, teacher, labels = setup(seed=0)
    got = {name: float(chunked_head_loss(hidden, head, fn, rows, 8).detach()) for name, (fn, rows) in losses(teacher, labels).items()}
    assert got == pytest.approx(GOLDEN, rel=1e-9)
    assert got["ce"] == pytest.approx(float(F.cross_entropy(head(hidden), labels)), rel=1e-12)


GOLDEN = {'ce': 7.19634451702181, 'topk_kd': 10.365357976836329, 'sampled_kd': 5.995984234319541,
          'bucket_rkl': 1.1362911294050895, 'jsd_live': 0.4656101547639707}
