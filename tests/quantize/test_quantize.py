"""``distillab quantize``: int8 students load, predict and round-trip; agreement, flips and the paired-bootstrap
ΔECE/ΔNLL equal slow obvious references; the backend (and a fallback) is recorded; bad inputs exit 2 with one
line and leave nothing behind. Tiny models only: a bow student trained in about a second and a 2-layer BERT.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from distillab.audit import metrics as M
from distillab.cli import main
from distillab.data import load_dataset
from distillab.io import load_predictions, read_json, write_json_atomic
from distillab.quantize import backends as B
from distillab.quantize.evaluate import agreement, flips_by_confidence
from distillab.quantize.model import WEIGHTS_FILE, load_quantized_student
from distillab.quantize.run import quantize_arm

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from train_helpers import banking_slice, bow_config, make_tiny_bert  # noqa: E402

N_RESAMPLES = 200
HAS_TORCHAO = B.torchao_available()[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, object]:
    """The banking77 slice as a CSV folder (so ``--data PATH`` works) and the dataset loaded from it."""
    root = tmp_path_factory.mktemp("data")
    sliced = banking_slice()
    for name, split in sliced.splits.items():
        with open(root / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((text, sliced.classes[y]) for text, y in zip(split.texts, split.labels))
    return root, load_dataset({"path": str(root)})


@pytest.fixture(scope="module")
def arms(data, tmp_path_factory) -> dict[str, Path]:
    """``{kind: arm folder}``: a bow student (seconds) and a tiny BERT trained for two steps."""
    from distillab.train import TrainConfig
    from distillab.train.trainer import train_arm

    _, dataset = data
    root = tmp_path_factory.mktemp("arms")
    train_arm(dataset, "vanilla", bow_config(seed=3), root / "bow")
    bert = make_tiny_bert(dataset, root / "bert-init", with_weights=True)
    train_arm(dataset, "vanilla", TrainConfig(student=str(bert), max_steps=2, batch_size=16, max_length=24,
                                              learning_rate=1e-3, eval_batch_size=32, seed=1), root / "hf")
    return {"bow": root / "bow" / "vanilla", "hf": root / "hf" / "vanilla"}


@pytest.fixture(scope="module")
def results(arms, data, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Each arm quantized with torch.ao into its own folder: ``{kind: (out folder, record)}``."""
    _, dataset = data
    out = {}
    for kind, arm in arms.items():
        folder = tmp_path_factory.mktemp("q") / kind
        out[kind] = folder, quantize_arm(arm, dataset, "test", out=folder, n_resamples=N_RESAMPLES,
                                         backend="torch.ao")
    return out


def float_logits(arm: Path) -> np.ndarray:
    return load_predictions(arm / "predictions" / "test.npz").logits.astype(np.float64)


def int8_logits(out: Path) -> np.ndarray:
    return load_predictions(out / "predictions" / "test.npz").logits.astype(np.float64)


# --------------------------------------------------------------------------- int8 students


@pytest.mark.parametrize("kind", ["bow", "hf"])
def test_int8_student_loads_predicts_and_round_trips(results, arms, data, kind):
    _, dataset = data
    out, record = results[kind]
    texts = dataset.splits["test"].texts
    student = load_quantized_student(out / "model", raw=True)
    logits = student.logits(texts)
    np.testing.assert_array_equal(logits, load_predictions(out / "predictions" / "test.npz").logits)
    # `distillab predict` / distillab.load_student serve the int8 folder like any student folder.
    from distillab.serve import load_student

    np.testing.assert_array_equal(load_student(out / "model", raw=True).logits(texts), logits)  # same batches
    assert list(student.predict(texts)) == [dataset.classes[i] for i in logits.argmax(axis=1)]
    assert record["round_trip"]["max_abs_diff"] == 0.0
    # The float logits are the arm's saved ones: the float model gives them again on the first rows.
    assert record["float32_predictions"]["source"] == "saved"
    assert record["float32_predictions"]["max_abs_diff"] < 1e-5
    # Close to the float student: int8 noise, not another model.
    reference = float_logits(arms[kind])
    assert np.abs(logits - reference).max() < 0.1 * np.abs(reference).max() + 1e-3
    assert record["agreement"]["top1"] >= 0.9
    # Every Linear layer is int8 in the saved file.
    from safetensors.torch import load_file

    tensors = load_file(str(out / "model" / WEIGHTS_FILE))
    assert record["quantized"]["linear"]
    for name in record["quantized"]["linear"]:
        assert tensors[f"{name}.weight.qdata"].dtype == torch.int8
    meta = read_json(out / "predictions" / "test.json")
    assert meta["role"] == "quantized"
    assert meta["recipe"] == {"loss": "vanilla", "quantized": "int8", "backend": "torch.ao"}
    assert meta["measurements"]["serving"]["batch_size"] == 32
    assert set(record["measurements"]["serving"]) == {"float32", "int8"}


def test_bow_table_is_quantized_row_wise_and_stored_sparse(results, arms):
    out, record = results["bow"]
    assert record["quantized"] == {"linear": ["classifier"], "embedding_bag": ["embedding"]}
    assert record["kept_float32"] == []
    from safetensors.torch import load_file

    tensors = load_file(str(out / "model" / WEIGHTS_FILE))
    rows = tensors["embedding.changed_rows"]
    assert tensors["embedding.weight.qdata"].dtype == torch.uint8
    assert tensors["embedding.weight.qdata"].shape == (rows.numel(), 16)
    assert 0 < rows.numel() < 2**12  # only the rows training changed
    assert record["size"]["int8"]["weights_bytes"] < 0.5 * record["size"]["float32"]["weights_bytes"]
    assert record["size"]["memory_bytes"]["int8"] < 0.4 * record["size"]["memory_bytes"]["float32"]


def test_trained_rows_are_found_without_the_float_file(arms):
    """The rows the bow save keeps: those its float save lists, or (no file) those differing from the initial table."""
    from distillab.quantize.model import _trained_rows
    from distillab.serve import load_student

    fp32 = load_student(arms["bow"] / "model", raw=True)
    listed = _trained_rows(fp32.student, None)
    fp32.student.weights = None
    compared = _trained_rows(fp32.student, fp32.model.embedding.weight.detach())
    assert torch.equal(listed, compared) and listed.numel() > 0


def test_mean_bag_is_the_mean_of_dequantized_rows(results):
    """torch.ao's quantized EmbeddingBag sums whatever the mode; the bow student's bag must average."""
    out, _ = results["bow"]
    model = load_quantized_student(out / "model").model
    bag = model.embedding
    assert isinstance(bag, B.MeanEmbeddingBag)
    table = bag.weight().dequantize()
    ids = torch.tensor([1, 5, 9, 5, 7, 3, 2])
    offsets = torch.tensor([0, 3, 3, 6])  # bag 1 is empty
    expected = np.stack([table[ids[s:e]].mean(0).numpy() if e > s else np.zeros(table.shape[1], np.float32)
                         for s, e in zip([0, 3, 3, 6], [3, 3, 6, 7])])
    np.testing.assert_allclose(bag(ids, offsets).numpy(), expected, rtol=1e-6, atol=1e-7)


def test_hf_keeps_embeddings_and_norms_in_float(results):
    _, record = results["hf"]
    assert record["quantized"]["embedding_bag"] == []
    assert "classifier" in record["quantized"]["linear"]
    assert any("embeddings" in name for name in record["kept_float32"])
    assert any("LayerNorm" in name for name in record["kept_float32"])


# --------------------------------------------------------------------------- agreement and flips


def test_agreement_and_flips_match_a_numpy_loop(results, arms):
    out, record = results["bow"]
    a, b = float_logits(arms["bow"]), int8_logits(out)
    _check_against_loop(a, b, record["agreement"], record["flips_by_confidence"])
    # And on logits with many flips at every confidence, where an off-by-one bin would show.
    rng = np.random.default_rng(0)
    a = rng.normal(0, 3, (500, 7))
    b = a + rng.normal(0, 1.0, a.shape)
    b[:3] = a[:3]  # exact ties with the float model: not flips
    _check_against_loop(a, b, agreement(a, b), flips_by_confidence(a, b))


def _check_against_loop(a, b, agree, flips):
    n, bins = a.shape[0], 15
    counts, flipped = [0] * bins, [0] * bins
    same = 0
    for i in range(n):
        z = np.exp(a[i] - a[i].max())
        conf = z.max() / z.sum()
        k = 0
        while not (k / bins < conf <= (k + 1) / bins) and k < bins - 1:
            k += 1
        counts[k] += 1
        if int(np.argmax(a[i])) == int(np.argmax(b[i])):
            same += 1
        else:
            flipped[k] += 1
    assert agree["top1"] == pytest.approx(same / n, abs=1e-15)
    assert agree["flips"] == n - same
    assert [r["n"] for r in flips["rows"]] == counts
    assert [r["flips"] for r in flips["rows"]] == flipped
    assert [r["flip_rate"] for r in flips["rows"]] == [f / c if c else None for f, c in zip(flipped, counts)]


# --------------------------------------------------------------------------- paired bootstrap


def _loop_ci(candidate: np.ndarray, reference: np.ndarray, labels: np.ndarray, metric, n_resamples: int, seed: int):
    """The course's loop: one RandomState(seed); each resample ``rng.choice(rows, size=n, replace=True)``."""
    rng = np.random.RandomState(seed)
    rows = np.arange(labels.shape[0])
    deltas = []
    for _ in range(n_resamples):
        idx = rng.choice(rows, size=rows.size, replace=True)
        deltas.append(metric(candidate[idx], labels[idx]) - metric(reference[idx], labels[idx]))
    deltas = np.array(deltas)
    return np.median(deltas), np.quantile(deltas, 0.025), np.quantile(deltas, 0.975)


@pytest.mark.parametrize("kind", ["bow", "hf"])
def test_delta_ece_nll_cis_match_a_direct_loop(results, arms, kind):
    out, record = results[kind]
    labels = load_predictions(out / "predictions" / "test.npz").labels
    p32, p8 = M.softmax(float_logits(arms[kind])), M.softmax(int8_logits(out))
    for name, metric in (("ece", M.ece), ("nll", M.nll), ("accuracy", lambda p, y: M.accuracy(y, p.argmax(1)))):
        median, low, high = _loop_ci(p8, p32, labels, metric, N_RESAMPLES, 42)
        got = record["delta"][name]
        assert got["median"] == pytest.approx(median, abs=1e-12)
        assert got["ci_low"] == pytest.approx(low, abs=1e-12)
        assert got["ci_high"] == pytest.approx(high, abs=1e-12)
        assert got["value"] == pytest.approx(metric(p8, labels) - metric(p32, labels), abs=1e-12)
    assert (record["bootstrap"]["n_resamples"], record["bootstrap"]["seed"]) == (N_RESAMPLES, 42)


def test_calibration_deltas_on_the_eval_half_match_a_direct_loop(arms, data, tmp_path):
    """An arm with temperature.json: T fitted on the audit's cal half for both models, judged on the eval half."""
    import shutil

    from distillab.calibrate.temperature import TemperatureScaler, cal_eval_split

    _, dataset = data
    arm = tmp_path / "arm"
    shutil.copytree(arms["bow"], arm)
    write_json_atomic(arm / "model" / "temperature.json", {"temperature": 1.3, "fit_split": "cal"})
    record = quantize_arm(arm, dataset, "test", n_resamples=N_RESAMPLES, seed=7, backend="torch.ao")
    cal = record["calibration"]
    labels = dataset.splits["test"].labels
    cal_rows, eval_rows = cal_eval_split(labels.size)
    a, b = float_logits(arm), int8_logits(arm / "quantized")
    t32 = TemperatureScaler().fit(a[cal_rows], labels[cal_rows]).temperature_
    t8 = TemperatureScaler().fit(b[cal_rows], labels[cal_rows]).temperature_
    assert (cal["n_cal"], cal["n_eval"]) == (cal_rows.size, eval_rows.size)
    assert cal["temperature_float32"] == pytest.approx(t32, rel=1e-12)
    assert cal["temperature_int8"] == pytest.approx(t8, rel=1e-12)
    assert cal["temperature_float32_saved"] == 1.3
    y = labels[eval_rows]
    reference = M.softmax(a[eval_rows] / t32)
    for name, probs in (("int8+T_float32", M.softmax(b[eval_rows] / t32)), ("int8+T_int8", M.softmax(b[eval_rows] / t8))):
        median, low, high = _loop_ci(probs, reference, y, M.ece, N_RESAMPLES, 7)
        got = cal["delta_vs_float32_calibrated"][name]["ece"]
        assert (got["median"], got["ci_low"], got["ci_high"]) == pytest.approx((median, low, high), abs=1e-12)
    assert "calibration" in cal["verdict"]
    # The int8 temperature is kept beside the int8 weights and served with them.
    assert read_json(arm / "quantized" / "model" / "temperature.json")["temperature"] == pytest.approx(t8)
    assert load_quantized_student(arm / "quantized" / "model").temperature == pytest.approx(t8)


def test_float_logits_are_predicted_again_when_the_saved_ones_are_not_the_model_s(arms, data, tmp_path):
    import shutil

    from distillab.io import save_predictions
    from distillab.serve import load_student

    _, dataset = data
    arm = tmp_path / "arm"
    shutil.copytree(arms["bow"], arm)
    saved = load_predictions(arm / "predictions" / "test.npz")
    save_predictions(arm / "predictions" / "test.npz", saved.logits * 2.0, saved.labels, ids=saved.ids, meta=saved.meta)
    record = quantize_arm(arm, dataset, "test", n_resamples=20, backend="torch.ao")
    assert record["float32_predictions"]["source"] == "recomputed"
    assert "differ from the float model" in record["float32_predictions"]["note"]
    recomputed = load_student(arm / "model", raw=True).logits(dataset.splits["test"].texts)
    np.testing.assert_allclose(recomputed, saved.logits, rtol=0, atol=1e-5)
    assert record["agreement"] == agreement(recomputed, int8_logits(arm / "quantized"))
    (arm / "predictions" / "test.npz").unlink()
    record = quantize_arm(arm, dataset, "test", n_resamples=20, backend="torch.ao")
    assert record["float32_predictions"]["source"] == "recomputed"
    assert "does not exist" in record["float32_predictions"]["note"]


def test_round_trip_compares_whole_batches(arms, data, tmp_path, monkeypatch):
    """With a batch size that does not divide the checked rows, the check still compares like with like."""
    import distillab.quantize.run as R

    _, dataset = data
    monkeypatch.setattr(R, "CHECK_ROWS", 30)
    record = quantize_arm(arms["bow"], dataset, "test", out=tmp_path / "q", n_resamples=20, backend="torch.ao",
                          batch_size=16)
    assert record["round_trip"] == {"rows": 32, "max_abs_diff": 0.0}
    assert record["batch_size"] == 16


def test_uncalibrated_arm_fits_both_temperatures_on_all_rows(results):
    out, record = results["bow"]
    cal = record["calibration"]
    assert cal["n_cal"] == cal["n_eval"] == record["n"]
    assert cal["temperature_float32_saved"] is None
    assert not (out / "model" / "temperature.json").exists()


# --------------------------------------------------------------------------- backends


def test_fallback_to_torch_ao_is_recorded(arms, data, tmp_path, monkeypatch):
    _, dataset = data
    monkeypatch.setattr(B, "torchao_available", lambda: (False, "torchao is not installed"))
    record = quantize_arm(arms["bow"], dataset, "test", out=tmp_path / "q", n_resamples=20)
    assert record["backend"]["requested"] == "auto"
    assert record["backend"]["used"] == "torch.ao"
    assert any("fell back to torch.ao" in w for w in record["backend"]["warnings"])
    assert read_json(tmp_path / "q" / "model" / "quantization_config.json")["backend"] == "torch.ao"
    assert read_json(tmp_path / "q" / "predictions" / "test.json")["recipe"]["backend"] == "torch.ao"


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
@pytest.mark.parametrize("kind", ["bow", "hf"])
def test_torchao_backend_round_trips(arms, data, tmp_path, kind):
    _, dataset = data
    record = quantize_arm(arms[kind], dataset, "test", out=tmp_path / "q", n_resamples=20)
    assert record["backend"]["used"] == "torchao" and not record["backend"]["warnings"]
    assert record["round_trip"]["max_abs_diff"] == 0.0
    logits = load_quantized_student(tmp_path / "q" / "model").logits(dataset.splits["test"].texts)
    np.testing.assert_array_equal(logits, load_predictions(tmp_path / "q" / "predictions" / "test.npz").logits)
    if kind == "bow":  # torchao has no eager int8 EmbeddingBag: said so, table kept in float32
        assert record["quantized"]["embedding_bag"] == [] and record["kept_float32"] == ["embedding"]
        assert any("EmbeddingBag" in note for note in record["notes"])


# --------------------------------------------------------------------------- command line


def test_cli_writes_and_replaces_the_folder(arms, data, tmp_path, capsys):
    import shutil

    root, _ = data
    arm = tmp_path / "arm"
    shutil.copytree(arms["bow"], arm)
    argv = ["quantize", str(arm), "--data", str(root), "--split", "test", "--n-resamples", "20", "--backend", "torch.ao"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("vanilla int8 (torch.ao): weights") and "agreement" in line and "dECE" in line
    (arm / "quantized" / "stale.txt").write_text("x")
    assert main(argv) == 0
    assert sorted(p.name for p in (arm / "quantized").iterdir()) == ["model", "predictions", "quantization.json"]
    assert sorted(p.name for p in arm.iterdir()) == ["model", "predictions", "quantized", "resolved_config.json",
                                                     "train_log.json"]


def _fails(argv, capsys, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


def test_bad_inputs_exit_2_with_one_line_and_leave_nothing(arms, data, tmp_path, capsys, monkeypatch):
    import shutil

    root, _ = data
    arm = tmp_path / "arm"
    shutil.copytree(arms["bow"], arm)
    base = ["--data", str(root), "--n-resamples", "20"]
    # an arm folder without a model
    (tmp_path / "empty").mkdir()
    _fails(["quantize", str(tmp_path / "empty"), *base], capsys, "empty", "model/")
    _fails(["quantize", str(arm / "model"), *base], capsys, "give its parent")
    # a split that does not exist
    _fails(["quantize", str(arm), *base, "--split", "validation"], capsys, "--split 'validation'", "test")
    # a backend that is not installed
    monkeypatch.setattr(B, "torchao_available", lambda: (False, "torchao is not installed"))
    _fails(["quantize", str(arm), *base, "--backend", "torchao"], capsys, "--backend torchao", "not installed")
    # a folder of someone else's as --out
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    _fails(["quantize", str(arm), *base, "--out", str(tmp_path / "mine")], capsys, "mine", "did not write")
    _fails(["quantize", str(arm), *base, "--out", str(arm / "model")], capsys, "student folder")
    # nothing partial anywhere
    assert sorted(p.name for p in arm.iterdir()) == ["model", "predictions", "resolved_config.json", "train_log.json"]
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.rglob(".*") if p.name.endswith((".tmp", ".old"))]


def test_a_failure_midway_leaves_nothing(arms, data, tmp_path, monkeypatch):
    """An error after the temporary folder exists (here: in the evaluation) removes it and every folder made."""
    import distillab.quantize.evaluate as E

    _, dataset = data

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(E, "calibration", broken)
    out = tmp_path / "new" / "deeper" / "q"
    with pytest.raises(RuntimeError, match="boom"):
        quantize_arm(arms["bow"], dataset, "test", out=out, n_resamples=20, backend="torch.ao")
    assert list(tmp_path.iterdir()) == []
