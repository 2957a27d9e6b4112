"""`distillab run` end to end on real data: R52, the shipped MPNet teacher cache, bow students.

Small settings (two arms, one epoch, 200 resamples) keep it to seconds; the stages and files are
the real ones. Also: a second run skips every finished stage, and a run killed mid-training
resumes without redoing finished arms.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from distillab.cli import main
from distillab.config import DEFAULT_CONFIG
from distillab.io import read_json

pytestmark = pytest.mark.skipif(not os.environ.get("DISTILLAB_DATA_DIR"), reason="needs DISTILLAB_DATA_DIR (../shared/data)")


def small_config(tmp_path: Path, arms=("vanilla", "kd:T=4,alpha=0.7,name=kd"), epochs=1, baselines=None) -> Path:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config.update(output_dir=str(tmp_path / "run"), arms=list(arms), grid={})
    if baselines is not None:
        config["baselines"] = list(baselines)
    config["training"]["epochs"] = epochs
    config["audit"]["n_resamples"] = 200
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_writes_every_stage_and_skips_them_the_second_time(tmp_path, capsys):
    config = small_config(tmp_path)
    assert main(["run", str(config)]) == 0
    out = tmp_path / "run"
    report = out / "report" / "report.html"
    assert report.exists() and f"report: {report}" in capsys.readouterr().out

    audit = read_json(out / "audit" / "audit.json")
    assert set(audit["arms"]) == {"teacher", "vanilla", "kd", "tfidf_linear"}  # the demo's reference baseline too
    assert audit["inputs"]["tfidf_linear"]["meta"]["role"] == "reference"
    assert audit["n"] == 2568 and audit["num_classes"] == 52
    assert audit["tier_source"] == "train_counts"
    # R52 tiers by thresholds [100, 20]: 8 head classes, 16 mid, 28 tail (shared/data SOURCE.md).
    assert [len(audit["tiers"][t]["classes"]) for t in ("head", "mid", "tail")] == [8, 16, 28]
    assert [audit["tiers"][t]["n"] for t in ("head", "mid", "tail")] == [2207, 233, 128]
    for arm in ("vanilla", "kd"):
        temperature = read_json(out / "arms" / arm / "model" / "temperature.json")["temperature"]
        assert temperature == audit["calibration"][arm]["temperature"]

    stamps = {p: p.stat().st_mtime_ns for p in [out / "audit" / "audit.json", report,
                                                 out / "arms" / "kd" / "train_log.json"]}
    assert main(["run", str(config)]) == 0
    err = capsys.readouterr().err
    assert "is up to date" in err
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "a finished stage was redone"


def test_run_killed_mid_training_resumes_without_redoing_finished_arms(tmp_path):
    config = small_config(tmp_path, arms=("vanilla", "kd:T=4,alpha=0.7,name=kd", "label_smoothing"), epochs=2,
                          baselines=[])
    out = tmp_path / "run"
    command = [sys.executable, "-m", "distillab", "run", str(config)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished_arm = out / "arms" / "vanilla" / "train_log.json"
    deadline = time.monotonic() + 240
    while not finished_arm.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert finished_arm.exists(), "the first arm never finished"
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (out / "report" / "report.html").exists()
    vanilla_done = finished_arm.stat().st_mtime_ns

    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert finished_arm.stat().st_mtime_ns == vanilla_done, "the finished arm was trained again"
    assert (out / "report" / "report.html").exists()
    assert set(read_json(out / "audit" / "audit.json")["arms"]) == {"teacher", "vanilla", "kd", "label_smoothing_e0.1"}
