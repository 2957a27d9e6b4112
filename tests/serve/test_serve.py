"""``distillab.load_student`` and ``distillab predict``: a saved student gives the probabilities its
saved predictions hold, with the fitted temperature applied, for the bag-of-n-grams and a tiny BERT.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import distillab
from distillab.audit.metrics import softmax
from distillab.cli import main
from distillab.errors import InputError
from distillab.io import load_predictions
from distillab.pipeline import save_temperatures

sys.path[:0] = [str(Path(__file__).parents[1] / "train"), str(Path(__file__).parents[1] / "pipeline")]
from tiny_experiment import write_dataset  # noqa: E402
from train_helpers import make_tiny_bert  # noqa: E402

TEMPERATURES = {"bow": 1.7, "hf": 0.8}
MAX_LENGTH = 6  # shorter than the tiny texts (8 words + [CLS]/[SEP]): serving must truncate as training did


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Data folder, dataset and ``{kind: arm folder}`` for a bow and a tiny-BERT student, temperatures saved."""
    from distillab.data import load_dataset
    from distillab.train import TrainConfig, train_arms

    root = tmp_path_factory.mktemp("serve")
    data = write_dataset(root / "data")
    dataset = load_dataset({"path": str(data)})
    bert = make_tiny_bert(dataset, root / "bert", with_weights=True)
    configs = {
        "bow": TrainConfig(student="bow", bow_buckets=2**10, bow_dim=8, batch_size=8, epochs=1, seed=1),
        "hf": TrainConfig(student=str(bert), max_steps=2, batch_size=8, max_length=MAX_LENGTH, learning_rate=1e-3,
                          eval_batch_size=16, seed=1),
    }
    arms = {}
    for kind, config in configs.items():
        train_arms(dataset, ["vanilla"], config, root / kind)
        # The writer `distillab run` uses after its audit.
        save_temperatures({"calibration": {"vanilla": {"temperature": TEMPERATURES[kind], "fit_split": "cal"}}},
                          root / kind)
        arms[kind] = root / kind / "vanilla"
    return data, dataset, arms


def saved_proba(arm: Path, temperature: float = 1.0) -> np.ndarray:
    return softmax(load_predictions(arm / "predictions" / "test.npz").logits.astype(np.float64) / temperature)


@pytest.mark.parametrize("kind", ["bow", "hf"])
def test_load_student_gives_the_saved_predictions_with_the_temperature(trained, kind):
    _, dataset, arms = trained
    student = distillab.load_student(arms[kind] / "model")
    texts = dataset.splits["test"].texts
    proba = student.predict_proba(texts)
    assert student.temperature == TEMPERATURES[kind]
    assert proba.shape == (len(texts), len(dataset.classes))
    np.testing.assert_allclose(proba, saved_proba(arms[kind], TEMPERATURES[kind]), rtol=0, atol=1e-6)
    assert list(student.classes_) == dataset.classes
    assert list(student.predict(texts)) == [dataset.classes[i] for i in proba.argmax(axis=1)]
    raw = distillab.load_student(arms[kind] / "model", raw=True)
    assert raw.temperature is None
    np.testing.assert_allclose(raw.predict_proba(texts), saved_proba(arms[kind]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["bow", "hf"])
def test_cli_predict_on_eval_rows_gives_the_saved_predictions(trained, kind, tmp_path, capsys):
    data, dataset, arms = trained
    out = tmp_path / "test.jsonl"
    assert main(["predict", str(arms[kind] / "model"), "--data", str(data), "--split", "test", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    test = dataset.splits["test"]
    assert [r["id"] for r in rows] == test.ids.tolist()
    assert [r["true_label"] for r in rows] == [dataset.classes[i] for i in test.labels]
    proba = np.array([[r["probabilities"][c] for c in dataset.classes] for r in rows])
    np.testing.assert_allclose(proba, saved_proba(arms[kind], TEMPERATURES[kind]), rtol=0, atol=1e-6)
    assert [r["label"] for r in rows] == [dataset.classes[i] for i in proba.argmax(axis=1)]
    assert f"softmax(logits / {TEMPERATURES[kind]:g}) from temperature.json" in capsys.readouterr().err


def test_cli_text_file_and_csv_agree_with_the_python_api(trained, tmp_path, capsys):
    _, dataset, arms = trained
    model = arms["bow"] / "model"
    texts = dataset.splits["test"].texts[:5]
    expected = distillab.load_student(model, raw=True).predict_proba(texts)
    (tmp_path / "texts.txt").write_text("\r\n".join(texts) + "\r\n", encoding="utf-8")
    assert main(["predict", str(model), "--file", str(tmp_path / "texts.txt"), "--raw",
                 "--out", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["row"]) for r in table] == list(range(5))
    np.testing.assert_array_equal([[float(r[f"p_{c}"]) for c in dataset.classes] for r in table], expected)
    capsys.readouterr()
    assert main(["predict", str(model), "--raw", *[a for t in texts for a in ("--text", t)]]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [[r["probabilities"][c] for c in dataset.classes] for r in printed] == expected.tolist()


def test_hf_student_loads_with_from_pretrained_as_saved(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, dataset, arms = trained
    folder = arms["hf"] / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.id2label == dict(enumerate(dataset.classes))
    assert model.config.label2id == {c: i for i, c in enumerate(dataset.classes)}
    # The saved tokenizer truncates at the training length, so plain HF use sees what the student was trained on.
    assert AutoTokenizer.from_pretrained(folder).model_max_length == MAX_LENGTH


def test_python_api_refuses_one_string(trained):
    student = distillab.load_student(trained[2]["bow"] / "model")
    with pytest.raises(InputError, match="not one string"):
        student.predict_proba("a single text")
    assert student.predict_proba([]).shape == (0, 4)


def _bad_inputs(root: Path, model: Path, hf_model: Path, dataset) -> dict:
    """Each case: (argv after 'predict', the text the error line must contain)."""
    tampered = {}
    for name, text in {"nan": '{"temperature": NaN}', "negative": '{"temperature": -1.5}', "zero": '{"temperature": 0}',
                       "infinite": '{"temperature": Infinity}', "text": '{"temperature": "1.2"}',
                       "null": '{"temperature": null}', "list": "[1.2]"}.items():
        folder = root / f"tampered-{name}"
        shutil.copytree(model, folder)
        (folder / "temperature.json").write_text(text, encoding="utf-8")
        tampered[name] = folder
    (root / "empty.txt").write_bytes(b"")
    (root / "latin1.txt").write_bytes("first text\ncaf\xe9 au lait\n".encode("latin-1"))
    (root / "blank.txt").write_text("one\n\nthree\n", encoding="utf-8")
    (root / "not-a-student").mkdir()
    base = make_tiny_bert(dataset, root / "base-bert")  # a BERT without a classifier head
    (root / "out-dir.jsonl").mkdir()
    damaged = {}
    for name, folder in (("bow", model), ("hf", hf_model)):
        damaged[f"{name}-no-weights"] = shutil.copytree(folder, root / f"{name}-no-weights")
        (damaged[f"{name}-no-weights"] / "model.safetensors").unlink()
        damaged[f"{name}-truncated"] = shutil.copytree(folder, root / f"{name}-truncated")
        data = (folder / "model.safetensors").read_bytes()
        (damaged[f"{name}-truncated"] / "model.safetensors").write_bytes(data[: len(data) // 2])
    bad_config = shutil.copytree(model, root / "bow-bad-config")
    (bad_config / "config.json").write_text(
        (model / "config.json").read_text(encoding="utf-8").replace('"dim": 8', '"dim": "8"'), encoding="utf-8")
    ok = ["--text", "aw1 aw2"]
    must = "key 'temperature' must be a finite number > 0"
    cases = {f"temperature-{n}": ([str(f), *ok], f"{f / 'temperature.json'}: {must}") for n, f in tampered.items()}
    cases.update({n: ([str(f), *ok], "no weights" if n.endswith("no-weights") else "cannot load")
                  for n, f in damaged.items()})
    cases.update({
        "bow-bad-config": ([str(bad_config), *ok], "config.json: key 'dim' is missing or invalid"),
        "missing-folder": ([str(root / "nowhere"), *ok], "no such folder"),
        "not-a-student": ([str(root / "not-a-student"), *ok], "not a student folder (no config.json)"),
        "not-a-classifier": ([str(base), *ok], "not a trained classifier"),
        "empty-file": ([str(model), "--file", str(root / "empty.txt")], "empty.txt: no texts"),
        "non-utf8-file": ([str(model), "--file", str(root / "latin1.txt")], "latin1.txt, line 2: not UTF-8"),
        "blank-line": ([str(model), "--file", str(root / "blank.txt")], "blank.txt, line 2: empty line"),
        "missing-file": ([str(model), "--file", str(root / "none.txt")], "none.txt: file not found"),
        "out-is-a-folder": ([str(model), *ok, "--out", str(root / "out-dir.jsonl")], "out-dir.jsonl: is a folder"),
        "out-format": ([str(model), *ok, "--out", str(root / "p.parquet")], "must end in .jsonl or .csv"),
        "split-without-data": ([str(model), *ok, "--split", "test"], "--split needs --data"),
        "bad-batch-size": ([str(model), *ok, "--batch-size", "0"], "batch size must be a positive integer"),
    })
    return cases


def test_bad_input_is_one_line_exit_2_and_no_output(trained, tmp_path, capsys):
    data, dataset, arms = trained
    cases = _bad_inputs(tmp_path, arms["bow"] / "model", arms["hf"] / "model", dataset)
    cases["missing-split"] = ([str(arms["bow"] / "model"), "--data", str(data), "--split", "validation"],
                              "has no split 'validation' (it has train, test)")
    for name, (argv, message) in cases.items():
        out = tmp_path / f"{name}.jsonl"
        if "--out" not in argv:
            argv = [*argv, "--out", str(out)]
        assert main(["predict", *argv]) == 2, name
        captured = capsys.readouterr()
        assert captured.out == "", name
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("distillab predict: error: "), (name, captured.err)
        assert message in lines[0], (name, lines[0])
        assert not out.exists(), name
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".jsonl", ".csv", ".parquet")) == ["out-dir.jsonl"]
