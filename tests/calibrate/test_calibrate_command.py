import json

import numpy as np
import pytest

from distillab.calibrate import TemperatureScaler, cal_eval_split
from distillab.cli import main
from distillab.io import load_predictions, save_predictions


@pytest.fixture
def pred_file(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 400)
    logits = rng.normal(0, 1, (400, 6))
    logits[np.arange(400), labels] += 1.5
    path = tmp_path / "p.npz"
    save_predictions(path, 3 * logits, labels, ids=np.array([f"r{i}" for i in range(400)]), meta={"model": "m"})
    return path


def test_calibrate_records_temperature(pred_file, tmp_path, capsys):
    assert main(["calibrate", str(pred_file), "--out", str(tmp_path / "t.json")]) == 0
    record = json.loads((tmp_path / "t.json").read_text())
    pred = load_predictions(pred_file)
    cal, _ = cal_eval_split(400)
    expected = TemperatureScaler().fit(pred.logits[cal], pred.labels[cal]).temperature_
    assert record["temperature"] == pytest.approx(expected, rel=1e-12) and record["temperature"] > 1
    assert record["eval"]["scaled"]["ece"] < record["eval"]["raw"]["ece"]
    sidecar = json.loads(pred_file.with_suffix(".json").read_text())
    assert sidecar["model"] == "m" and sidecar["temperature"] == record["temperature"]
    assert "T = " in capsys.readouterr().out


def test_calibrate_explicit_split_and_no_sidecar(pred_file, tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"cal": [f"r{i}" for i in range(200)], "eval": [f"r{i}" for i in range(200, 400)]}))
    assert main(["calibrate", str(pred_file), "--cal-split", str(split), "--no-sidecar", "--out", str(tmp_path / "t.json")]) == 0
    assert json.loads(pred_file.with_suffix(".json").read_text()) == {"model": "m"}
    assert json.loads((tmp_path / "t.json").read_text())["n_cal"] == 200


def test_calibrate_too_small_cal_split(pred_file, tmp_path, capsys):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"cal": [0, 1, 2], "eval": [3, 4]}))
    assert main(["calibrate", str(pred_file), "--cal-split", str(split)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p.npz" in err[0] and "at least 10" in err[0]


def test_calibrate_negative_split_seed_is_one_line(pred_file, capsys):
    assert main(["calibrate", str(pred_file), "--split-seed", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--split-seed" in err[0]
