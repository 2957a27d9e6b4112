import json
import subprocess
import sys
from pathlib import Path

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


def snapshot(folder):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def one_error_line(capsys, *names):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("target, extra, says", [
    ("p.npz", [], "the predictions file"),
    ("sub/../p.npz", [], "the predictions file"),  # resolves to the input
    ("link.npz", [], "the predictions file"),  # a symlink to the input
    ("p.json", [], "its sidecar"),  # the sidecar would be written twice: the record lost
    ("split.json", ["--cal-split", "split.json"], "--cal-split"),
])
def test_out_that_is_an_input_is_refused(pred_file, tmp_path, capsys, monkeypatch, target, extra, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.npz").symlink_to(pred_file)
    (tmp_path / "split.json").write_text(json.dumps({"cal": list(range(200)), "eval": list(range(200, 400))}))
    before = snapshot(tmp_path)
    assert main(["calibrate", str(pred_file), "--out", target, *extra]) == 2
    assert says in one_error_line(capsys, target)
    assert snapshot(tmp_path) == before
    assert load_predictions(pred_file).n == 400


@pytest.mark.parametrize("out, names", [
    (lambda d: d, lambda d: [d, "is a folder"]),
    (lambda d: d / "f" / "c.json", lambda d: [d / "f", "is a file"]),
    (lambda d: Path("/proc/distillab-test/c.json"), lambda d: ["/proc/distillab-test/c.json"]),  # unwritable, even as root
])
def test_unusable_out_is_one_line_and_writes_nothing(pred_file, tmp_path, capsys, out, names):
    (tmp_path / "f").write_text("x")
    before = snapshot(tmp_path)
    assert main(["calibrate", str(pred_file), "--out", str(out(tmp_path))]) == 2
    one_error_line(capsys, *names(tmp_path))
    assert snapshot(tmp_path) == before


def test_both_outputs_or_neither_when_the_disk_fills(pred_file, tmp_path):
    """A file-size limit hit while writing the sidecar must not leave --out written (and vice versa)."""
    meta = {"model": "m", "notes": "x" * 50_000}  # the sidecar is far larger than the record
    pred_file.with_suffix(".json").write_text(json.dumps(meta))
    before = snapshot(tmp_path)
    limit = "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY)); "
    code = limit + f"from distillab.cli import main; sys.exit(main(['calibrate', {str(pred_file)!r}, '--out', {str(tmp_path / 'c.json')!r}]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert str(pred_file.with_suffix(".json")) in done.stderr
    assert snapshot(tmp_path) == before  # no c.json, no temp files, sidecar unchanged


def test_predictions_with_nan_preds_or_named_json(pred_file, tmp_path, capsys):
    p = load_predictions(pred_file)
    preds = p.logits.argmax(1).astype(np.float64)
    preds[3] = np.nan
    np.savez(tmp_path / "nan.npz", logits=p.logits, labels=p.labels, preds=preds)
    assert main(["calibrate", str(tmp_path / "nan.npz")]) == 2
    assert "'preds' row 3 is nan" in one_error_line(capsys, tmp_path / "nan.npz")
    np.savez(tmp_path / "q.npz", logits=p.logits, labels=p.labels)
    (tmp_path / "q.npz").rename(tmp_path / "q.json")
    assert main(["calibrate", str(tmp_path / "q.json")]) == 2
    assert "*.json" in one_error_line(capsys, tmp_path / "q.json")


def test_reference_optimizer_and_bound_are_recorded(tmp_path, capsys):
    labels = np.arange(400) % 4
    logits = np.zeros((400, 4))
    logits[np.arange(400), labels] = 0.01  # separable: the exact fit runs into T = 1e-3
    save_predictions(tmp_path / "s.npz", logits, labels)
    assert main(["calibrate", str(tmp_path / "s.npz"), "--out", str(tmp_path / "c.json")]) == 0
    record = json.loads((tmp_path / "c.json").read_text())
    assert (record["optimizer"], record["temperature_at_bound"]) == ("exact", "lower")
    assert json.loads((tmp_path / "s.json").read_text())["calibration"]["temperature_at_bound"] == "lower"
    err = capsys.readouterr().err
    assert "warning" in err and "lower bound" in err and "s.npz" in err
    assert main(["calibrate", str(tmp_path / "s.npz"), "--out", str(tmp_path / "r.json"), "--optimizer", "reference"]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert (record["optimizer"], record["temperature_at_bound"]) == ("reference", None)
