"""The experiment config: shipped configs validate, and a bad one lists every problem at once."""

import pytest
import yaml

from distillab.cli import main
from distillab.config import CONFIG_DIR, config_from_dict, load_config
from distillab.errors import ConfigError


@pytest.mark.parametrize("name", ["default.yaml", "r52-minilm.yaml"])
def test_shipped_configs_validate(name, capsys):
    assert main(["validate", str(CONFIG_DIR / name)]) == 0
    assert "valid" in capsys.readouterr().out


def test_default_config_arms_and_grid_without_duplicates():
    config = load_config()
    names = [arm.name for arm in config.parsed_arms()]
    # kd at (4, 0.7) is an explicit arm, so the 3x2 grid adds only five more.
    assert names[:4] == ["vanilla", "kd", "hard_kd_a0.7", "label_smoothing_e0.1"]
    assert sorted(names[4:]) == ["kd_T1_a0.7", "kd_T1_a0.9", "kd_T4_a0.9", "kd_T8_a0.7", "kd_T8_a0.9"]
    assert len(set(names)) == len(names)


def test_every_problem_is_reported_together(tmp_path, capsys):
    bad = {
        "data": {"lab": "r52", "bogus": 1},
        "tiers": {"cutoffs": [60, 20]},
        "teacher": {},
        "training": {"epochs": 0},
        "arms": ["vanilla", "kd:T=-1", "foo"],
        "grid": {"T": [1], "alpha": [1.5]},
        "audit": {"baseline": "nope", "sla": 2},
        "colour": "blue",
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    for fragment in ("unknown section(s) ['colour']", "data: unknown key(s) ['bogus']", "tiers.cutoffs",
                     "teacher: give exactly one", "grid.alpha: 1.5", "audit.sla", "epochs=0",
                     "T=-1.0 must be > 0", "unknown arm 'foo'", "audit.baseline: 'nope'"):
        assert fragment in err, fragment
    assert err.count("\n") >= 10  # one line per problem, not just the first


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_eval_split_cannot_be_the_training_split():
    with pytest.raises(ConfigError, match="also the training split"):
        config_from_dict({"data": {"lab": "r52"}, "eval_split": "train", "teacher": {"cache": "x"}})


def test_seeds_and_distilled_are_checked_before_anything_runs():
    """Bad seeds or distilled == baseline used to surface only in the audit, after every arm had trained."""
    with pytest.raises(ConfigError) as info:
        config_from_dict({"data": {"lab": "r52"}, "teacher": {"cache": "x"}, "calibration": {"seed": -1},
                          "audit": {"seed": "42", "distilled": "vanilla"}})
    message = str(info.value)
    for fragment in ("calibration.seed: must be an integer", "audit.seed: must be an integer",
                     "audit.distilled: 'vanilla' is the baseline"):
        assert fragment in message, fragment
