"""The CLI end to end: teacher → cache inspect; cache import of course-style npz files, on real R52 rows."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from teacher_helpers import make_dataset, write_dataset_folder
from sklearn.metrics import accuracy_score, f1_score

from distillab.cli import main
from distillab.teacher.cache import TeacherCache


def test_teacher_then_inspect(tmp_path, tiny_bert, capsys):
    spec = write_dataset_folder(tmp_path / "data", make_dataset())
    out = tmp_path / "cache"
    assert main(["teacher", "--model", tiny_bert, "--data", str(spec), "--out", str(out), "--temperature", "2",
                 "--shard-rows", "16", "--no-progress"]) == 0
    cache = TeacherCache.open(out)
    cache.check_matches(make_dataset())
    assert cache.splits == {"train": 30, "test": 12} and cache.temperature == 2.0

    capsys.readouterr()
    assert main(["cache", "inspect", str(out), "--json", "--verify"]) == 0
    summary = json.loads(capsys.readouterr().out)
    preds, labels = cache.logits().argmax(1), cache.labels()
    assert summary["teacher_scores"]["all"]["accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert summary["teacher_scores"]["all"]["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro"))
    assert summary["rows"] == 42 and summary["checksums_verified"] is True and summary["dtype"] == "fp16"

    assert main(["cache", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rows       42 (train 30, test 12)" in text and "teacher vs labels [test]" in text

    assert main(["cache", "export", str(out), "--split", "test", "--out", str(tmp_path / "teacher_test.npz")]) == 0
    from distillab.io import load_predictions

    exported = load_predictions(tmp_path / "teacher_test.npz")
    assert exported.ids.tolist() == make_dataset().splits["test"].ids.tolist()
    np.testing.assert_array_equal(exported.logits, cache.logits(exported.ids))
    assert exported.meta["arm"] == "teacher" and exported.meta["temperature"] == 2.0

    # The same command again finds the cache complete; a different temperature is refused.
    assert main(["teacher", "--model", tiny_bert, "--data", str(spec), "--out", str(out), "--temperature", "2",
                 "--shard-rows", "16", "--no-progress"]) == 0
    assert main(["teacher", "--model", tiny_bert, "--data", str(spec), "--out", str(out), "--temperature", "3",
                 "--shard-rows", "16", "--no-progress"]) == 2
    assert "temperature: 2.0 != 3.0" in capsys.readouterr().err


def test_threads_sets_torch_threads_for_the_capture(tmp_path, tiny_bert, capsys):
    import torch

    spec = write_dataset_folder(tmp_path / "data", make_dataset())
    before = torch.get_num_threads()
    try:
        assert main(["teacher", "--model", tiny_bert, "--data", str(spec), "--out", str(tmp_path / "c"),
                     "--threads", "1", "--no-progress"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exit_info:
        main(["teacher", "--model", tiny_bert, "--data", str(spec), "--out", str(tmp_path / "d"), "--threads", "0"])
    assert exit_info.value.code == 2 and not (tmp_path / "d").exists()


def test_model_folder_without_tokenizer_needs_tokenizer_flag(tmp_path, tiny_bert, capsys):
    import shutil

    spec = write_dataset_folder(tmp_path / "data", make_dataset())
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(tiny_bert, name), bare / name)
    args = ["teacher", "--model", str(bare), "--data", str(spec), "--split", "test", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "c")]) == 2
    assert "has 5 tokens but the model's vocabulary has 25" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "c"), "--tokenizer", tiny_bert]) == 0


def test_bad_cli_input_is_one_line_exit_2(tmp_path, tiny_llama, capsys):
    spec = write_dataset_folder(tmp_path / "data", make_dataset())
    assert main(["teacher", "--model", tiny_llama, "--causal-lm", "--data", str(spec), "--out", str(tmp_path / "c")]) == 2
    assert "--causal-lm needs --topk K" in capsys.readouterr().err
    assert main(["cache", "inspect", str(tmp_path)]) == 2
    assert "not a teacher cache directory" in capsys.readouterr().err
    assert main(["teacher", "--model", str(tmp_path / "missing"), "--data", str(spec), "--out", str(tmp_path / "c")]) == 2
    assert "cannot load a sequence-classification model" in capsys.readouterr().err


@pytest.fixture(scope="module")
def r52():
    from distillab.data import load_lab_dataset

    if not os.environ.get("DISTILLAB_DATA_DIR"):
        pytest.skip("DISTILLAB_DATA_DIR not set (point it at the shared data)")
    return load_lab_dataset("r52")


def test_import_course_style_npz_for_all_r52_splits(tmp_path, r52, capsys):
    """The course layout (logits + labels, no ids, rows in split order), R52 train+test: 9,100 × 52 fp16."""
    labels = np.concatenate([r52.splits["train"].labels, r52.splits["test"].labels])
    rng = np.random.RandomState(0)
    logits = rng.normal(size=(len(labels), 52)).astype(np.float32)
    logits[np.arange(len(labels)), labels] += 4.0  # a decent teacher
    logits = logits.astype(np.float16).astype(np.float32)  # the course stores fp16; compare like with like
    np.savez(tmp_path / "train_test_logits.npz", logits=logits.astype(np.float16), labels=labels)

    out = tmp_path / "cache"
    assert main(["cache", "import", str(tmp_path / "train_test_logits.npz"), "--data", "r52", "--out", str(out),
                 "--already-scaled-by", "1.2538", "--teacher-name", "qwen-fixture", "--no-progress"]) == 0
    cache = TeacherCache.open(out, verify=True)
    cache.check_matches(r52)
    assert cache.splits == {"train": 6532, "test": 2568} and cache.temperature == 1.2538
    np.testing.assert_array_equal(cache.logits(cache.ids), logits)
    test_ids = r52.splits["test"].ids[::-1]
    np.testing.assert_array_equal(cache.labels(test_ids), r52.splits["test"].labels[::-1])
    size = sum(f.stat().st_size for f in out.iterdir())
    assert size / len(cache) < 140  # 52 × 2 bytes of logits + label + text hash + id: compact enough to commit

    capsys.readouterr()
    assert main(["cache", "inspect", str(out), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["teacher_scores"]
    assert scores["test"]["accuracy"] == pytest.approx(accuracy_score(labels[6532:], logits[6532:].argmax(1)))

    shuffled = labels.copy()
    shuffled[[5, 9]] = shuffled[[9, 5]] if shuffled[5] != shuffled[9] else (shuffled[[9, 5]] + 1) % 52
    np.savez(tmp_path / "wrong.npz", logits=logits, labels=shuffled)
    assert main(["cache", "import", str(tmp_path / "wrong.npz"), "--data", "r52", "--out", str(tmp_path / "w"),
                 "--no-progress"]) == 2
    assert "labels disagree with the dataset on 2 of 9100 rows" in capsys.readouterr().err
    assert main(["cache", "import", str(tmp_path / "train_test_logits.npz"), "--data", "r52", "--split", "test",
                 "--out", str(tmp_path / "w"), "--no-progress"]) == 2
    assert "9100 rows but the chosen splits hold 2568" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_import_with_ids_selects_and_reorders_rows(tmp_path):
    dataset = make_dataset()
    ids = np.concatenate([dataset.splits["test"].ids, dataset.splits["train"].ids])[::-1]
    by_id = {i: l for s in dataset.splits.values() for i, l in zip(s.ids.tolist(), s.labels.tolist())}
    logits = np.random.RandomState(3).normal(size=(len(ids), 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", logits=logits, labels=np.array([by_id[i] for i in ids.tolist()]), ids=ids)
    from distillab.teacher.importer import import_logits

    import_logits(tmp_path / "x.npz", dataset, tmp_path / "c", splits=["test"], temperature=2.0, dtype="fp32",
                  progress=False)
    cache = TeacherCache.open(tmp_path / "c")
    position = {i: n for n, i in enumerate(ids.tolist())}
    wanted = dataset.splits["test"].ids
    np.testing.assert_allclose(cache.logits(wanted), logits[[position[i] for i in wanted.tolist()]] / 2.0, rtol=1e-6)
    assert cache.temperature == 2.0 and cache.manifest["fingerprint"]["teacher"]["source_file"] == "x.npz"


def test_cli_registration_stays_light():
    """`distillab --help` registers every command: building the teacher parser must not import numpy/torch."""
    import subprocess
    import sys

    code = "import sys, distillab.teacher.command; print(sorted({'numpy', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
