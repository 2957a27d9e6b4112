"""The LM audit against independent references: float64 loops, scipy, a per-resample bootstrap loop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from distillab.calibrate.temperature import LOG_T_BOUNDS
from distillab.errors import InputError
from distillab.lm.audit import (
    GROUPS,
    audit_language_models,
    calibration_bootstrap,
    fit_temperature,
    metrics_from_sums,
    sequence_bootstrap,
    sequence_sums,
    student_pairs,
    token_statistics,
    token_tiers,
)

VOCAB = 40


def random_logits(n, v=VOCAB, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g) * scale).float()


def test_nll_and_accuracy_match_a_float64_loop():
    z = random_logits(300)
    y = torch.randint(0, VOCAB, (300,), generator=torch.Generator().manual_seed(1))
    got = token_statistics({"s": z}, y)["s"]
    for i in range(300):
        row = [float(v) for v in z[i]]
        top = max(row)
        total = sum(math.exp(v - top) for v in row)
        assert got["nll"][i] == pytest.approx(-(row[int(y[i])] - top - math.log(total)), abs=1e-12)
        assert got["confidence"][i] == pytest.approx(1.0 / total, abs=1e-12)
        assert got["correct"][i] == float(row.index(top) == int(y[i]))
    seq = np.repeat(np.arange(30), 10)
    sums = sequence_sums(got, seq, 30, 15).sum(axis=0, keepdims=True)
    metrics = metrics_from_sums(sums, False, 15)
    assert metrics["perplexity"][0] == pytest.approx(math.exp(got["nll"].mean()), rel=1e-12)


def test_kl_and_js_match_scipy():
    p_logits, q_logits = random_logits(50, seed=2), random_logits(50, seed=3)
    got = token_statistics({"t": p_logits, "s": q_logits}, torch.zeros(50, dtype=torch.long), teacher="t")["s"]
    p = torch.softmax(p_logits.double(), -1).numpy()
    q = torch.softmax(q_logits.double(), -1).numpy()
    for i in range(50):
        assert got["kl"][i] == pytest.approx(entropy(p[i], q[i]), abs=1e-12)
        assert got["js"][i] == pytest.approx(jensenshannon(p[i], q[i]) ** 2, abs=1e-12)
        assert got["agreement"][i] == float(p[i].argmax() == q[i].argmax())


def test_ece_from_sums_matches_a_slow_loop_with_empty_bins():
    rng = np.random.RandomState(4)
    n, bins = 500, 15
    confidence = np.where(rng.rand(n) < 0.5, rng.uniform(0.05, 0.3, n), rng.uniform(0.7, 1.0, n))  # middle bins empty
    confidence[:3] = [1.0, 0.0, 2 / 15]  # the edges: right-closed bins, 0 joins bin 0
    correct = (rng.rand(n) < confidence).astype(float)
    stats = {"nll": rng.rand(n), "correct": correct, "confidence": confidence}
    seq = rng.randint(0, 40, n)
    got = metrics_from_sums(sequence_sums(stats, seq, 40, bins).sum(axis=0, keepdims=True), False, bins)["ece"][0]
    expected, empty = 0.0, 0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [i for i in range(n) if (lo < confidence[i] <= hi) or (b == 0 and confidence[i] == 0.0)]
        if not members:
            empty += 1
            continue
        acc = sum(correct[i] for i in members) / len(members)
        conf = sum(confidence[i] for i in members) / len(members)
        expected += len(members) / n * abs(acc - conf)
    assert empty > 0
    assert got == pytest.approx(expected, abs=1e-12)


def _slow_resampled_tokens(seq, tier, n_seq, seed, resamples):
    """The reference draws, one resample at a time: {group: token indices of the resampled sequences}."""
    slow = np.random.RandomState(seed)
    for _ in range(resamples):
        picked = slow.choice(np.arange(n_seq), size=n_seq, replace=True)
        tokens = np.concatenate([np.flatnonzero(seq == s) for s in picked])
        groups = {g: tokens if g == "overall" else tokens[tier[tokens] == g] for g in GROUPS}
        yield {g: idx for g, idx in groups.items() if idx.size}


def test_bootstrap_matches_a_per_resample_loop_with_the_same_draws():
    rng = np.random.RandomState(5)
    n_seq, seed, resamples, bins = 23, 7, 300, 15
    lengths = rng.randint(1, 9, n_seq)
    seq = np.repeat(np.arange(n_seq), lengths)
    tier = rng.choice(["head", "mid", "tail"], size=seq.size, p=[0.6, 0.3, 0.1])
    arms = {}
    for name in ("teacher", "base", "kd"):
        conf = rng.uniform(0.05, 1.0, seq.size)
        arms[name] = {"nll": rng.exponential(2.0, seq.size), "correct": (rng.rand(seq.size) < conf).astype(float),
                      "confidence": conf}
        if name != "teacher":
            arms[name] |= {"agreement": (rng.rand(seq.size) < 0.5).astype(float), "kl": rng.rand(seq.size),
                           "js": rng.rand(seq.size) / 3}
    got = sequence_bootstrap(arms, seq, tier, n_seq, "base", resamples, seed, bins, teacher="teacher")

    deltas = {(g, k): [] for g in GROUPS for k in ("nll", "perplexity", "accuracy", "ece", "kl", "js")}
    retention = {g: [] for g in GROUPS}
    for groups in _slow_resampled_tokens(seq, tier, n_seq, seed, resamples):
        for g, idx in groups.items():
            m = {a: _slow_metrics(arms[a], idx, bins) for a in arms}
            for k in ("nll", "perplexity", "accuracy", "ece", "kl", "js"):
                deltas[(g, k)].append(m["kd"][k] - m["base"][k])
            retention[g].append(m["kd"]["accuracy"] / m["teacher"]["accuracy"])
    for r in got["bootstrap"]:
        if r["metric"] == "agreement":
            continue
        d = np.array(deltas[(r["tier"], r["metric"])])
        assert r["n_valid"] == d.size
        assert r["ci_low"] == pytest.approx(np.quantile(d, 0.025), abs=1e-10)
        assert r["ci_high"] == pytest.approx(np.quantile(d, 0.975), abs=1e-10)
        assert r["median"] == pytest.approx(np.median(d), abs=1e-10)
    for g in GROUPS:
        assert got["retention"]["kd"][g]["accuracy"]["ci_low"] == pytest.approx(np.quantile(retention[g], 0.025))
    assert got["retention"]["kd"]["overall"]["perplexity"]["estimate"] == pytest.approx(
        np.exp(arms["teacher"]["nll"].mean() - arms["kd"]["nll"].mean()))


def test_student_pairs_match_a_per_resample_loop_and_the_baseline_comparisons():
    rng = np.random.RandomState(15)
    n_seq, seed, resamples, bins = 19, 3, 200, 15
    seq = np.repeat(np.arange(n_seq), rng.randint(1, 8, n_seq))
    tier = rng.choice(["head", "mid", "tail"], size=seq.size, p=[0.5, 0.3, 0.2])
    arms = {}
    for name in ("topk", "teacher", "base", "sampled"):  # the baseline is not first: it still goes first in pairs
        conf = rng.uniform(0.05, 1.0, seq.size)
        arms[name] = {"nll": rng.exponential(2.0, seq.size), "correct": (rng.rand(seq.size) < conf).astype(float),
                      "confidence": conf}
    got = sequence_bootstrap(arms, seq, tier, n_seq, "base", resamples, seed, bins, teacher="teacher")
    expected_pairs = [("topk", "base"), ("sampled", "base"), ("sampled", "topk")]
    assert student_pairs(list(arms), "base", "teacher") == expected_pairs
    assert [(r["arm"], r["against"]) for r in got["pairs"]] == [p for p in expected_pairs for _ in range(4 * 2)]

    deltas = {(a, b, g, k): [] for a, b in expected_pairs for g in GROUPS for k in ("nll", "accuracy")}
    for groups in _slow_resampled_tokens(seq, tier, n_seq, seed, resamples):
        for g, idx in groups.items():
            for a, b in expected_pairs:
                for k, col in (("nll", "nll"), ("accuracy", "correct")):
                    deltas[(a, b, g, k)].append(arms[a][col][idx].mean() - arms[b][col][idx].mean())
    for r in got["pairs"]:
        d = np.array(deltas[(r["arm"], r["against"], r["tier"], r["metric"])])
        col = "nll" if r["metric"] == "nll" else "correct"
        scope = np.ones(seq.size, bool) if r["tier"] == "overall" else tier == r["tier"]
        assert r["estimate"] == pytest.approx(arms[r["arm"]][col][scope].mean() - arms[r["against"]][col][scope].mean(),
                                              abs=1e-12)
        assert r["n_valid"] == d.size and r["n_resamples"] == resamples
        assert r["ci_low"] == pytest.approx(np.quantile(d, 0.025), abs=1e-10)
        assert r["ci_high"] == pytest.approx(np.quantile(d, 0.975), abs=1e-10)
        assert r["median"] == pytest.approx(np.median(d), abs=1e-10)
        assert r["excludes_zero"] == (r["ci_low"] > 0 or r["ci_high"] < 0)
    baseline = {(r["arm"], r["tier"], r["metric"]): r for r in got["bootstrap"]}
    for r in got["pairs"]:
        if r["against"] == "base":  # the same numbers as the comparison with the baseline, bit for bit
            same = baseline[(r["arm"], r["tier"], r["metric"])]
            assert {k: v for k, v in r.items() if k != "against"} == {k: v for k, v in same.items() if k != "baseline"}


def test_ece_change_ci_matches_a_per_resample_loop_with_the_same_draws():
    rng = np.random.RandomState(21)
    n_seq, seed, resamples, bins = 17, 4, 300, 15
    seq = np.repeat(np.arange(n_seq), rng.randint(1, 12, n_seq))
    conf = rng.uniform(0.05, 1.0, seq.size)
    correct = (rng.rand(seq.size) < conf ** 2).astype(float)  # overconfident: scaling should help
    after = conf ** 1.7
    got = calibration_bootstrap(conf, correct, after, seq, n_seq, resamples, seed, bins)

    def ece(c, idx):
        return _slow_metrics({"nll": np.zeros(seq.size), "correct": correct, "confidence": c}, idx, bins)["ece"]

    slow = np.random.RandomState(seed)
    deltas = []
    for _ in range(resamples):
        picked = slow.choice(np.arange(n_seq), size=n_seq, replace=True)
        idx = np.concatenate([np.flatnonzero(seq == s) for s in picked])
        deltas.append(ece(after, idx) - ece(conf, idx))
    everything = np.arange(seq.size)
    assert got["estimate"] == pytest.approx(ece(after, everything) - ece(conf, everything), abs=1e-12)
    assert got["ci_low"] == pytest.approx(np.quantile(deltas, 0.025), abs=1e-10)
    assert got["ci_high"] == pytest.approx(np.quantile(deltas, 0.975), abs=1e-10)
    assert got["median"] == pytest.approx(np.median(deltas), abs=1e-10)
    assert got["n_valid"] == got["n_resamples"] == resamples
    assert got["excludes_zero"] == (got["ci_high"] < 0 or got["ci_low"] > 0)
    assert got["verdict"] == ("significant improvement" if got["ci_high"] < 0 else
                              "significant degradation" if got["ci_low"] > 0 else
                              "cannot be distinguished from zero at this sample size")


def _slow_metrics(stats, idx, bins):
    conf, correct = stats["confidence"][idx], stats["correct"][idx]
    b = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    ece = sum((b == i).sum() / idx.size * abs(correct[b == i].mean() - conf[b == i].mean())
              for i in range(bins) if (b == i).any())
    nll = stats["nll"][idx].mean()
    out = {"nll": nll, "perplexity": math.exp(nll), "accuracy": correct.mean(), "ece": ece}
    return out | {k: stats[k][idx].mean() for k in ("kl", "js") if k in stats}


def test_tiers_on_a_hand_example_with_ties_and_unseen_tokens():
    tiers, info = token_tiers(np.array([10, 10, 5, 3, 1, 1, 0, 0]), 8)
    # mass 30: sorted 10, 10 reach 67% (50% is crossed at the second 10: both head), 5, 3 reach 93% (mid)
    assert tiers.tolist() == ["head", "head", "mid", "mid", "tail", "tail", "tail", "tail"]
    assert info["head_min_count"] == 10 and info["mid_min_count"] == 3 and info["unseen_ids"] == 2
    assert info["train_mass"]["head"] == pytest.approx(20 / 30)
    tied, _ = token_tiers(np.array([4, 3, 3, 0]), 4)  # 50% is crossed inside the tie at 3: all three are head
    assert tied.tolist() == ["head", "head", "head", "tail"]
    with pytest.raises(InputError, match="one count per vocabulary id"):
        token_tiers(np.ones(7), 8)
    with pytest.raises(InputError, match="all zero"):
        token_tiers(np.zeros(8), 8)


def test_temperature_fit_matches_scipy_on_the_same_data():
    z = random_logits(400, scale=4.0, seed=8)
    y = torch.multinomial(torch.softmax(z / 2.5, -1), 1, generator=torch.Generator().manual_seed(9))[:, 0]
    blocks = [z[:150].half(), z[150:].half()]
    t, bound = fit_temperature(blocks, [y[:150].numpy(), y[150:].numpy()])
    zz = torch.cat(blocks).double().numpy()
    yy = y.numpy()

    def nll(log_t):
        s = zz / math.exp(log_t)
        top = s.max(axis=1)
        return np.mean(top + np.log(np.exp(s - top[:, None]).sum(axis=1)) - s[np.arange(len(yy)), yy])

    ref = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-10})
    assert bound is None
    assert t == pytest.approx(math.exp(ref.x), rel=1e-5)
    assert t > 1.5  # the targets were drawn at T = 2.5: the fit softens the logits


def test_temperature_fit_stops_on_a_bound_and_says_so():
    z = random_logits(200, seed=12)
    y = torch.randint(0, VOCAB, (200,), generator=torch.Generator().manual_seed(13))  # unrelated to the logits
    t, bound = fit_temperature([z], [y.numpy()])
    assert (t, bound) == (pytest.approx(1000.0), "upper")
    peaked = z.clone()
    peaked[torch.arange(200), y] += 40.0  # the target always wins by far: sharper is always better
    assert fit_temperature([peaked], [y.numpy()]) == (pytest.approx(0.001), "lower")


# --------------------------------------------------------------------------- end to end on tiny Llamas


def tiny_llama(seed, vocab=VOCAB, context=32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=context)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def models():
    return tiny_llama(0), {"base": tiny_llama(1), "kd": tiny_llama(2)}


def sequences(n=12, seed=10):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, VOCAB, rng.randint(2, 20)).astype(np.int64) for _ in range(n)]


def test_audit_end_to_end_matches_unbatched_forward_passes(models, tmp_path):
    teacher, students = models
    seqs = sequences()
    counts = np.bincount(np.concatenate([s[1:] for s in sequences(50, seed=11)]), minlength=VOCAB)
    out = audit_language_models(teacher, students, seqs, counts, "base", tmp_path, n_resamples=50, progress=False)
    assert json.loads((tmp_path / "audit.json").read_text())["arms"].keys() == {"teacher", "base", "kd"}
    nll, kl = [], []
    with torch.no_grad():
        for s in seqs:
            ids = torch.as_tensor(s)[None]
            zs = students["kd"](input_ids=ids).logits[0, :-1].double()
            zt = teacher(input_ids=ids).logits[0, :-1].double()
            logq, logp = torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)
            nll.append(-logq.gather(1, ids[0, 1:, None])[:, 0])
            kl.append((logp.exp() * (logp - logq)).sum(-1))
    kd = out["arms"]["kd"]
    assert kd["overall"]["nll"] == pytest.approx(float(torch.cat(nll).mean()), rel=1e-5)
    assert kd["overall"]["kl"] == pytest.approx(float(torch.cat(kl).mean()), rel=1e-4)
    assert kd["overall"]["tokens"] == sum(len(s) - 1 for s in seqs)
    assert sum(kd["tiers"][t]["tokens"] for t in ("head", "mid", "tail")) == kd["overall"]["tokens"]
    assert kd["calibration"]["cal_sequences"] + kd["calibration"]["eval_sequences"] == len(seqs)
    assert out["memory"]["cal_logits_bytes"] == 3 * kd["calibration"]["cal_tokens"] * VOCAB * 2
    assert {r["metric"] for r in out["bootstrap"]} == {"nll", "perplexity", "accuracy", "ece", "agreement", "kl", "js"}
    assert {r["tier"] for r in out["bootstrap"]} == set(GROUPS) and all(r["arm"] == "kd" for r in out["bootstrap"])
    assert set(kd["retention"]["overall"]) == {"accuracy", "perplexity"}
    assert {(r["arm"], r["against"]) for r in out["pairs"]} == {("kd", "base")}  # the teacher is in no pair
    baseline = {(r["tier"], r["metric"]): r for r in out["bootstrap"]}
    for r in out["pairs"]:
        assert r["estimate"] == baseline[(r["tier"], r["metric"])]["estimate"]
        assert r["ci_low"] == baseline[(r["tier"], r["metric"])]["ci_low"]
    for name, arm in out["arms"].items():
        c = arm["calibration"]
        assert c["ece_change"]["estimate"] == pytest.approx(c["ece_after"] - c["ece_before"], abs=1e-12)
        assert c["ece_change"]["n_valid"] == 50 and c["ece_change"]["ci_low"] <= c["ece_change"]["ci_high"]


def test_audit_without_a_teacher_omits_teacher_relative_metrics(models, tmp_path):
    _, students = models
    out = audit_language_models(None, students, sequences(), np.ones(VOCAB), "base", tmp_path, n_resamples=20,
                                progress=False)
    assert set(out["arms"]) == {"base", "kd"} and out["arms"]["kd"]["retention"] is None
    assert "kl" not in out["arms"]["kd"]["overall"]
    assert {r["metric"] for r in out["bootstrap"]} == {"nll", "perplexity", "accuracy", "ece"}


@pytest.mark.parametrize("change, message", [
    (lambda s, c: (s[:3] + [np.array([], dtype=np.int64)] + s[3:], c), "sequence 3 has 0 token"),
    (lambda s, c: (s[:1] + [np.arange(40) % VOCAB] + s[1:], c), "sequence 1 has 40 tokens, longer than"),
    (lambda s, c: (s[:2] + [np.array([1, VOCAB])] + s[2:], c), f"sequence 2: token id {VOCAB} is outside"),
    (lambda s, c: (s[:2] + [np.array([1.0, 2.0])] + s[2:], c), "sequence 2: expected a 1-D array of integer"),
    (lambda s, c: (s, c[:-1]), "shape \\(39,\\); expected one count per vocabulary id \\(40\\)"),
    (lambda s, c: (s[:1], c), "1 held-out sequence"),
])
def test_bad_input_is_one_clear_error(models, tmp_path, change, message):
    teacher, students = models
    seqs, counts = change(sequences(), np.ones(VOCAB))
    with pytest.raises(InputError, match=message):
        audit_language_models(teacher, students, seqs, counts, "base", tmp_path, n_resamples=5, progress=False)
    assert not (tmp_path / "audit.json").exists()


def test_unknown_baseline_is_refused(models, tmp_path):
    teacher, students = models
    with pytest.raises(InputError, match="baseline 'vanilla' is not one of the students"):
        audit_language_models(teacher, students, sequences(), np.ones(VOCAB), "vanilla", tmp_path, progress=False)
