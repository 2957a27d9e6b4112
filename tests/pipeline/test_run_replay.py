"""`distillab run`'s audit replays standalone: the train counts it used are written beside audit.json.

Without them, the demo's `--tier-thresholds 100,20` would be applied to test-set counts (a third of
the training counts), moving classes into lower tiers; the audit warns when that happens.
"""

import json
import os

import pytest
import yaml

from distillab.cli import main
from distillab.config import DEFAULT_CONFIG, resolve_builtin
from distillab.io import read_json

pytestmark = pytest.mark.skipif(not os.environ.get("DISTILLAB_DATA_DIR"), reason="needs DISTILLAB_DATA_DIR (../shared/data)")

# The part of audit.json that must match: everything computed (paths and versions may differ).
COMPUTED = ("n", "num_classes", "classes", "tier_source", "tiers", "tier_support", "arms", "bootstrap",
            "candidate_bootstrap", "calibration", "transfer_tests", "per_class_delta_f1", "grid", "noise_floor")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config.update(output_dir=str(tmp / "run"), arms=["vanilla", "kd:T=4,alpha=0.7,name=kd"], grid={}, baselines=[])
    config["training"]["epochs"] = 1
    config["audit"]["n_resamples"] = 200
    (tmp / "small.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp / "small.yaml")]) == 0
    return tmp, config


def replay_args(run, out, *extra):
    return ["audit", "--teacher", str(out.parent / "teacher.npz"),
            "--arm", f"vanilla={run / 'arms' / 'vanilla' / 'predictions' / 'test.npz'}",
            "--arm", f"kd={run / 'arms' / 'kd' / 'predictions' / 'test.npz'}",
            "--baseline", "vanilla", "--distilled", "kd", "--tier-thresholds", "100,20", "--n-resamples", "200",
            "--out", str(out), "--quiet", *extra]


def test_run_writes_its_train_counts_and_the_audit_replays_from_them(demo_run, capsys):
    tmp, config = demo_run
    run = tmp / "run"
    counts_path = run / "audit" / "train_counts.json"
    counts = read_json(counts_path)
    ran = read_json(run / "audit" / "audit.json")
    assert list(counts) == ran["classes"] and sum(counts.values()) == 6532  # R52 train, by class name
    assert ran["settings"]["train_counts"] == str(counts_path)

    teacher = tmp / "replay" / "teacher.npz"
    assert main(["cache", "export", str(resolve_builtin(config["teacher"]["cache"])), "--split", "test",
                 "--out", str(teacher)]) == 0
    assert main(replay_args(run, tmp / "replay" / "audit", "--train-counts", str(counts_path))) == 0
    replayed = read_json(tmp / "replay" / "audit" / "audit.json")
    for key in COMPUTED:
        assert json.dumps(replayed[key]) == json.dumps(ran[key]), key
    assert "--tier-thresholds" not in capsys.readouterr().err


def test_replay_without_train_counts_warns_that_thresholds_met_test_counts(demo_run, capsys):
    tmp, _ = demo_run
    run = tmp / "run"
    (tmp / "bare").mkdir()
    assert main(["cache", "export", str(resolve_builtin("builtin:r52-mpnet-teacher")), "--split", "test",
                 "--out", str(tmp / "bare" / "teacher.npz")]) == 0
    capsys.readouterr()
    assert main(replay_args(run, tmp / "bare" / "audit")) == 0
    assert "were applied to the evaluation rows' class counts" in capsys.readouterr().err
    bare = read_json(tmp / "bare" / "audit" / "audit.json")
    ran = read_json(run / "audit" / "audit.json")
    assert bare["tier_source"] == "eval_labels" and any("pass --train-counts" in w for w in bare["warnings"])
    # Test-set counts put fewer classes in the head than the training counts do: the tiers really differ.
    assert len(bare["tiers"]["head"]["classes"]) < len(ran["tiers"]["head"]["classes"])
