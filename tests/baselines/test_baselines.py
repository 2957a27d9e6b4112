"""Reference baselines: the tfidf_linear model against scikit-learn, determinism, the stage, the CLI and the audit."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from distillab.baselines import BASELINE_KINDS, TfidfLinear, baseline_predictions_stage
from distillab.baselines import tfidf_linear
from distillab.cli import main
from distillab.data import TextDataset, TextSplit
from distillab.errors import ConfigError, InputError
from distillab.io import load_predictions, read_json, save_predictions

TOPICS = {  # three classes with their own vocabulary plus shared filler, so TF-IDF has something to learn
    "grain": "wheat corn harvest tonnes crop export grain",
    "oil": "crude barrel opec refinery oil price supply",
    "money": "rate bank interest dollar currency fed money",
}
FILLER = "the said would also market week year company".split()


def make_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    labels = rng.integers(0, len(names), size=n)
    texts = []
    for label in labels:
        words = list(rng.choice(TOPICS[names[label]].split(), size=4)) + list(rng.choice(FILLER, size=4))
        if rng.random() < 0.2:  # some noise: a word from another topic
            words.append(str(rng.choice(TOPICS[names[(label + 1) % len(names)]].split())))
        texts.append(" ".join(words))
    return texts, labels.astype(np.int64)


def make_dataset(n_train: int = 90, n_test: int = 30) -> TextDataset:
    train_texts, train_labels = make_texts(n_train, seed=1)
    test_texts, test_labels = make_texts(n_test, seed=2)
    return TextDataset("topics", list(TOPICS), {
        "train": TextSplit([f"tr{i}" for i in range(n_train)], train_texts, train_labels),
        "test": TextSplit([f"te{i}" for i in range(n_test)], test_texts, test_labels),
    })


def test_probabilities_equal_the_same_sklearn_pipeline_built_directly():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    ds = make_dataset()
    train, test = ds.splits["train"], ds.splits["test"]
    model = TfidfLinear.fit(train.texts, train.labels, ds.num_classes, seed=0)
    direct = make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=2),
                           LogisticRegression(C=model.selection["C"], class_weight="balanced", max_iter=1000))
    direct.fit(train.texts, train.labels)
    np.testing.assert_allclose(softmax(model.logits(test.texts), axis=1), direct.predict_proba(test.texts),
                               rtol=1e-9, atol=1e-12)
    assert model.selection["C"] in tfidf_linear.C_GRID
    assert [c["C"] for c in model.selection["candidates"]] == list(tfidf_linear.C_GRID)


def test_two_fits_give_identical_logits():
    ds = make_dataset()
    train, test = ds.splits["train"], ds.splits["test"]
    first = TfidfLinear.fit(train.texts, train.labels, ds.num_classes, seed=3).logits(test.texts)
    second = TfidfLinear.fit(train.texts, train.labels, ds.num_classes, seed=3).logits(test.texts)
    assert np.array_equal(first, second)


def test_a_class_missing_from_train_gets_a_finite_floor_logit():
    ds = make_dataset()
    train, test = ds.splits["train"], ds.splits["test"]
    logits = TfidfLinear.fit(train.texts, train.labels, 4, seed=0).logits(test.texts)
    assert logits.shape == (len(test), 4) and np.isfinite(logits).all()
    assert np.all(logits[:, 3] == tfidf_linear.LOG_FLOOR)
    np.testing.assert_allclose(softmax(logits, axis=1)[:, :3].sum(axis=1), 1.0, atol=1e-10)


def test_train_split_too_small_to_choose_c_is_an_input_error():
    texts, labels = make_texts(3, seed=0)
    with pytest.raises(InputError, match="too few to hold out a validation slice"):
        TfidfLinear.fit(texts, np.array([0, 0, 1]), 3)


def test_stage_writes_a_reference_predictions_file_and_skips_when_inputs_are_unchanged(tmp_path, monkeypatch):
    ds = make_dataset()
    paths = baseline_predictions_stage(["tfidf_linear"], ds, "train", "test", tmp_path)
    path = paths["tfidf_linear"]
    assert path == tmp_path / "tfidf_linear" / "predictions" / "test.npz"
    preds = load_predictions(path)
    assert preds.ids.tolist() == ds.splits["test"].ids.tolist()
    assert preds.labels.tolist() == ds.splits["test"].labels.tolist()
    meta = preds.meta
    assert meta["role"] == "reference" and meta["arm"] == "tfidf_linear"
    assert meta["recipe"]["loss"] == "reference_baseline" and meta["recipe"]["kind"] == "tfidf_linear"
    assert meta["recipe"]["C"] == meta["selection"]["C"]
    measured = meta["measurements"]
    assert measured["fit_seconds"] > 0 and measured["serving"]["batch_size"] == 32
    for key in ("ms_per_example", "featurize_ms_per_example", "forward_ms_per_example"):  # the students' layout
        spread = measured["serving"][key]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]

    import distillab.baselines.stage as stage

    def refit(*args, **kwargs):
        raise AssertionError("refitted although nothing changed")

    monkeypatch.setattr(stage, "write_baseline_predictions", refit)
    assert baseline_predictions_stage(["tfidf_linear"], ds, "train", "test", tmp_path) == paths
    with pytest.raises(AssertionError, match="refitted"):  # a different seed is a different input
        baseline_predictions_stage(["tfidf_linear"], ds, "train", "test", tmp_path, seed=1)


def test_stage_refuses_unknown_names_and_train_equal_to_eval(tmp_path):
    ds = make_dataset()
    with pytest.raises(ConfigError, match="unknown baseline 'svm'.*tfidf_linear"):
        baseline_predictions_stage(["svm"], ds, "train", "test", tmp_path)
    with pytest.raises(InputError, match="both 'train'"):
        baseline_predictions_stage(["tfidf_linear"], ds, "train", "train", tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_kinds_match_the_stage():
    from distillab.baselines.command import KINDS

    assert set(KINDS) == set(BASELINE_KINDS)


def write_split_csvs(folder: Path, ds: TextDataset) -> Path:
    folder.mkdir()
    for name, split in ds.splits.items():
        with (folder / f"{name}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((text, ds.classes[label]) for text, label in zip(split.texts, split.labels))
    return folder


def test_cli_file_goes_through_distillab_audit_as_an_extra_arm(tmp_path, capsys):
    ds = make_dataset()
    data = write_split_csvs(tmp_path / "data", ds)
    out = tmp_path / "tfidf.npz"
    assert main(["baseline", "--data", str(data), "--kind", "tfidf_linear", "--out", str(out), "--name", "tfidf"]) == 0
    baseline = load_predictions(out)
    assert baseline.meta["arm"] == "tfidf" and baseline.meta["role"] == "reference"
    # A student-like arm on the same rows (ids come from the CSV loader, so reuse the baseline's).
    rng = np.random.default_rng(0)
    student = tmp_path / "vanilla.npz"
    save_predictions(student, rng.normal(size=baseline.logits.shape).astype(np.float32), baseline.labels,
                     ids=baseline.ids, meta={"arm": "vanilla", "recipe": {"loss": "ce"}})
    audit_dir = tmp_path / "audit"
    assert main(["audit", "--arm", f"vanilla={student}", "--arm", f"tfidf={out}", "--baseline", "vanilla",
                 "--tier-cutoffs", "1,2", "--n-resamples", "50", "--out", str(audit_dir), "--quiet"]) == 0
    audit = read_json(audit_dir / "audit.json")
    assert set(audit["arms"]) == {"vanilla", "tfidf"}
    accuracy = float(np.mean(baseline.logits.argmax(axis=1) == baseline.labels))
    assert audit["arms"]["tfidf"]["overall"]["accuracy"] == pytest.approx(accuracy)
    assert audit["inputs"]["tfidf"]["meta"]["recipe"]["loss"] == "reference_baseline"


@pytest.mark.parametrize("extra, message", [
    (["--eval-split", "validation"], "has no eval split 'validation'"),
    (["--train-split", "test", "--eval-split", "test"], "both 'test'"),
    (["--out-suffix"], "must end in .npz"),
])
def test_cli_bad_input_is_one_line_exit_2_and_no_file(tmp_path, capsys, extra, message):
    data = write_split_csvs(tmp_path / "data", make_dataset())
    out = tmp_path / ("out.txt" if extra == ["--out-suffix"] else "out.npz")
    extra = [] if extra == ["--out-suffix"] else extra
    assert main(["baseline", "--data", str(data), "--kind", "tfidf_linear", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("distillab baseline: error:")
    assert not out.exists() and not out.with_suffix(".json").exists()


def r52_or_skip() -> TextDataset:
    from distillab.data import load_lab_dataset
    from distillab.data.lab import LAB_DATASETS, find_local

    lab = LAB_DATASETS["r52"]
    if any(find_local(lab, f) is None for f in lab.files):
        pytest.skip("R52 files not found locally (set DISTILLAB_DATA_DIR)")
    return load_lab_dataset("r52")


def test_real_r52_slice_scores_well_above_the_majority_class(tmp_path):
    r52 = r52_or_skip()
    train, test = r52.splits["train"], r52.splits["test"]
    small = TextDataset("r52-slice", r52.classes, {"train": train.take(np.arange(1200)), "test": test.take(np.arange(400))})
    path = baseline_predictions_stage(["tfidf_linear"], small, "train", "test", tmp_path)["tfidf_linear"]
    preds = load_predictions(path)
    accuracy = float(np.mean(preds.logits.argmax(axis=1) == preds.labels))
    majority = float(np.mean(preds.labels == np.bincount(small.splits["train"].labels).argmax()))
    assert accuracy > max(0.75, majority + 0.2)  # measured: 0.81 (majority class 0.52)
    assert preds.num_classes == 52
