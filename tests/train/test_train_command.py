"""`distillab train` / `distillab grid` end to end through distillab.cli.main, and their bad-input exits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillab.cli import main
from distillab.data import load_lab_dataset
from distillab.io import load_predictions

from train_helpers import DATA_DIR, banking, banking_cache, write_cache  # noqa: F401 (fixtures)

SMALL = ["--max-steps", "3", "--bow-buckets", "4096", "--bow-dim", "8", "--batch-size", "16", "--data-dir", DATA_DIR]


@pytest.fixture(scope="module")
def banking_full_cache(tmp_path_factory):
    return write_cache(load_lab_dataset("banking77", data_dir=DATA_DIR), tmp_path_factory.mktemp("full") / "cache")


def test_grid_command_trains_every_pair_and_the_baseline(banking_full_cache, tmp_path):
    code = main(["grid", "--data", "banking77", "--cache", str(banking_full_cache.path), "--T", "1,4",
                 "--alpha", "0.5", "--out", str(tmp_path), *SMALL])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kd_T1_a0.5", "kd_T4_a0.5", "vanilla"]
    meta = load_predictions(tmp_path / "kd_T4_a0.5" / "predictions" / "test.npz").meta
    assert meta["recipe"] == {"loss": "kd", "T": 4.0, "alpha": 0.5}
    resolved = json.loads((tmp_path / "vanilla" / "resolved_config.json").read_text())
    assert resolved["max_steps"] == 3 and resolved["bow_dim"] == 8 and resolved["eval_splits"] == ["test"]


def test_train_command_arm_names_and_eval_splits(tmp_path):
    code = main(["train", "--data", "banking77", "--arm", "vanilla", "--arm", "label_smoothing:epsilon=0.2,name=ls",
                 "--eval-split", "test", "--eval-split", "train", "--out", str(tmp_path), *SMALL])
    assert code == 0
    for split, n in (("test", 3080), ("train", 10003)):
        assert load_predictions(tmp_path / "ls" / "predictions" / f"{split}.npz").n == n


@pytest.mark.parametrize("argv, message", [
    (["--arm", "kd:T=-2"], "T=-2.0 must be > 0"),
    (["--arm", "kd:alpha=2"], "alpha=2.0 must be in [0, 1]"),
    (["--arm", "mystery"], "unknown arm 'mystery'"),
    (["--arm", "kd"], "needs a teacher cache"),
    (["--epochs", "0"], "epochs=0.0: must be > 0"),
])
def test_bad_input_exits_2_with_one_clear_line(tmp_path, capsys, argv, message):
    code = main(["train", "--data", "banking77", "--data-dir", DATA_DIR, "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_kd_with_alpha_zero_is_vanilla(banking, banking_cache, tmp_path):
    """Only the loss differs between arms: KD with alpha=0 is plain CE, so the runs coincide."""
    from train_helpers import bow_config
    from distillab.train.trainer import train_arms

    train_arms(banking, ["vanilla", "kd:alpha=0,name=kd0"], bow_config(), tmp_path, cache=banking_cache)
    a = load_predictions(tmp_path / "vanilla" / "predictions" / "test.npz").logits
    b = load_predictions(tmp_path / "kd0" / "predictions" / "test.npz").logits
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_flags_left_out_keep_the_defaults_and_none_means_none():
    import argparse

    from distillab.train import command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    base = ["train", "--data", "x", "--out", "o"]
    assert command._config_from_args(parser.parse_args(base)).max_grad_norm == 1.0
    config = command._config_from_args(parser.parse_args([*base, "--max-grad-norm", "none", "--epochs", "2"]))
    assert config.max_grad_norm is None and config.epochs == 2.0  # 'none' switches clipping off
