"""`baselines:` in a config: the reference model is fitted on the run's split, audited like every arm,
recorded as a reference (never a KD arm), and a changed baseline list re-runs the audit."""

import json

from distillab.cli import main

from tiny_experiment import tiny_config, write_config


def _audit(tmp_path):
    return json.loads((tmp_path / "run" / "audit" / "audit.json").read_text(encoding="utf-8"))


def test_reference_baseline_is_audited_beside_the_arms(tmp_path, capsys):
    config = write_config(tmp_path, tiny_config(tmp_path, baselines=["tfidf_linear"]))
    assert main(["run", str(config)]) == 0
    audit = _audit(tmp_path)
    assert set(audit["arms"]) >= {"vanilla", "kd", "tfidf_linear"}
    meta = audit["inputs"]["tfidf_linear"]["meta"]
    assert meta["role"] == "reference" and meta["recipe"]["loss"] == "reference_baseline"
    assert audit["settings"]["baseline"] == "vanilla"  # the paired comparison's baseline stays the config's arm
    assert (tmp_path / "run" / "baselines" / "tfidf_linear" / "predictions" / "test.npz").exists()


def test_run_without_verifying_the_cache_warns(tmp_path, capsys):
    config = write_config(tmp_path, tiny_config(tmp_path))
    assert main(["run", str(config), "--no-verify-cache"]) == 0
    assert "NOT verified" in capsys.readouterr().err
