"""Issue 12: feature-, attention- and relation-based losses (features.py) against their float64
oracles (feature_reference.py), their gradients, invariances, signs, padding and errors; and
``check-loss --objective``. Tiny shapes throughout: the whole file must run in seconds on 2 cores."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distillab import cli
from distillab.errors import ConfigError, InputError
from distillab.losses import check, command
from distillab.losses import feature_reference as ref
from distillab.losses import features as feat

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(g, *shape, dtype=F64, scale=1.0):
    return (scale * torch.randn(*shape, generator=g, dtype=F64)).to(dtype)


def token_mask(lengths, tokens: int) -> torch.Tensor:
    """int64 [B, T] HF attention_mask, right-padded: row b has lengths[b] real tokens."""
    mask = torch.zeros(len(lengths), tokens, dtype=torch.int64)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    return mask


def attention(g, batch, heads, tokens, mask=None, dtype=F64):
    """Model-like attention maps: softmax over keys, padded keys at probability 0."""
    scores = randn(g, batch, heads, tokens, tokens, scale=2.0)
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
    return scores.softmax(-1).to(dtype)


def qkv(g, batch, tokens, width, dtype=F64):
    return {name: randn(g, batch, tokens, width, dtype=dtype) for name in "qkv"}


def orthogonal(g, n: int) -> torch.Tensor:
    q, r = torch.linalg.qr(randn(g, n, n))
    return q * torch.sign(torch.diagonal(r))


def spoil(x: torch.Tensor, where: torch.Tensor, g) -> torch.Tensor:
    """x with the positions where ``where`` is True replaced by huge values and NaN."""
    junk = randn(g, *x.shape, dtype=x.dtype, scale=1e3)
    junk.view(-1)[::3] = float("nan")
    return torch.where(where, junk, x)


def value(loss) -> float:
    return float(loss.detach())


# --------------------------------------------------------------------------- layer_map


def test_uniform_layer_map_32_to_80():
    pairs = feat.layer_map("uniform", 32, 80)
    assert len(pairs) == 32 and [s for s, _ in pairs] == list(range(32))
    mapped = dict(pairs)
    assert (mapped[0], mapped[15], mapped[31]) == (0, 38, 78)  # 37.5 and 77.5 round to even
    assert all(a <= b for (_, a), (_, b) in zip(pairs, pairs[1:]))


def test_uniform_layer_map_clamps_and_repeats_when_the_student_is_deeper():
    assert feat.layer_map("uniform", 4, 2) == [(0, 0), (1, 0), (2, 1), (3, 1)]  # round(1.5) = 2 → clamped to 1
    assert feat.layer_map("uniform", 3, 3) == [(0, 0), (1, 1), (2, 2)]


def test_last_k_and_explicit_layer_maps():
    assert feat.layer_map("last:3", 6, 12) == [(3, 9), (4, 10), (5, 11)]
    assert feat.layer_map("last:6", 6, 6) == [(i, i) for i in range(6)]
    assert feat.layer_map([0, 3, 7], 3, 8) == [(0, 0), (1, 3), (2, 7)]
    assert feat.layer_map([[2, 7], [0, 1]], 3, 8) == [(2, 7), (0, 1)]
    assert feat.layer_map(((1, 2),), 3, 8) == [(1, 2)]
    assert feat.layer_map([np.int64(1), 2], 2, 3) == [(0, 1), (1, 2)]


@pytest.mark.parametrize("spec, ls, lt, message", [
    ("last:0", 6, 12, "K must be between 1 and 6"),
    ("last:7", 6, 12, "K must be between 1 and 6"),
    ("last:x", 6, 12, "K in 'last:K' must be an integer"),
    ("evenly", 6, 12, "layer_map 'evenly' is not a known form"),
    ([0, 1], 3, 8, "lists 2 teacher layers but the student has 3 layers"),
    ([0, 1, 8], 3, 8, "entry 2: teacher layer 8 is out of range; valid teacher layers are 0..7"),
    ([0, -1, 2], 3, 8, "entry 1: teacher layer -1 is out of range; valid teacher layers are 0..7"),
    ([[3, 1]], 3, 8, "entry 0: student layer 3 is out of range; valid student layers are 0..2"),
    ([[0, 1], 2], 3, 8, "layer_map must be"),
    ([[0, 1, 2]], 3, 8, "layer_map must be"),
    ([True, False, True], 3, 8, "layer_map must be"),
    ([], 3, 8, "layer_map must be"),
    (None, 3, 8, "layer_map must be"),
    ("uniform", 0, 8, "student_layers must be an integer >= 1"),
    ("uniform", 3, 2.5, "teacher_layers must be an integer >= 1"),
])
def test_bad_layer_maps_are_config_errors_naming_the_setting(spec, ls, lt, message):
    with pytest.raises(ConfigError, match="layer_map|_layers") as info:
        feat.layer_map(spec, ls, lt)
    assert message in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- values against the float64 oracles

# Each builder returns (torch call, oracle call) on the same seeded inputs in ``dtype``; shapes cover
# padding of different lengths down to one real token, unequal widths and unequal head counts.


def hidden_case(seed, dtype, shape=(3, 6, 8), lengths=(6, 3, 1), normalize=False):
    g = gen(seed)
    s, t = randn(g, *shape, dtype=dtype), randn(g, *shape, dtype=dtype, scale=1.5)
    mask = None if lengths is None else token_mask(lengths, shape[1])
    return (lambda: feat.hidden_mse(s, t, mask, normalize=normalize)), (lambda: ref.hidden_mse(s, t, mask, normalize))


def attention_case(which, seed, dtype, batch=3, hs=2, ht=4, tokens=6, lengths=(6, 4, 1)):
    g = gen(seed)
    mask = None if lengths is None else token_mask(lengths, tokens)
    s, t = attention(g, batch, hs, tokens, mask, dtype), attention(g, batch, ht, tokens, mask, dtype)
    return (lambda: getattr(feat, which)(s, t, mask)), (lambda: getattr(ref, which)(s, t, mask))


def transfer_case(seed, dtype, s_shape=(3, 6, 4), t_shape=(3, 6, 10), lengths=(6, 2, 1), p=2):
    g = gen(seed)
    s, t = randn(g, *s_shape, dtype=dtype), randn(g, *t_shape, dtype=dtype, scale=2.0)
    mask = None if lengths is None else token_mask(lengths, s_shape[1])
    return (lambda: feat.attention_transfer(s, t, mask, p=p)), (lambda: ref.attention_transfer(s, t, mask, p))


def minilm_case(seed, dtype, batch=3, tokens=5, ds=8, dt=12, heads=4, lengths=(5, 3, 1), relations=("qq", "kk", "vv")):
    g = gen(seed)
    s, t = qkv(g, batch, tokens, ds, dtype), qkv(g, batch, tokens, dt, dtype)
    mask = None if lengths is None else token_mask(lengths, tokens)
    return ((lambda: feat.minilm_relations(s, t, heads, mask, relations)),
            (lambda: ref.minilm_relations(s, t, heads, mask, relations)))


def rkd_case(seed, dtype, batch=7, ds=5, dt=9, weights=(1.0, 2.0)):
    g = gen(seed)
    s, t = randn(g, batch, ds, dtype=dtype), randn(g, batch, dt, dtype=dtype, scale=3.0)
    return (lambda: feat.rkd(s, t, *weights)), (lambda: ref.rkd(s, t, *weights))


def crd_case(seed, dtype, batch=6, width=8, temperature=0.07):
    g = gen(seed)
    s, t = randn(g, batch, width, dtype=dtype), randn(g, batch, width, dtype=dtype)
    return (lambda: feat.crd_lite(s, t, temperature)), (lambda: ref.crd_lite(s, t, temperature))


CASES = {
    "hidden token": lambda dt: hidden_case(0, dt),
    "hidden token normalize": lambda dt: hidden_case(1, dt, normalize=True),
    "hidden pooled": lambda dt: hidden_case(2, dt, shape=(5, 7), lengths=None),
    "hidden pooled normalize": lambda dt: hidden_case(3, dt, shape=(5, 7), lengths=None, normalize=True),
    "hidden no padding": lambda dt: hidden_case(4, dt, shape=(2, 4, 3), lengths=None),
    "attention_kl teacher has more heads": lambda dt: attention_case("attention_kl", 0, dt),
    "attention_kl student has more heads": lambda dt: attention_case("attention_kl", 1, dt, hs=4, ht=2),
    "attention_kl equal heads no mask": lambda dt: attention_case("attention_kl", 2, dt, hs=3, ht=3, lengths=None),
    "attention_mse teacher has more heads": lambda dt: attention_case("attention_mse", 3, dt, hs=1, ht=3),
    "attention_mse student has more heads": lambda dt: attention_case("attention_mse", 4, dt, hs=6, ht=2, lengths=(1, 6, 5)),
    "attention_mse no mask": lambda dt: attention_case("attention_mse", 5, dt, lengths=None),
    "transfer p=2": lambda dt: transfer_case(0, dt),
    "transfer p=1": lambda dt: transfer_case(1, dt, p=1),
    "transfer p=3 no mask": lambda dt: transfer_case(2, dt, lengths=None, p=3),
    "transfer conv": lambda dt: transfer_case(3, dt, s_shape=(2, 3, 4, 5), t_shape=(2, 6, 4, 5), lengths=None),
    "minilm": lambda dt: minilm_case(0, dt),
    "minilm equal widths no mask": lambda dt: minilm_case(1, dt, ds=6, dt=6, heads=3, lengths=None),
    "minilm qk and vv, one head": lambda dt: minilm_case(2, dt, heads=1, relations=("qk", "vv")),
    "rkd": lambda dt: rkd_case(0, dt),
    "rkd distance only": lambda dt: rkd_case(1, dt, batch=4, weights=(1.0, 0.0)),
    "rkd angle only": lambda dt: rkd_case(2, dt, batch=5, weights=(0.0, 1.0)),
    "rkd batch of 2": lambda dt: rkd_case(3, dt, batch=2),
    "rkd batch of 1": lambda dt: rkd_case(4, dt, batch=1),
    "crd": lambda dt: crd_case(0, dt),
    "crd warm": lambda dt: crd_case(1, dt, batch=3, width=4, temperature=0.5),
    "crd batch of 1": lambda dt: crd_case(2, dt, batch=1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_values_match_the_float64_oracle(name):
    """float64 inputs: the same formula to rounding; float32 inputs (the training case): rtol 1e-5."""
    ours, oracle = CASES[name](F64)
    assert value(ours()) == pytest.approx(oracle(), rel=1e-10, abs=1e-12)
    ours, oracle = CASES[name](torch.float32)
    loss = ours()
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert value(loss) == pytest.approx(oracle(), rel=1e-5, abs=1e-7)


def test_low_precision_inputs_are_computed_in_float32():
    g = gen(5)
    s, t = randn(g, 2, 3, 4, 4, dtype=torch.bfloat16), randn(g, 2, 3, 4, 4, dtype=torch.bfloat16)
    s, t = s.softmax(-1), t.softmax(-1)
    loss = feat.attention_kl(s, t)
    assert loss.dtype == torch.float32
    assert value(loss) == pytest.approx(value(feat.attention_kl(s.float(), t.float())), rel=1e-6)
    assert value(loss) == pytest.approx(ref.attention_kl(s.float(), t.float()), rel=1e-5)


# --------------------------------------------------------------------------- gradients (float64 gradcheck)


def _gradcheck(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_hidden_mse():
    g = gen(10)
    s, t = randn(g, 2, 3, 4).requires_grad_(), randn(g, 2, 3, 4)
    mask = token_mask((3, 1), 3)
    _gradcheck(lambda x: feat.hidden_mse(x, t, mask), s)
    _gradcheck(lambda x: feat.hidden_mse(x, t, mask, normalize=True), s)
    _gradcheck(lambda x: feat.hidden_mse(x, t[:, 0], normalize=True), s[:, 0].detach().clone().requires_grad_())


@pytest.mark.parametrize("which", ["attention_kl", "attention_mse"])
@pytest.mark.parametrize("hs, ht", [(2, 2), (1, 2), (2, 1)])
def test_gradcheck_attention_through_a_softmax(which, hs, ht):
    g = gen(11)
    mask = token_mask((4, 2), 4)
    logits = randn(g, 2, hs, 4, 4).requires_grad_()
    t = attention(g, 2, ht, 4, mask)
    _gradcheck(lambda x: getattr(feat, which)(x.softmax(-1), t, mask), logits)


def test_gradcheck_attention_transfer():
    g = gen(12)
    mask = token_mask((4, 2), 4)
    s, t = randn(g, 2, 4, 3).requires_grad_(), randn(g, 2, 4, 5)
    _gradcheck(lambda x: feat.attention_transfer(x, t, mask), s)
    _gradcheck(lambda x: feat.attention_transfer(x, t, mask, p=3), s)
    c, ct = randn(g, 2, 2, 2, 3).requires_grad_(), randn(g, 2, 4, 2, 3)
    _gradcheck(lambda x: feat.attention_transfer(x, ct), c)


def test_gradcheck_minilm_relations():
    g = gen(13)
    mask = token_mask((4, 2), 4)
    s, t = qkv(g, 2, 4, 4), qkv(g, 2, 4, 6)
    leaves = [s[name].requires_grad_() for name in "qkv"]
    _gradcheck(lambda q, k, v: feat.minilm_relations({"q": q, "k": k, "v": v}, t, 2, mask), *leaves)
    _gradcheck(lambda q, k, v: feat.minilm_relations({"q": q, "k": k, "v": v}, t, 1, None, ("qk", "vv")), *leaves)


def test_gradcheck_rkd_and_crd():
    g = gen(14)
    s, t = randn(g, 5, 3).requires_grad_(), randn(g, 5, 4)
    _gradcheck(lambda x: feat.rkd(x, t), s)
    _gradcheck(lambda x: feat.rkd(x, t, 0.5, 0.0), s)
    s2, t2 = randn(g, 4, 3).requires_grad_(), randn(g, 4, 3)
    _gradcheck(lambda x: feat.crd_lite(x, t2, 0.3), s2)


# --------------------------------------------------------------------------- properties: ≈ 0 when nothing is left to learn


def test_rkd_is_zero_for_a_rotated_scaled_shifted_copy():
    g = gen(20)
    t = randn(g, 8, 6)
    s = 3.7 * t @ orthogonal(g, 6) + randn(g, 1, 6, scale=5.0)
    assert value(feat.rkd(s, t)) < 1e-12
    assert value(feat.rkd(s.float(), t.float())) < 1e-6
    assert value(feat.rkd(randn(g, 8, 6), t)) > 1e-2  # and not zero for an unrelated student


def test_minilm_is_zero_when_each_relation_head_is_rotated():
    g = gen(21)
    heads, size = 3, 4
    t = qkv(g, 2, 5, heads * size)
    s = {}
    for name, x in t.items():
        blocks = [x[..., r * size:(r + 1) * size] @ orthogonal(g, size) for r in range(heads)]
        s[name] = torch.cat(blocks, -1)
    mask = token_mask((5, 2), 5)
    assert value(feat.minilm_relations(s, t, heads, mask)) < 1e-12
    assert value(feat.minilm_relations({k: v.float() for k, v in s.items()}, t, heads, mask)) < 1e-5
    # a rotation mixing heads is no longer invisible
    mixed = {name: x @ orthogonal(g, heads * size) for name, x in t.items()}
    assert value(feat.minilm_relations(mixed, t, heads, mask)) > 1e-3


def test_hidden_mse_is_zero_for_equal_states_and_cosine_ignores_scale():
    g = gen(22)
    t = randn(g, 2, 5, 6)
    mask = token_mask((5, 3), 5)
    assert value(feat.hidden_mse(t.clone(), t, mask)) == 0
    assert value(feat.hidden_mse(2.5 * t, t, mask, normalize=True)) < 1e-14
    assert value(feat.hidden_mse(2.5 * t, t, mask)) > 1


def test_attention_losses_are_zero_for_equal_maps_and_duplicated_heads():
    g = gen(23)
    mask = token_mask((5, 3), 5)
    s = attention(g, 2, 3, 5, mask)
    for which in ("attention_kl", "attention_mse"):
        loss = getattr(feat, which)
        assert abs(value(loss(s, s.clone(), mask))) < 1e-15
        assert abs(value(loss(s, s.repeat_interleave(4, dim=1), mask))) < 1e-15  # teacher 12 heads, groups of 4
        assert abs(value(loss(s.repeat_interleave(2, dim=1), s, mask))) < 1e-15  # student 6 heads, groups of 2
        assert value(loss(s, s.flip(1), mask)) > 1e-4  # the groups are consecutive heads, not any heads


def test_attention_transfer_is_zero_for_scaled_or_widened_copies():
    g = gen(24)
    t = randn(g, 2, 5, 4)
    mask = token_mask((5, 2), 5)
    assert value(feat.attention_transfer(3.0 * t, t, mask)) < 1e-15
    assert value(feat.attention_transfer(torch.cat([t, -t], -1), t, mask)) < 1e-15  # same mean of |h|^p
    assert value(feat.attention_transfer(randn(g, 2, 5, 4), t, mask)) > 1e-4


def test_crd_lite_is_near_zero_for_separable_matching_rows_and_symmetric_in_scale():
    basis = torch.eye(6, dtype=F64)[:4]  # orthonormal rows: s·tᵀ/τ = I/τ
    assert value(feat.crd_lite(3 * basis, basis, temperature=0.01)) < 1e-30
    g = gen(25)
    s, t = randn(g, 5, 8), randn(g, 5, 8)
    assert value(feat.crd_lite(7 * s, 0.1 * t)) == pytest.approx(value(feat.crd_lite(s, t)), rel=1e-12)


# --------------------------------------------------------------------------- known sign: halfway to the teacher is better


def halfway_pairs():
    g = gen(30)
    mask = token_mask((6, 3, 1), 6)
    yield "hidden_mse", lambda s, t: feat.hidden_mse(s, t, mask), randn(g, 3, 6, 5), randn(g, 3, 6, 5)
    yield "hidden cosine", lambda s, t: feat.hidden_mse(s, t, mask, True), randn(g, 3, 6, 5), randn(g, 3, 6, 5)
    for which in ("attention_kl", "attention_mse"):
        yield which, lambda s, t, w=which: getattr(feat, w)(s, t, mask), attention(g, 3, 2, 6, mask), attention(g, 3, 2, 6, mask)
    yield "attention_transfer", lambda s, t: feat.attention_transfer(s, t, mask), randn(g, 3, 6, 5), randn(g, 3, 6, 5)
    yield "rkd", feat.rkd, randn(g, 7, 5), randn(g, 7, 5)
    yield "crd_lite", feat.crd_lite, randn(g, 7, 5), randn(g, 7, 5)


@pytest.mark.parametrize("name, loss, s, t", list(halfway_pairs()), ids=[p[0] for p in halfway_pairs()])
def test_moving_halfway_to_the_teacher_lowers_the_loss(name, loss, s, t):
    before, after = value(loss(s, t)), value(loss((s + t) / 2, t))
    assert 0 <= after < before


def test_minilm_halfway_to_the_teacher_lowers_the_loss():
    g = gen(31)
    mask = token_mask((5, 2), 5)
    s, t = qkv(g, 2, 5, 8), qkv(g, 2, 5, 8)
    half = {name: (s[name] + t[name]) / 2 for name in "qkv"}
    assert 0 <= value(feat.minilm_relations(half, t, 2, mask)) < value(feat.minilm_relations(s, t, 2, mask))


def test_attention_halfway_with_unequal_heads():
    g = gen(32)
    s, t = attention(g, 2, 2, 5), attention(g, 2, 4, 5)
    target = t.reshape(2, 2, 2, 5, 5).mean(2)
    for which in ("attention_kl", "attention_mse"):
        loss = getattr(feat, which)
        assert value(loss((s + target) / 2, t)) < value(loss(s, t))


# --------------------------------------------------------------------------- padding invariance


def _value_and_grads(loss_fn, leaves):
    leaves = [x.detach().clone().requires_grad_() for x in leaves]
    loss = loss_fn(*leaves)
    grads = torch.autograd.grad(loss, leaves)
    return value(loss), grads


def _assert_padding_invariant(loss_fn, clean, spoiled, padded):
    """Same value, same gradient at real positions, exactly 0 gradient at padded ones."""
    v0, g0 = _value_and_grads(loss_fn, clean)
    v1, g1 = _value_and_grads(loss_fn, spoiled)
    assert v1 == pytest.approx(v0, rel=1e-12, abs=1e-15)
    for a, b, where in zip(g0, g1, padded):
        assert torch.all(torch.isfinite(b))
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
        assert torch.all(b[where.expand_as(b)] == 0)


def test_padding_does_not_matter_for_token_states():
    g = gen(40)
    mask = token_mask((6, 3, 1), 6)
    pad = (mask == 0)[..., None].expand(3, 6, 5)
    s, t = randn(g, 3, 6, 5), randn(g, 3, 6, 7)
    bad_s, bad_t = spoil(s, pad, g), spoil(t, (mask == 0)[..., None].expand(3, 6, 7), g)
    for loss in (lambda x, y: feat.hidden_mse(x, y[..., :5], mask), lambda x, y: feat.hidden_mse(x, y[..., :5], mask, True),
                 lambda x, y: feat.attention_transfer(x, y, mask), lambda x, y: feat.attention_transfer(x, y, mask, p=1)):
        _assert_padding_invariant(loss, [s, t], [bad_s, bad_t], [pad, (mask == 0)[..., None]])


@pytest.mark.parametrize("which", ["attention_kl", "attention_mse"])
def test_padding_does_not_matter_for_attention_maps(which):
    g = gen(41)
    mask = token_mask((5, 2, 1), 5)
    pad = ~((mask[:, None, :, None] == 1) & (mask[:, None, None, :] == 1))  # padded query row or key column
    s, t = attention(g, 3, 2, 5, mask), attention(g, 3, 4, 5, mask)
    loss = lambda x, y: getattr(feat, which)(x, y, mask)  # noqa: E731
    _assert_padding_invariant(loss, [s, t], [spoil(s, pad.expand_as(s), g), spoil(t, pad.expand_as(t), g)], [pad, pad])


def test_padding_does_not_matter_for_minilm():
    g = gen(42)
    mask = token_mask((5, 2, 1), 5)
    pad = (mask == 0)[..., None]
    s, t = qkv(g, 3, 5, 4), qkv(g, 3, 5, 6)
    leaves = [s["q"], s["k"], s["v"], t["q"], t["k"], t["v"]]
    spoiled = [spoil(x, pad.expand_as(x), g) for x in leaves]

    def loss(sq, sk, sv, tq, tk, tv):
        return feat.minilm_relations({"q": sq, "k": sk, "v": sv}, {"q": tq, "k": tk, "v": tv}, 2, mask)

    _assert_padding_invariant(loss, leaves, spoiled, [pad] * 6)


@pytest.mark.parametrize("name, call", [
    ("hidden_mse", lambda x, m: feat.hidden_mse(x, x.detach() + 1, m)),
    ("attention_kl", lambda x, m: feat.attention_kl(x[..., :3].softmax(-1)[:, None], x[..., :3].detach().softmax(-1)[:, None], m)),
    ("attention_mse", lambda x, m: feat.attention_mse(x[..., :3][:, None], x[..., :3].detach()[:, None] + 1, m)),
    ("attention_transfer", lambda x, m: feat.attention_transfer(x, x.detach() + 1, m)),
    ("minilm_relations", lambda x, m: feat.minilm_relations({"q": x, "k": x, "v": x}, {"q": -x, "k": x, "v": x}, 2, m)),
])
def test_a_batch_without_real_tokens_is_zero_with_a_zero_gradient(name, call):
    x = randn(gen(43), 2, 3, 4).requires_grad_()
    loss = call(x, torch.zeros(2, 3, dtype=torch.int64))
    loss.backward()
    assert value(loss) == 0 and torch.all(x.grad == 0)


def test_rkd_on_tiny_batches():
    s = randn(gen(44), 1, 3).requires_grad_()
    loss = feat.rkd(s, randn(gen(45), 1, 4))
    loss.backward()
    assert value(loss) == 0 and torch.all(s.grad == 0)
    # two rows: both normalised distances are 1 and no angle exists
    assert value(feat.rkd(randn(gen(46), 2, 3), randn(gen(47), 2, 5))) == pytest.approx(0, abs=1e-15)


# --------------------------------------------------------------------------- errors


def test_non_dividing_head_counts_name_both_counts():
    s, t = attention(gen(50), 1, 3, 4), attention(gen(51), 1, 4, 4)
    for which in ("attention_kl", "attention_mse"):
        with pytest.raises(ConfigError, match="student has 3 heads and the teacher 4; one count must divide the other"):
            getattr(feat, which)(s, t)


def test_relation_heads_must_divide_every_width():
    s, t = qkv(gen(52), 1, 3, 6), qkv(gen(53), 1, 3, 10)
    with pytest.raises(ConfigError, match=r"relation_heads=4 does not divide the student's q width D=6"):
        feat.minilm_relations(s, t, 4)
    with pytest.raises(ConfigError, match=r"relation_heads=3 does not divide the teacher's q width D=10"):
        feat.minilm_relations(s, t, 3)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="relation_heads must be an integer >= 1"):
            feat.minilm_relations(s, t, bad)
    for bad in ("qq", (), ("qq", "qx")):
        with pytest.raises(ConfigError, match="relations"):
            feat.minilm_relations(s, t, 2, relations=bad)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf")])
def test_bad_hyperparameters_are_config_errors_naming_the_setting(bad):
    s, t = randn(gen(54), 3, 4), randn(gen(55), 3, 4)
    with pytest.raises(ConfigError, match="temperature must be a finite number > 0"):
        feat.crd_lite(s, t, temperature=bad)
    with pytest.raises(ConfigError, match="^p must be a finite number > 0"):
        feat.attention_transfer(s[None], t[None], p=bad)
    with pytest.raises(ConfigError, match="^eps must be a finite number > 0"):
        feat.attention_kl(s[None, None, :3, :3], t[None, None, :3, :3], eps=bad)
    if bad != 0:
        with pytest.raises(ConfigError, match="distance_weight must be a finite number >= 0"):
            feat.rkd(s, t, distance_weight=bad)
        with pytest.raises(ConfigError, match="angle_weight must be a finite number >= 0"):
            feat.rkd(s, t, angle_weight=bad)


def test_shape_errors_are_input_errors():
    g = gen(56)
    with pytest.raises(InputError, match="project the student to the teacher's width first"):
        feat.hidden_mse(randn(g, 2, 3, 4), randn(g, 2, 3, 5))
    with pytest.raises(InputError, match="mask must be a"):
        feat.hidden_mse(randn(g, 2, 3, 4), randn(g, 2, 3, 4), token_mask((3,), 3))
    with pytest.raises(InputError, match="pooled"):
        feat.hidden_mse(randn(g, 2, 4), randn(g, 2, 4), token_mask((1, 1), 1))
    with pytest.raises(InputError, match="shared width"):
        feat.crd_lite(randn(g, 2, 4), randn(g, 2, 5))
    with pytest.raises(InputError, match="same B"):
        feat.rkd(randn(g, 3, 4), randn(g, 2, 4))
    with pytest.raises(InputError, match=r"keys \['q', 'k', 'v'\]"):
        feat.minilm_relations({"q": randn(g, 1, 2, 2)}, {"q": randn(g, 1, 2, 2)}, 1)


# --------------------------------------------------------------------------- check-loss --objective


def test_the_cli_lists_every_checkable_objective():
    assert set(command.OBJECTIVE_CALLS) == set(check.OBJECTIVES)


@pytest.mark.parametrize("objective", list(check.OBJECTIVES))
def test_our_implementations_pass_their_check(objective):
    result = check.check_objective(getattr(feat, objective), objective)
    assert result.matches, check.format_objective_report(result, "x:y")
    assert "OK: matches the reference" in check.format_objective_report(result, "x:y")


# Buggy variants the way peers write them; each must fail (values or gradients).
def _minilm_reversed(student_qkv, teacher_qkv, relation_heads, mask):
    return feat.minilm_relations(teacher_qkv, student_qkv, relation_heads, mask)


def _crd_unnormalised(student, teacher, temperature=0.07):
    return F.cross_entropy(student @ teacher.T / temperature, torch.arange(len(student)))


def _rkd_distances_unnormalised(student, teacher, distance_weight=1.0, angle_weight=2.0):
    ds, dt = torch.cdist(student, student), torch.cdist(teacher, teacher)
    angle = feat.rkd(student, teacher, 0.0, angle_weight)
    return distance_weight * F.smooth_l1_loss(ds, dt) + angle


def _hidden_half_mse(student, teacher, mask, normalize=False):
    return 0.5 * feat.hidden_mse(student, teacher, mask, normalize)  # the ½‖·‖² convention


def _hidden_counts_padding(student, teacher, mask, normalize=False):
    if mask is not None:
        student, teacher = student * mask[..., None], teacher * mask[..., None]
    if normalize:
        student, teacher = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
    return F.mse_loss(student, teacher)  # padded positions in the denominator


def _attention_mse_counts_padding(student_attn, teacher_attn, mask):
    heads = min(student_attn.shape[1], teacher_attn.shape[1])
    s = student_attn.reshape(student_attn.shape[0], heads, -1, *student_attn.shape[2:]).mean(2)
    t = teacher_attn.reshape(teacher_attn.shape[0], heads, -1, *teacher_attn.shape[2:]).mean(2)
    if mask is not None:
        keep = (mask[:, None, :, None] * mask[:, None, None, :]).to(s.dtype)
        s, t = s * keep, t * keep
    return (s - t).pow(2).mean()  # padded entries in the denominator


def _transfer_without_normalising(student_states, teacher_states, mask, p=2):
    if student_states.dim() == 4:
        student_states, teacher_states = (x.flatten(2).transpose(1, 2) for x in (student_states, teacher_states))
    a_s, a_t = student_states.abs().pow(p).mean(-1), teacher_states.abs().pow(p).mean(-1)
    if mask is not None:
        a_s, a_t = a_s * mask, a_t * mask
    return (a_s - a_t).pow(2).mean()


def _detached_hidden(student, teacher, mask, normalize=False):
    return float(feat.hidden_mse(student, teacher, mask, normalize).detach())


@pytest.mark.parametrize("objective, fn, verdict", [
    ("minilm_relations", _minilm_reversed, "does not match"),
    ("crd_lite", _crd_unnormalised, "does not match"),
    ("rkd", _rkd_distances_unnormalised, "does not match"),
    ("hidden_mse", _hidden_half_mse, "a constant 0.5x the reference"),
    ("hidden_mse", _hidden_counts_padding, "does not match"),
    ("attention_mse", _attention_mse_counts_padding, "does not match"),
    ("attention_transfer", _transfer_without_normalising, "does not match"),
    ("hidden_mse", _detached_hidden, "no gradient"),
])
def test_buggy_implementations_fail(objective, fn, verdict):
    result = check.check_objective(fn, objective)
    report = check.format_objective_report(result, "x:y")
    assert not result.matches and verdict in report, report
    assert ("Largest |Δgrad|" in report) == result.has_grad


USER_FILE = textwrap.dedent('''
    import torch
    import torch.nn.functional as F


    def attention_kl(student_attn, teacher_attn, mask):
        """A user's own TinyBERT attention KL, written from the paper."""
        b, _, n, _ = student_attn.shape
        heads = min(student_attn.shape[1], teacher_attn.shape[1])
        s, t = (x.reshape(b, heads, -1, n, n).mean(2) for x in (student_attn, teacher_attn))
        keep = mask.bool() if mask is not None else torch.ones(b, n, dtype=torch.bool)
        pair = (keep[:, None, :, None] & keep[:, None, None, :]).to(t.dtype)
        log_t = torch.log(t.clamp_min(1e-8))
        log_s = torch.log(s.clamp_min(1e-8))
        rows = (pair * t * (log_t - log_s)).sum(-1)
        return rows.sum() / (heads * keep.sum())


    def attention_kl_reversed(student_attn, teacher_attn, mask):
        """The same with KL(student || teacher): the mode-seeking direction, a silent bug here."""
        return attention_kl(teacher_attn, student_attn, mask)


    def crd(student, teacher, temperature=0.07):
        s, t = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
        return F.cross_entropy(s @ t.T / temperature, torch.arange(len(s)))


    def crd_without_normalisation(student, teacher, temperature=0.07):
        return F.cross_entropy(student @ teacher.T / temperature, torch.arange(len(student)))


    def wrong_signature(student, teacher):
        return (student - teacher).pow(2).mean()
''')


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "user_losses.py"
    path.write_text(USER_FILE)
    return path


@pytest.mark.parametrize("function, objective, code, text", [
    ("attention_kl", "attention_kl", 0, "OK: matches the reference"),
    ("attention_kl_reversed", "attention_kl", 1, "MISMATCH: does not match the reference; largest |Δvalue|"),
    ("crd", "crd_lite", 0, "OK: matches the reference"),
    ("crd_without_normalisation", "crd_lite", 1, "MISMATCH: does not match the reference"),
])
def test_cli_checks_a_user_file(user_file, capsys, function, objective, code, text):
    assert cli.main(["check-loss", f"{user_file}:{function}", "--objective", objective]) == code
    out = capsys.readouterr().out
    assert text in out and f"--objective {objective}" in out


def test_cli_objective_exit_2_on_unusable_input(user_file, capsys):
    assert cli.main(["check-loss", f"{user_file}:wrong_signature", "--objective", "hidden_mse"]) == 2
    err = capsys.readouterr().err
    assert "calling wrong_signature as wrong_signature(student, teacher, mask, normalize=...)" in err
    assert err.count("\n") == 1
    assert cli.main(["check-loss", f"{user_file}:crd", "--objective", "crd_lite", "--T", "4", "--alpha", "0.5"]) == 2
    assert "--T and --alpha apply to --objective kd only" in capsys.readouterr().err


def test_cli_objective_isolates_an_exiting_function(tmp_path, capsys):
    path = tmp_path / "exits.py"
    path.write_text("import os\ndef rkd(student, teacher, distance_weight=1.0, angle_weight=2.0):\n    os._exit(0)\n")
    assert cli.main(["check-loss", f"{path}:rkd", "--objective", "rkd"]) == 2
    assert "the process exited with code 0 before the function returned" in capsys.readouterr().err


def test_the_cosine_objective_is_one_minus_cosine_per_position():
    """normalize=True is 1 − cos(s, t) per position, summed over D: its scale does not shrink with the width."""
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(4, 768, generator=g, dtype=torch.float64), torch.randn(4, 768, generator=g, dtype=torch.float64)
    want = (1 - F.cosine_similarity(s, t, dim=-1)).mean()
    assert torch.allclose(feat.hidden_mse(s, t, normalize=True), want, rtol=1e-12)
