"""Seed-to-seed variance (distillab.audit.seeds) against a hand-computed example.

Six evaluation rows, three classes (one per tier: head 0, mid 1, tail 2), labels [0, 0, 1, 1, 2, 2],
two arms trained with three seeds. In every (arm, seed) file the predicted class gets probability
``conf`` and the two others (1 − conf)/2 each, so by hand: accuracy = correct / 6; NLL = mean of
−ln conf (correct) and −ln((1 − conf)/2) (wrong); every row has the same confidence, so ECE = one bin
= |accuracy − conf|; per-class F1 = 2·TP / (support + predicted).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from distillab.audit.seeds import NOT_SIGNIFICANT, ONE_SEED, seed_variance, t_interval
from distillab.errors import InputError
from distillab.io import Predictions, load_predictions, save_predictions

LABELS = np.array([0, 0, 1, 1, 2, 2])
IDS = np.array([f"r{i}" for i in range(6)])
TIERS = {"head": [0], "mid": [1], "tail": [2]}

# (predicted classes, conf) per seed.
BASELINE = {1: ([0, 0, 1, 0, 2, 1], 0.7), 2: ([0, 0, 1, 1, 2, 2], 0.9), 3: ([0, 1, 1, 1, 2, 0], 0.6)}
KD = {1: ([0, 0, 1, 1, 2, 1], 0.8), 2: ([0, 0, 1, 1, 2, 2], 0.8), 3: ([0, 0, 1, 1, 2, 0], 0.7)}


def predictions(preds, conf, order=None) -> Predictions:
    probs = np.full((6, 3), (1 - conf) / 2)
    probs[np.arange(6), preds] = conf
    order = np.arange(6) if order is None else np.asarray(order)
    return Predictions(None, np.log(probs)[order], LABELS[order], ids=IDS[order])


def nll(correct: int, conf: float) -> float:
    return (correct * -math.log(conf) + (6 - correct) * -math.log((1 - conf) / 2)) / 6


# By hand, per seed (see the module docstring). Baseline seed 1: rows 3 (0 for 1) and 5 (1 for 2) wrong;
# class 0: TP 2, support 2, predicted 3 → 4/5; class 1: TP 1, predicted 2 → 1/2; class 2: TP 1, predicted 1 → 2/3.
# Seed 2: all right. Seed 3: rows 1 (1 for 0) and 5 (0 for 2) wrong; class 0: 2/4, class 1: 4/5, class 2: 2/3.
# KD seed 1: row 5 (1 for 2) wrong; F1 1, 4/5, 2/3. Seed 2: all right. Seed 3: row 5 (0 for 2) wrong; 4/5, 1, 2/3.
HAND = {
    "vanilla": {
        "accuracy": [4 / 6, 1.0, 4 / 6],
        "macro_f1": [(4 / 5 + 1 / 2 + 2 / 3) / 3, 1.0, (1 / 2 + 4 / 5 + 2 / 3) / 3],
        "ece": [abs(4 / 6 - 0.7), abs(1 - 0.9), abs(4 / 6 - 0.6)],
        "nll": [nll(4, 0.7), nll(6, 0.9), nll(4, 0.6)],
    },
    "kd": {
        "accuracy": [5 / 6, 1.0, 5 / 6],
        "macro_f1": [(1 + 4 / 5 + 2 / 3) / 3, 1.0, (4 / 5 + 1 + 2 / 3) / 3],
        "ece": [abs(5 / 6 - 0.8), abs(1 - 0.8), abs(5 / 6 - 0.7)],
        "nll": [nll(5, 0.8), nll(6, 0.8), nll(5, 0.7)],
    },
}
# Per tier, macro-F1 on the tier's rows over the tier's class. Tail rows 4, 5 (class 2): seeds 1 and 3 predict 2
# once (TP 1, support 2, predicted 1 → 2/3), seed 2 twice (→ 1), in both arms. Mid rows 2, 3 (class 1): baseline
# seed 1 predicts [1, 0] → 2/3, seed 3 [1, 1] → 1; KD always [1, 1] → 1. Head rows 0, 1: baseline seed 3 predicts
# [0, 1] → 2/3, else 1.
HAND_TIERS = {
    "vanilla": {"head": [1.0, 1.0, 2 / 3], "mid": [2 / 3, 1.0, 1.0], "tail": [2 / 3, 1.0, 2 / 3]},
    "kd": {"head": [1.0, 1.0, 1.0], "mid": [1.0, 1.0, 1.0], "tail": [2 / 3, 1.0, 2 / 3]},
}


@pytest.fixture
def result():
    per_seed = {seed: {"vanilla": predictions(*BASELINE[seed]), "kd": predictions(*KD[seed])} for seed in (1, 2, 3)}
    return seed_variance(per_seed, baseline="vanilla", tiers=TIERS)


def test_per_seed_values_mean_and_sample_sd_match_the_hand_computation(result):
    assert result["seeds"] == [1, 2, 3] and result["primary_seed"] == 1 and result["baseline"] == "vanilla"
    for arm, metrics in HAND.items():
        for metric, expected in metrics.items():
            got = result["arms"][arm]["values"]["overall"][metric]
            assert got["per_seed"] == pytest.approx(expected, abs=1e-12), (arm, metric)
            mean = sum(expected) / 3
            sd = math.sqrt(sum((x - mean) ** 2 for x in expected) / 2)  # sample sd: n − 1 = 2
            assert got["mean"] == pytest.approx(mean, abs=1e-12) and got["sd"] == pytest.approx(sd, abs=1e-12)
        for tier, expected in HAND_TIERS[arm].items():
            assert result["arms"][arm]["values"][tier]["macro_f1"]["per_seed"] == pytest.approx(expected, abs=1e-12)
    # Accuracy per tier: KD seed 1 gets 1 of the 2 tail rows right.
    assert result["arms"]["kd"]["values"]["tail"]["accuracy"]["per_seed"] == pytest.approx([0.5, 1.0, 0.5])


def test_seed_paired_delta_and_student_t_ci(result):
    paired = {(r["arm"], r["tier"], r["metric"]): r for r in result["paired"]}
    assert not any(r["arm"] == "vanilla" for r in result["paired"])  # the baseline is not compared with itself
    # Accuracy: Δ = (5/6 − 4/6, 1 − 1, 5/6 − 4/6) = (1/6, 0, 1/6); mean 1/9; deviations (1/18, −1/9, 1/18),
    # squares (1, 4, 1)/324, sum 1/54, over n − 1 = 2: variance 1/108.
    acc = paired[("kd", "overall", "accuracy")]
    assert acc["deltas"] == pytest.approx([1 / 6, 0.0, 1 / 6], abs=1e-12)
    assert acc["mean"] == pytest.approx(1 / 9, abs=1e-12)
    assert acc["sd"] == pytest.approx(math.sqrt(1 / 108), abs=1e-12)
    q = student_t.ppf(0.975, 2)  # 4.3027
    half = q * math.sqrt(1 / 108) / math.sqrt(3)
    assert acc["t_quantile"] == pytest.approx(q) and acc["df"] == 2 and acc["n_seeds"] == 3
    assert (acc["ci_low"], acc["ci_high"]) == pytest.approx((1 / 9 - half, 1 / 9 + half), abs=1e-12)
    assert acc["ci_low"] == pytest.approx(-0.12792, abs=1e-5) and acc["ci_high"] == pytest.approx(0.35014, abs=1e-5)
    assert acc["excludes_zero"] is False and acc["verdict"] == NOT_SIGNIFICANT
    # Macro-F1: the same Δ (1/6, 0, 1/6) by the hand values above.
    f1 = paired[("kd", "overall", "macro_f1")]
    assert f1["deltas"] == pytest.approx([1 / 6, 0.0, 1 / 6], abs=1e-12)
    # NLL, lower is better: Δ per seed from the hand NLLs; the CI contains 0 (seed 2 goes the other way).
    n = paired[("kd", "overall", "nll")]
    deltas = [k - v for k, v in zip(HAND["kd"]["nll"], HAND["vanilla"]["nll"])]
    assert n["deltas"] == pytest.approx(deltas, abs=1e-12) and n["better"] == "lower"
    assert deltas[0] < 0 < deltas[1]
    # ECE: Δ = (1/30 − 1/30, 0.2 − 0.1, 2/15 − 1/15).
    assert paired[("kd", "overall", "ece")]["deltas"] == pytest.approx([0.0, 0.1, 1 / 15], abs=1e-12)
    # Head macro-F1: Δ = (0, 0, 1/3).
    assert paired[("kd", "head", "macro_f1")]["deltas"] == pytest.approx([0, 0, 1 / 3], abs=1e-12)


def test_t_interval_excluding_zero_and_the_verdict_direction():
    mean, sd, low, high = t_interval([0.10, 0.12, 0.11])
    half = student_t.ppf(0.975, 2) * 0.01 / math.sqrt(3)  # sd of (0.10, 0.12, 0.11) is 0.01
    assert (mean, sd) == pytest.approx((0.11, 0.01)) and (low, high) == pytest.approx((0.11 - half, 0.11 + half))
    assert low > 0
    assert t_interval([0.3]) is None
    # An arm better than the baseline on every seed by a steady margin: NLL lower beyond seed noise.
    per_seed = {}
    for seed, conf in ((1, 0.7), (2, 0.8), (3, 0.9)):
        right = [0, 0, 1, 1, 2, 2]
        per_seed[seed] = {"vanilla": predictions(right, conf), "sharp": predictions(right, conf + 0.05 + seed / 1000)}
    r = seed_variance(per_seed, "vanilla", TIERS)
    nll_row = next(p for p in r["paired"] if p["metric"] == "nll" and p["tier"] == "overall")
    assert nll_row["excludes_zero"] and nll_row["ci_high"] < 0
    assert nll_row["verdict"] == "improvement beyond seed noise"


def test_one_seed_has_no_ci_and_says_so():
    r = seed_variance({7: {"vanilla": predictions(*BASELINE[1]), "kd": predictions(*KD[1])}}, "vanilla", TIERS)
    acc = next(p for p in r["paired"] if p["metric"] == "accuracy" and p["tier"] == "overall")
    assert acc["deltas"] == pytest.approx([1 / 6]) and acc["mean"] == pytest.approx(1 / 6)
    assert acc["ci_low"] is None and acc["ci_high"] is None and acc["sd"] is None and acc["verdict"] == ONE_SEED
    assert r["arms"]["kd"]["values"]["overall"]["accuracy"]["sd"] is None


def test_files_align_by_id_and_a_fixed_baseline_stands_for_every_seed(tmp_path):
    shuffled = [5, 3, 1, 0, 2, 4]
    per_seed = {}
    for seed in (1, 2, 3):
        path = tmp_path / f"kd-{seed}.npz"
        p = predictions(*KD[seed], order=shuffled)
        save_predictions(path, p.logits, p.labels, ids=p.ids)
        per_seed[seed] = {"kd": path}
    base = predictions(*BASELINE[2])  # deterministic: one file for every seed
    r = seed_variance(per_seed, "vanilla", TIERS, fixed={"vanilla": base})
    assert r["arms"]["vanilla"]["fixed"] and r["fixed_arms"] == ["vanilla"]
    assert r["arms"]["vanilla"]["values"]["overall"]["accuracy"] == {"per_seed": [1.0] * 3, "mean": 1.0, "sd": 0.0}
    assert r["arms"]["kd"]["values"]["overall"]["accuracy"]["per_seed"] == pytest.approx(HAND["kd"]["accuracy"])
    acc = next(p for p in r["paired"] if p["metric"] == "accuracy" and p["tier"] == "overall")
    assert acc["deltas"] == pytest.approx([-1 / 6, 0.0, -1 / 6])
    assert load_predictions(per_seed[1]["kd"]).ids.tolist() == IDS[shuffled].tolist()


def test_bad_inputs_are_one_line_errors():
    one = {"vanilla": predictions(*BASELINE[1]), "kd": predictions(*KD[1])}
    with pytest.raises(InputError, match="every seed must list the same arms"):
        seed_variance({1: one, 2: {"vanilla": one["vanilla"]}}, "vanilla", TIERS)
    with pytest.raises(InputError, match="baseline 'base' is not an arm"):
        seed_variance({1: one}, "base", TIERS)
    other = Predictions(None, one["kd"].logits, np.array([1, 0, 1, 1, 2, 2]), ids=IDS)
    with pytest.raises(InputError, match="label at row 0"):
        seed_variance({1: one, 2: {"vanilla": one["vanilla"], "kd": other}}, "vanilla", TIERS)


def test_every_key_written_is_documented_in_formats_md(result):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text(encoding="utf-8")
    text = doc[doc.index("\n## Seed-to-seed variance"):]
    keys = set(result) | set(result["arms"]["kd"]) | set(result["paired"][0])
    keys |= set(result["arms"]["kd"]["values"]["overall"]["accuracy"])
    assert not {key for key in keys if f"`{key}`" not in text}
