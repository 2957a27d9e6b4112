"""Tiers for any class count, and the per-row tier forms a predictions file may hold.

The course's rank cut-offs 20/60 assume 113 classes: with 60 or fewer the tail was empty and the
audit refused to run unless the user found cut-offs by hand.
"""

import json

import numpy as np
import pytest

from distillab.audit import audit, make_example
from distillab.cli import main
from distillab.data.tiers import DEFAULT_CUTOFFS, assign_tiers, default_cutoffs
from distillab.errors import InputError
from distillab.io import Predictions, json_text, load_predictions, save_predictions


@pytest.mark.parametrize("k", range(3, 61))
def test_small_class_counts_get_thirds_by_rank_with_every_tier_filled(k):
    cutoffs, note = default_cutoffs(k)
    sizes = np.bincount(np.searchsorted(["head", "mid", "tail"], assign_tiers(np.arange(k, 0, -1), cutoffs)),
                        minlength=3)
    assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1  # thirds, as even as K allows
    assert "thirds by rank" in note and f"{k} classes" in note


@pytest.mark.parametrize("k", [61, 113, 500])
def test_above_60_classes_the_course_cutoffs_are_kept(k):
    assert default_cutoffs(k) == (DEFAULT_CUTOFFS, None)


def three_class_predictions(n=600, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    return Predictions(None, rng.normal(0, 1, (n, 3)) + 2 * np.eye(3)[labels], labels)


def test_three_class_audit_runs_with_chosen_cutoffs_and_says_so(tmp_path):
    result = audit({"a": three_class_predictions()}, "a", n_resamples=5, out=tmp_path / "audit")
    settings = result["settings"]
    assert settings["tier_cutoffs"] == [1, 2]
    assert settings["tier_cutoffs_chosen"].endswith("thirds by rank: head = rank 1, mid = rank 2, tail = rank 3")
    assert [result["tiers"][t]["classes"] for t in ("head", "mid", "tail")] == [[0], [1], [2]]
    written = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert written["settings"]["tier_cutoffs_chosen"] == settings["tier_cutoffs_chosen"]


def test_given_cutoffs_and_thresholds_carry_no_chosen_note():
    preds = three_class_predictions()
    assert "tier_cutoffs_chosen" not in audit({"a": preds}, "a", n_resamples=5, tier_cutoffs=(1, 2))["settings"]
    assert "tier_cutoffs_chosen" not in audit({"a": preds}, "a", n_resamples=5, tier_thresholds=(300, 100))["settings"]


def test_course_113_class_audit_is_unchanged_by_the_default(tmp_path):
    ex = make_example(tmp_path, n=2500)
    arms = {"vanilla": ex["vanilla"], "distilled": ex["distilled"]}
    by_default = audit(arms, "vanilla", teacher=ex["teacher"], n_resamples=20)
    explicit = audit(arms, "vanilla", teacher=ex["teacher"], n_resamples=20, tier_cutoffs=DEFAULT_CUTOFFS)
    assert json_text(by_default) == json_text(explicit)
    assert by_default["settings"]["tier_cutoffs"] == [20, 60]


def test_thresholds_without_train_counts_warn_on_stderr_and_in_audit_json(tmp_path, capsys):
    preds = three_class_predictions()
    path = save_predictions(tmp_path / "a.npz", preds.logits, preds.labels)
    out = tmp_path / "audit"
    assert main(["audit", "--arm", f"a={path}", "--baseline", "a", "--tier-thresholds", "300,100",
                 "--n-resamples", "5", "--out", str(out), "--quiet"]) == 0
    assert "warning: --tier-thresholds 300,100 were applied to the evaluation rows' class counts" in capsys.readouterr().err
    warnings = json.loads((out / "audit.json").read_text())["warnings"]
    assert any("pass --train-counts" in w for w in warnings)
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps([900, 150, 60]))  # head, mid, tail at 300,100
    assert main(["audit", "--arm", f"a={path}", "--baseline", "a", "--tier-thresholds", "300,100", "--train-counts",
                 str(counts), "--n-resamples", "5", "--out", str(tmp_path / "with_counts"), "--quiet"]) == 0
    assert "--tier-thresholds" not in capsys.readouterr().err


# --------------------------------------------------------------------------- per-row tier forms


def test_integer_tier_codes_read_as_head_mid_tail(tmp_path):
    np.savez(tmp_path / "p.npz", logits=np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]]), labels=np.arange(3),
             tiers=np.array([0, 1, 2], dtype=np.int8))
    assert load_predictions(tmp_path / "p.npz").tiers.tolist() == ["head", "mid", "tail"]
    save_predictions(tmp_path / "q.npz", np.eye(3) * 2, np.arange(3), tiers=[2, 1, 0])
    assert load_predictions(tmp_path / "q.npz").tiers.tolist() == ["tail", "mid", "head"]


@pytest.mark.parametrize("tiers, says", [
    (np.array([0, 1, 3]), "tier code 3 in 'tiers' is not 0 (head), 1 (mid) or 2 (tail) (1 such rows)"),
    (np.array(["0", "1", "2"]), "unknown tier value '0' in 'tiers' (expected the strings head, mid, tail or the "
                                "integer codes 0, 1, 2)"),
    (np.array([0.0, 1.0, 2.0]), "'tiers' must hold the strings head, mid, tail or the integer codes 0, 1, 2, "
                                "got dtype float64"),
])
def test_bad_tiers_are_one_plain_line_naming_the_file(tmp_path, tiers, says):
    path = tmp_path / "p.npz"
    np.savez(path, logits=np.eye(3) * 2, labels=np.arange(3), tiers=tiers)
    with pytest.raises(InputError) as info:
        load_predictions(path)
    assert str(info.value) == f"{path}: {says}"
    assert "np.str_" not in str(info.value)
