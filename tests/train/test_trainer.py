"""End-to-end arms on small real data: output layout, determinism, shared data order, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillab.errors import ConfigError, FingerprintMismatch, InputError
from distillab.io import load_predictions
from distillab.train.trainer import epoch_order, train_arm, train_arms

from train_helpers import banking, banking_cache, bow_config, make_tiny_bert, slice_dataset, write_cache  # noqa: F401 (fixtures)


def test_outputs_follow_the_training_outputs_contract(banking, banking_cache, tmp_path):
    arms = ["vanilla", "kd:T=4,alpha=0.7", "hard_kd:alpha=0.5", "label_smoothing:epsilon=0.1"]
    summaries = train_arms(banking, arms, bow_config(), tmp_path, cache=banking_cache)
    assert list(summaries) == ["vanilla", "kd_T4_a0.7", "hard_kd_a0.5", "label_smoothing_e0.1"]
    test = banking.splits["test"]
    for name, recipe in [("vanilla", {"loss": "vanilla"}), ("kd_T4_a0.7", {"loss": "kd", "T": 4.0, "alpha": 0.7}),
                         ("hard_kd_a0.5", {"loss": "hard_kd", "alpha": 0.5}),
                         ("label_smoothing_e0.1", {"loss": "label_smoothing", "epsilon": 0.1})]:
        arm_dir = tmp_path / name
        assert (arm_dir / "model" / "config.json").exists() and (arm_dir / "model" / "model.safetensors").exists()
        preds = load_predictions(arm_dir / "predictions" / "test.npz")
        assert preds.n == len(test) and preds.num_classes == len(banking.classes)
        assert np.array_equal(preds.ids, test.ids) and np.array_equal(preds.labels, test.labels)
        meta = preds.meta
        assert meta["recipe"] == recipe and meta["arm"] == name and meta["temperature"] is None
        assert meta["params"] == 2**12 * 16 + 16 * 77 + 77
        serving = meta["measurements"]["serving"]
        assert serving["batch_size"] == 32 and serving["ms_per_example"]["median"] > 0
        assert serving["device"] == "cpu" and serving["threads"] == 1
        log = json.loads((arm_dir / "train_log.json").read_text())
        assert len(log["loss"]) == log["summary"]["steps"] == 20  # 2 epochs x ceil(160/16)
        resolved = json.loads((arm_dir / "resolved_config.json").read_text())
        assert resolved["recipe"] == recipe and resolved["learning_rate"] == 0.05
        assert not (arm_dir / "checkpoints").exists()


def test_same_seed_same_predictions_and_other_seed_differs(banking, tmp_path):
    runs = [train_arm(banking, "vanilla", bow_config(seed=s), tmp_path / str(i)) for i, s in enumerate((7, 7, 8))]
    logits = [load_predictions(tmp_path / str(i) / "vanilla" / "predictions" / "test.npz").logits for i in range(3)]
    assert np.array_equal(logits[0], logits[1])
    assert not np.allclose(logits[0], logits[2])
    assert runs[0]["final_loss"] == runs[1]["final_loss"]


def test_arms_share_every_epochs_data_order(banking, banking_cache, tmp_path):
    train_arms(banking, ["vanilla", "kd", "label_smoothing"], bow_config(epochs=3), tmp_path, cache=banking_cache)
    orders = [json.loads((tmp_path / a / "train_log.json").read_text())["epoch_order_sha256"]
              for a in ("vanilla", "kd_T4_a0.7", "label_smoothing_e0.1")]
    assert len(orders[0]) == 3 and len(set(orders[0])) == 3  # three different shuffles...
    assert orders[0] == orders[1] == orders[2]  # ...identical for every arm
    # The order is a function of (seed, epoch) alone.
    assert np.array_equal(epoch_order(42, 1, 160), epoch_order(42, 1, 160))
    assert not np.array_equal(epoch_order(42, 1, 160), epoch_order(42, 2, 160))


def test_gradient_accumulation_gives_the_same_model(banking, tmp_path):
    one = train_arm(banking, "vanilla", bow_config(max_steps=6), tmp_path / "a")
    two = train_arm(banking, "vanilla", bow_config(max_steps=6, gradient_accumulation_steps=4), tmp_path / "b")
    a = load_predictions(tmp_path / "a" / "vanilla" / "predictions" / "test.npz").logits
    b = load_predictions(tmp_path / "b" / "vanilla" / "predictions" / "test.npz").logits
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert one["final_loss"] == pytest.approx(two["final_loss"], rel=1e-5)


def test_kd_from_a_topk_cache(banking, tmp_path):
    cache = write_cache(banking, tmp_path / "topk", kind="topk", k=5)
    out = train_arms(banking, ["kd", "kd:tail=bucket", "hard_kd"], bow_config(max_steps=4), tmp_path / "runs", cache=cache)
    assert set(out) == {"kd_T4_a0.7", "kd_T4_a0.7_bucket", "hard_kd_a0.7"}
    assert out["kd_T4_a0.7_bucket"]["recipe"] == {"loss": "kd", "T": 4.0, "alpha": 0.7, "tail": "bucket"}
    assert all(np.isfinite(s["final_loss"]) for s in out.values())


def test_rerun_skips_finished_arm_and_refuses_other_settings(banking, tmp_path):
    first = train_arm(banking, "vanilla", bow_config(max_steps=3), tmp_path)
    again = train_arm(banking, "vanilla", bow_config(max_steps=3), tmp_path)
    assert again == json.loads((tmp_path / "vanilla" / "train_log.json").read_text())["summary"]
    assert first["final_loss"] == again["final_loss"]
    with pytest.raises(ConfigError, match="other settings"):
        train_arm(banking, "vanilla", bow_config(max_steps=4), tmp_path)


# --------------------------------------------------------------------------- bad input, before training


def test_cache_from_other_data_is_refused_before_training(banking, tmp_path):
    other = slice_dataset(banking, 150, 50, name="other")
    cache = write_cache(other, tmp_path / "other-cache")
    with pytest.raises(FingerprintMismatch, match="different dataset"):
        train_arms(banking, ["vanilla", "kd"], bow_config(), tmp_path / "runs", cache=cache)
    assert not (tmp_path / "runs").exists()


def test_cache_with_other_class_count_is_refused(banking, tmp_path):
    from distillab.data import TextDataset

    fewer = TextDataset("fewer", banking.classes[:-1], {
        "train": banking.splits["train"].take(np.flatnonzero(banking.splits["train"].labels < 76)),
        "test": banking.splits["test"].take(np.flatnonzero(banking.splits["test"].labels < 76))})
    cache = write_cache(fewer, tmp_path / "fewer")
    with pytest.raises(FingerprintMismatch, match="76 classes but dataset .* has 77"):
        train_arms(banking, ["kd"], bow_config(), tmp_path / "runs", cache=cache)


@pytest.mark.parametrize("arm, message", [
    ("kd:T=0", "T=0.0 must be > 0"), ("kd:T=-1", "must be > 0"), ("kd:alpha=1.5", r"alpha=1.5 must be in \[0, 1\]"),
    ("hard_kd:alpha=-0.1", "must be in"), ("distill", "unknown arm 'distill'"), ("kd:beta=2", "no setting 'beta'"),
    ("label_smoothing:epsilon=1", "epsilon=1.0 must be in"),
])
def test_bad_arms_are_refused(banking, banking_cache, tmp_path, arm, message):
    with pytest.raises(ConfigError, match=message):
        train_arms(banking, ["vanilla", arm], bow_config(), tmp_path, cache=banking_cache)
    assert not (tmp_path / "vanilla").exists()


def test_kd_without_cache_and_unknown_split_are_refused(banking, tmp_path):
    with pytest.raises(ConfigError, match="needs a teacher cache"):
        train_arms(banking, ["vanilla", "kd"], bow_config(), tmp_path)
    with pytest.raises(ConfigError, match="no split"):
        train_arms(banking, ["vanilla"], bow_config(eval_splits=("validation",)), tmp_path)


def test_student_with_other_label_count_is_refused(banking, tmp_path):
    path = make_tiny_bert(banking, tmp_path / "bert3", num_labels=3, with_weights=True)
    with pytest.raises(InputError, match="3 labels but the data has 77 classes"):
        train_arms(banking, ["vanilla"], bow_config(student=str(path)), tmp_path / "runs")


def test_tiny_bert_from_config_trains_and_saves(banking, banking_cache, tmp_path):
    path = make_tiny_bert(banking, tmp_path / "bert")
    config = bow_config(student=str(path), max_steps=3, max_length=32, learning_rate=1e-3)
    out = train_arms(banking, ["vanilla", "kd"], config, tmp_path / "runs", cache=banking_cache)
    assert set(out) == {"vanilla", "kd_T4_a0.7"}
    saved = tmp_path / "runs" / "kd_T4_a0.7" / "model"
    assert (saved / "model.safetensors").exists() and (saved / "tokenizer.json").exists()
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(saved)
    assert model.config.num_labels == 77 and model.config.id2label[0] == banking.classes[0]
    preds = load_predictions(tmp_path / "runs" / "kd_T4_a0.7" / "predictions" / "test.npz")
    assert preds.n == 50
