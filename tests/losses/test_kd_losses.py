"""distillab.losses.kd against the float64 references: values, gradients, properties, bad input."""

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distillab.errors import ConfigError, InputError
from distillab.losses import kd, reference

SHAPES = [(1, 2), (3, 5), (8, 113), (17, 113)]  # (batch, K)


def batch(n, k, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = 1.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    t = 3.0 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return s.to(dtype).requires_grad_(True), t.to(dtype), y


def grad_of(loss_fn, s):
    (g,) = torch.autograd.grad(loss_fn(s), s)
    return g.numpy()


# (kd function, reference function) over (s, t, y); each pair is one loss at one setting
LOSSES = {
    "ce": (lambda s, t, y: kd.cross_entropy(s, y), lambda s, t, y: reference.cross_entropy(s, y)),
    "ce_smooth": (
        lambda s, t, y: kd.cross_entropy(s, y, label_smoothing=0.1),
        lambda s, t, y: reference.cross_entropy(s, y, 0.1),
    ),
    "kd": (lambda s, t, y: kd.kd_loss(s, t, y, T=4.0, alpha=0.7), lambda s, t, y: reference.kd_loss(s, t, y, 4.0, 0.7)),
    "kd_T2_a03": (lambda s, t, y: kd.kd_loss(s, t, y, T=2.0, alpha=0.3), lambda s, t, y: reference.kd_loss(s, t, y, 2.0, 0.3)),
    "chunked_kd": (
        lambda s, t, y: kd.chunked_kd_loss(s, t, y, T=4.0, alpha=0.7, chunk_rows=3),
        lambda s, t, y: reference.kd_loss(s, t, y, 4.0, 0.7),
    ),
    "hard_kd": (lambda s, t, y: kd.hard_kd_loss(s, t, y, alpha=0.7), lambda s, t, y: reference.hard_kd_loss(s, t, y, 0.7)),
    "kl": (lambda s, t, y: kd.kl_loss(s, t, T=2.0), lambda s, t, y: reference.kl_loss(s, t, 2.0)),
    "reverse_kl": (lambda s, t, y: kd.reverse_kl_loss(s, t, T=2.0), lambda s, t, y: reference.reverse_kl_loss(s, t, 2.0)),
    "jsd_0.3": (
        lambda s, t, y: kd.generalized_jsd_loss(s, t, beta=0.3, T=1.5),
        lambda s, t, y: reference.generalized_jsd_loss(s, t, 0.3, 1.5),
    ),
}


@functools.lru_cache(maxsize=8)
def _targets(teacher_bytes, shape, k):
    """The teacher's top-k triple, cached: finite differences call the oracle ~1,000 times per teacher."""
    teacher = torch.from_numpy(np.frombuffer(teacher_bytes, dtype=np.float64).reshape(shape).copy())
    return kd.topk_targets(teacher, min(k, shape[-1]))


def topk_pair(k, tail, chunk_rows=None):
    def targets(t):
        t = np.ascontiguousarray(t.detach().numpy() if hasattr(t, "detach") else t, dtype=np.float64)
        return _targets(t.tobytes(), t.shape, k)

    def ours(s, t, y):
        ids, logprobs, tails = targets(t)
        return kd.topk_kd_loss(s, ids, logprobs, tails, y, T=3.0, alpha=0.6, tail=tail, chunk_rows=chunk_rows)

    def oracle(s, t, y):
        return reference.topk_kd_loss(s, *targets(t), y, 3.0, 0.6, tail)

    return ours, oracle


for _tail in kd.TAIL_MODES:
    LOSSES[f"topk5_{_tail}"] = topk_pair(5, _tail)
    LOSSES[f"topk5_{_tail}_chunked"] = topk_pair(5, _tail, chunk_rows=4)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_value_matches_reference(name, shape):
    s, t, y = batch(*shape, seed=shape[0])
    ours, oracle = LOSSES[name]
    assert ours(s, t, y).item() == pytest.approx(oracle(s, t, y), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape", [(3, 5), (2, 113)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_gradient_matches_reference_finite_differences(name, shape):
    s, t, y = batch(*shape, seed=7)
    ours, oracle = LOSSES[name]
    t_np, y_np = t.numpy(), y.numpy()
    numeric = reference.numerical_grad(lambda x: oracle(x, t_np, y_np), s)
    np.testing.assert_allclose(grad_of(lambda x: ours(x, t, y), s), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape,fast", [((4, 11), False), ((3, 113), True)], ids=["4x11", "3x113-fast"])
def test_gradcheck(name, shape, fast):
    s, t, y = batch(*shape, seed=3)
    ours, _ = LOSSES[name]
    assert torch.autograd.gradcheck(lambda x: ours(x, t, y), (s,), eps=1e-6, atol=1e-7, fast_mode=fast)


@pytest.mark.parametrize("T,alpha", [(4.0, 0.7), (1.0, 0.5), (8.0, 0.9), (0.5, 0.0)])
def test_kd_gradient_matches_closed_form(T, alpha):
    s, t, y = batch(8, 113, seed=11)
    np.testing.assert_allclose(
        grad_of(lambda x: kd.kd_loss(x, t, y, T=T, alpha=alpha), s),
        reference.kd_loss_grad(s, t, y, T, alpha),
        rtol=1e-9,
        atol=1e-14,
    )


# --------------------------------------------------------------------------- properties


def test_kd_with_T1_alpha1_is_the_kl():
    s, t, y = batch(8, 113)
    expected = F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="batchmean")
    assert kd.kd_loss(s, t, y, T=1.0, alpha=1.0).item() == pytest.approx(expected.item(), rel=1e-12)
    assert kd.kd_loss(s, t, None, T=1.0, alpha=1.0).item() == pytest.approx(kd.kl_loss(s, t).item(), rel=1e-12)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kd_with_alpha0_is_cross_entropy(T):
    s, t, y = batch(8, 113)
    assert kd.kd_loss(s, t, y, T=T, alpha=0.0).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-12)
    assert kd.hard_kd_loss(s, t, y, alpha=0.0).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-12)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_identical_teacher_and_student_give_zero_divergence(T):
    s, _, y = batch(8, 113)
    same = s.detach().clone()
    for value in (
        kd.kl_loss(s, same, T=T),
        kd.reverse_kl_loss(s, same, T=T),
        kd.generalized_jsd_loss(s, same, beta=0.5, T=T),
        kd.kd_loss(s, same, None, T=T, alpha=1.0),
    ):
        assert abs(value.item()) < 1e-12
    (g,) = torch.autograd.grad(kd.kd_loss(s, same, None, T=T, alpha=1.0), s)
    assert g.abs().max().item() < 1e-12  # at the minimum


def test_jsd_endpoints_are_the_two_kls_trl_convention():
    s, t, _ = batch(8, 113)
    assert kd.generalized_jsd_loss(s, t, beta=0.0, T=2.0).item() == pytest.approx(kd.kl_loss(s, t, T=2.0).item(), rel=1e-12)
    assert kd.generalized_jsd_loss(s, t, beta=1.0, T=2.0).item() == pytest.approx(kd.reverse_kl_loss(s, t, T=2.0).item(), rel=1e-12)
    # inside (0, 1) it is bounded by the mixture entropy bound: 0 <= JSD(β) <= H(β) (binary entropy)
    beta = 0.3
    bound = -(beta * math.log(beta) + (1 - beta) * math.log(1 - beta))
    assert 0 < kd.generalized_jsd_loss(s, t, beta=beta).item() <= bound


def test_hard_kd_is_cross_entropy_to_teacher_argmax():
    s, t, y = batch(8, 113)
    assert kd.hard_kd_loss(s, t, y, alpha=1.0).item() == pytest.approx(F.cross_entropy(s, t.argmax(-1)).item(), rel=1e-12)


@pytest.mark.parametrize("tail", kd.TAIL_MODES)
@pytest.mark.parametrize("chunk_rows", [None, 3])
def test_topk_with_k_equal_K_is_dense_kd(tail, chunk_rows):
    s, t, y = batch(8, 113)
    ids, logprobs, tails = kd.topk_targets(t, 113)
    assert torch.isneginf(tails).all()
    sparse = kd.topk_kd_loss(s, ids, logprobs, tails, y, T=4.0, alpha=0.7, tail=tail, chunk_rows=chunk_rows)
    dense = kd.kd_loss(s, t, y, T=4.0, alpha=0.7)
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-12)
    np.testing.assert_allclose(
        grad_of(lambda x: kd.topk_kd_loss(x, ids, logprobs, tails, y, T=4.0, alpha=0.7, tail=tail, chunk_rows=chunk_rows), s),
        grad_of(lambda x: kd.kd_loss(x, t, y, T=4.0, alpha=0.7), s),
        rtol=1e-10,
        atol=1e-15,
    )


def test_topk_accepts_cache_dtypes():
    """Caches store int32 ids and fp16 log-probs; the loss follows the student's dtype."""
    s, t, y = batch(6, 50, dtype=torch.float32)
    ids, logprobs, tails = kd.topk_targets(t, 8)
    loss = kd.topk_kd_loss(s, ids.int(), logprobs.half(), tails.half(), y, tail="bucket")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("chunk_rows", [1, 4, 7, 64])
def test_chunked_equals_dense_values_and_grads(chunk_rows):
    s, t, y = batch(17, 113, dtype=torch.float32)
    dense = kd.kd_loss(s, t, y)
    chunked = kd.chunked_kd_loss(s, t, y, chunk_rows=chunk_rows)
    assert chunked.item() == pytest.approx(dense.item(), rel=1e-6)
    np.testing.assert_allclose(
        grad_of(lambda x: 3.0 * kd.chunked_kd_loss(x, t, y, chunk_rows=chunk_rows), s),
        grad_of(lambda x: 3.0 * kd.kd_loss(x, t, y), s),
        rtol=1e-5,
        atol=1e-8,
    )


def test_chunked_without_grad_and_sequence_shapes():
    s, t, y = batch(12, 31)
    s3, t3, y3 = s.detach().reshape(3, 4, 31), t.reshape(3, 4, 31), y.reshape(3, 4)
    with torch.no_grad():
        value = kd.chunked_kd_loss(s3, t3, y3, chunk_rows=5)
    assert value.item() == pytest.approx(reference.kd_loss(s, t, y, 4.0, 0.7), rel=1e-10)
    assert kd.kd_loss(s3, t3, y3).item() == pytest.approx(value.item(), rel=1e-12)


def test_course_value_comparison():
    """ECBS5200 week 6: the fixed loss matches the reference to 1e-5, the colleague's does not."""
    import importlib.util
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "buggy_kd_loss.py"
    spec = importlib.util.spec_from_file_location("buggy_kd_loss_example", example)
    colleague = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(colleague)
    torch.manual_seed(42)
    s = torch.randn(8, 113, requires_grad=True)
    t = torch.randn(8, 113)
    y = torch.randint(0, 113, (8,))
    expected = reference.kd_loss(s, t, y, 4.0, 0.7)
    fixed = kd.kd_loss(s, t, y, T=4.0, alpha=0.7).item()
    assert math.isfinite(expected) and expected > 0
    assert abs(fixed - expected) < 1e-5
    assert abs(colleague.fixed_distillation_loss(s, t, y, 4.0, 0.7).item() - expected) < 1e-5
    assert abs(colleague.distillation_loss(s, t, y, 4.0, 0.7).item() - expected) > 0.1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("T", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(T):
    s, t, y = batch(2, 3)
    with pytest.raises(ConfigError, match="temperature T must be a finite number > 0"):
        kd.kd_loss(s, t, y, T=T)
    with pytest.raises(ValueError):  # the same error is also a ValueError for plain-Python callers
        kd.generalized_jsd_loss(s, t, T=T)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_bad_alpha(alpha):
    s, t, y = batch(2, 3)
    for fn in (kd.kd_loss, kd.chunked_kd_loss, kd.hard_kd_loss):
        with pytest.raises(kd.HyperparameterError, match=r"alpha must lie in \[0, 1\]"):
            fn(s, t, y, alpha=alpha)


def test_bad_other_hyperparameters():
    s, t, y = batch(2, 3)
    ids, logprobs, tails = kd.topk_targets(t, 2)
    with pytest.raises(ConfigError, match="beta"):
        kd.generalized_jsd_loss(s, t, beta=1.2)
    with pytest.raises(ConfigError, match="label_smoothing"):
        kd.cross_entropy(s, y, label_smoothing=1.0)
    with pytest.raises(ConfigError, match="tail must be one of"):
        kd.topk_kd_loss(s, ids, logprobs, tails, y, tail="drop")
    with pytest.raises(ConfigError, match="chunk_rows"):
        kd.chunked_kd_loss(s, t, y, chunk_rows=0)


def test_bad_shapes_name_the_argument():
    s, t, y = batch(4, 6)
    with pytest.raises(InputError, match="teacher_logits must have shape"):
        kd.kd_loss(s, t[:, :5], y)
    with pytest.raises(InputError, match="labels must have shape"):
        kd.kd_loss(s, t, y[:3])
    with pytest.raises(InputError, match="labels must be integer"):
        kd.kd_loss(s, t, y.double())
    with pytest.raises(InputError, match="labels are required"):
        kd.kd_loss(s, t, None, alpha=0.5)
    with pytest.raises(InputError, match="1 <= k <= K=6"):
        kd.topk_kd_loss(s, torch.zeros(4, 7, dtype=torch.long), torch.zeros(4, 7), torch.zeros(4), y)
