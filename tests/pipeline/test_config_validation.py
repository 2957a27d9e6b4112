"""`distillab validate` catches every type and range error `run` would hit, and YAML is read safely.

Each bad value here used to pass `validate` and then crash `run` after every arm had trained, or
(alias bombs) hang it; all of them must now be listed at once, each with its key path.
"""

import time

import pytest
import yaml

from distillab.cli import main
from distillab.config import DEFAULT_CONFIG, KNOWN_BASELINES, config_from_dict, load_config
from distillab.errors import ConfigError, InputError


def default_values() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


# (dotted key, bad value, fragment the error must contain)
BAD_VALUES = [
    ("training.batch_size", 64.0, "training.batch_size: must be an integer, got 64.0"),
    ("training.epochs", float("inf"), "training.epochs: must be a finite number"),
    ("training.epochs", float("nan"), "training.epochs: must be a finite number"),
    ("training.seed", -1, "training.seed: must be an integer in [0, 2**32)"),
    ("training.seed", 2**32, "training.seed: must be an integer in [0, 2**32)"),
    ("training.bow_buckets", 10**12, "training.bow_buckets: at most"),
    ("training.student", ["bow"], "training.student: must be a string"),
    ("audit.reference_score", "0.209", "audit.reference_score: must be a finite number or null"),
    ("audit.reference_score", 3.0, "audit.reference_score: a macro-F1 must be in [0, 1]"),
    ("audit.thresholds", 0.5, "audit.thresholds: must be a list of finite numbers"),
    ("audit.baseline", ["vanilla"], "audit.baseline: must be a string, got ['vanilla']"),
    ("audit.bins", 10**12, "audit.bins: must be an integer in [1,"),
    ("audit.n_resamples", 10**12, "audit.n_resamples: must be an integer in [10,"),
    ("audit.seed", -3, "audit.seed: must be an integer in [0, 2**32)"),
    ("tiers.thresholds", 100, "tiers.thresholds: must be a list of integers or null"),
    ("grid.T", 4, "grid.T: must be a list of finite numbers"),
    ("grid.alpha", [0.7, float("inf")], "grid.alpha: must be a list of finite numbers"),
    ("teacher.temperature", float("inf"), "teacher.temperature: must be a finite number or null"),
    ("teacher.cache", ["builtin:r52-mpnet-teacher"], "teacher.cache: must be a string or null"),
    ("output_dir", None, "output_dir: must be a string, got None"),
    ("output_dir", 123, "output_dir: must be a string, got 123"),
    ("output_dir", " ", "output_dir: must name a folder"),
    ("name", ["x"], "name: must be a string"),
    ("eval_split", ["test"], "eval_split: must be a string"),
    ("data.lab", ["r52"], "data.lab: must be a string"),
    ("data.lab", "r53", "data.lab: unknown lab dataset 'r53'"),
    ("calibration.seed", 1.5, "calibration.seed: must be an integer"),
    ("report.title", ["t"], "report.title: must be a string or null"),
    ("report.colour", "blue", "report: unknown key(s) ['colour']"),
    ("calibration.colour", "blue", "calibration: unknown key(s) ['colour']"),
    ("grid.colour", "blue", "grid: unknown key(s) ['colour']"),
    ("baselines", ["bert"], "baselines: unknown baseline 'bert'; known: tfidf_linear"),
    ("baselines", "tfidf_linear", "baselines: must be a list of strings"),
    ("born_again", {"name": "ban"}, "born_again: must be a list of mappings"),
    ("born_again", [{"name": "ban", "arm": "kd", "generations": "3"}], "born_again[0].generations: must be an integer"),
    ("chains", [{"name": "ta"}], "chains[0]: missing compare_with, stages"),
    ("chains", [{"name": "ta", "compare_with": "kd", "stages": [{"name": "a", "arm": "kd", "training": {"bow_dim": 9.5}},
                                                              {"name": "s", "arm": "kd"}]}],
     "chains[0].stages[0].training.bow_dim: must be an integer, got 9.5"),
]


def with_value(values: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return values


@pytest.mark.parametrize("dotted, value, fragment", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_validate_names_each_type_and_range_error(dotted, value, fragment):
    with pytest.raises(ConfigError) as info:
        config_from_dict(with_value(default_values(), dotted, value), source="exp.yaml")
    assert fragment in str(info.value)


def test_all_errors_listed_at_once_by_validate(tmp_path, capsys):
    values = default_values()
    for dotted, value, _ in BAD_VALUES:
        if dotted not in ("output_dir", "baselines", "data.lab", "audit.reference_score", "training.epochs",
                          "training.seed"):  # keys listed twice above keep their last bad value
            with_value(values, dotted, value)
    with_value(values, "output_dir", None)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    for dotted in ("training.batch_size", "training.bow_buckets", "audit.thresholds", "grid.T", "tiers.thresholds",
                   "output_dir", "report: unknown", "calibration.seed", "teacher.temperature"):
        assert f"  {dotted}" in err, dotted
    assert "Traceback" not in err


def test_non_finite_scenario_constraint_is_a_config_error():
    """`.nan` used to reach the report as "no candidate meets ECE ≤ nan"."""
    scenario = {"id": "B", "constraints": [{"metric": "ece", "max": float("nan")}],
                "objective": {"metric": "nll", "goal": "min"}}
    with pytest.raises(ConfigError, match=r"report\.scenarios\[0\]\.constraints\[0\]\.max: nan is not a finite"):
        config_from_dict(with_value(default_values(), "report.scenarios", [scenario]))
    scenario["constraints"][0]["max"] = float("-inf")
    with pytest.raises(ConfigError, match="-inf is not a finite number"):
        config_from_dict(with_value(default_values(), "report.scenarios", [scenario]))


def test_baselines_are_exposed_on_the_config():
    assert load_config().baselines == ["tfidf_linear"]  # the demo audits the linear baseline beside the arms
    assert config_from_dict(with_value(default_values(), "baselines", [])).baselines == []
    config = config_from_dict(with_value(default_values(), "baselines", list(KNOWN_BASELINES)))
    assert config.baselines == ["tfidf_linear"]


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


def test_alias_bomb_config_is_refused_quickly(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text("data: {lab: r52}\n" + ALIAS_BOMB)
    started = time.monotonic()
    assert main(["validate", str(path)]) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "alias *a is not accepted" in err and "line 3" in err


@pytest.mark.parametrize("content, fragment", [
    (b"name: caf\xe9\n", "not valid UTF-8 (byte 0xe9"),
    (b'name: "\\ud800"\n', "name holds a lone surrogate"),
    (b"name: [unclosed\n", "not valid YAML at line 2"),
    (b"name: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
])
def test_unreadable_configs_give_one_line_naming_the_file(tmp_path, capsys, content, fragment):
    path = tmp_path / "exp.yaml"
    path.write_bytes(content)
    for command in (["validate", str(path)], ["run", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and fragment in err, err


def test_every_yaml_reader_refuses_aliases(tmp_path):
    """Dataset spec files and scenario files go through the same loader as configs."""
    from distillab.data.load import spec_from_argument
    from distillab.report.decision import load_scenarios

    spec = tmp_path / "spec.yaml"
    spec.write_text("lab: &x r52\ndata_dir: *x\n")
    with pytest.raises(InputError, match=f"{spec}: not valid YAML at line 2.*alias \\*x"):
        spec_from_argument(str(spec))
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError, match="alias \\*a is not accepted"):
        load_scenarios(scenarios)
