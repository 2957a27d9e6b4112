"""`distillab run` with feature objectives: the teacher model's pooled features cached by the run, arms mixing
kd with hidden-state and relation objectives trained, audited and reported; a missing feature is one error
before any training."""

from __future__ import annotations

import sys
from pathlib import Path

from distillab.cli import main
from distillab.data import load_dataset
from distillab.io import read_json
from distillab.teacher.cache import TeacherCache

from tiny_experiment import tiny_config, write_config

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from train_helpers import make_tiny_bert  # noqa: E402


def feature_config(tmp_path: Path, features, arms) -> Path:
    values = tiny_config(tmp_path)
    teacher = make_tiny_bert(load_dataset(values["data"]), tmp_path / "teacher", with_weights=True)
    values["teacher"] = {"model": str(teacher), "max_length": 16, **({"features": features} if features else {})}
    values["arms"] = arms
    return write_config(tmp_path, values)


def test_feature_arms_run_end_to_end_from_a_run_made_cache(tmp_path, capsys):
    arms = ["vanilla", "kd:T=2,alpha=0.5,name=kd", "kd:T=2,alpha=0.5+hidden_mse:name=fitnet",
            {"name": "relations", "objectives": [{"kd": {"T": 2, "alpha": 0.5}}, {"rkd": {"weight": 0.5}}]}]
    assert main(["run", str(feature_config(tmp_path, ["pooled.2"], arms))]) == 0
    out = tmp_path / "run"
    assert TeacherCache.open(out / "teacher-cache").feature_names == ("pooled.2",)
    audit = read_json(out / "audit" / "audit.json")
    assert {"vanilla", "kd", "fitnet", "relations"} <= set(audit["arms"])
    assert audit["inputs"]["fitnet"]["meta"]["recipe"]["loss"] == "kd+hidden_mse"
    assert (out / "arms" / "fitnet" / "objective_extras.safetensors").exists()
    html = (out / "report" / "report.html").read_text()
    assert "hidden_mse" in html and "relation" in html


def test_a_feature_the_cache_lacks_stops_the_run_before_training(tmp_path, capsys):
    config = feature_config(tmp_path, None, ["vanilla", "kd+hidden_mse:name=fitnet"])
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "arm 'fitnet': hidden_mse: layers='last:1': the teacher cache has no pooled features" in err
    assert not (tmp_path / "run" / "arms" / "vanilla" / "train_log.json").exists()


def test_validate_catches_objective_mistakes_without_training(tmp_path, capsys):
    arms = ["vanilla", "kd+hidden_mse:layers=last:2,name=fitnet",
            {"name": "att", "objectives": [{"attention_kl": {}}]}]
    config = feature_config(tmp_path, ["pooled.2"], arms)
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "arm 'fitnet': hidden_mse: layers='last:2'" in err  # the bow student has one layer
    assert "arm 'att': attention_kl: reads token-level outputs, which the bow student does not have" in err
    assert not (tmp_path / "run").exists()
    good = feature_config(tmp_path, ["pooled.2"], ["vanilla", "kd+hidden_mse:name=fitnet"])
    assert main(["validate", str(good)]) == 0


def test_an_ema_arms_moving_average_is_audited_beside_it(tmp_path):
    values = tiny_config(tmp_path)
    values["arms"] = ["vanilla", "ema_kd:decay=0.9,name=mean_teacher"]
    assert main(["run", str(write_config(tmp_path, values))]) == 0
    audit = read_json(tmp_path / "run" / "audit" / "audit.json")
    assert {"vanilla", "mean_teacher", "mean_teacher-ema"} <= set(audit["arms"])
    assert audit["inputs"]["mean_teacher-ema"]["meta"]["recipe"]["loss"] == "ema"
    assert "mean_teacher-ema" in (tmp_path / "run" / "report" / "report.md").read_text()


def test_validate_refuses_a_live_teacher_whose_tokens_do_not_align(tmp_path, capsys):
    from train_helpers import slice_dataset

    values = tiny_config(tmp_path)
    dataset = load_dataset(values["data"])
    student = make_tiny_bert(dataset, tmp_path / "student")
    # A teacher whose vocabulary saw only the first rows: words it lacks become [UNK] where the student has them.
    teacher = make_tiny_bert(slice_dataset(dataset, 3, 3, name="few"), tmp_path / "teacher", with_weights=True)
    values["training"] = {**values["training"], "student": str(student), "live_teacher": str(teacher),
                          "max_length": 16}
    values["arms"] = ["vanilla", "attention_mse"]
    assert main(["validate", str(write_config(tmp_path, values))]) == 2
    err = capsys.readouterr().err
    assert "tokens do not align at row" in err and "teacher '[UNK]'" in err
    assert not (tmp_path / "run").exists()


def test_validate_names_a_live_teacher_without_a_tokenizer(tmp_path, capsys):
    values = tiny_config(tmp_path)
    dataset = load_dataset(values["data"])
    student = make_tiny_bert(dataset, tmp_path / "student")
    teacher = make_tiny_bert(dataset, tmp_path / "teacher", with_weights=True)
    (teacher / "tokenizer.json").write_text("{garbage")  # a tampered tokenizer file
    values["training"] = {**values["training"], "student": str(student), "live_teacher": str(teacher),
                          "max_length": 16}
    values["arms"] = ["vanilla", "attention_mse"]
    assert main(["validate", str(write_config(tmp_path, values))]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("distillab") or "Traceback" in line]
    assert len(err) == 1 and f"{teacher}: cannot load its tokenizer" in err[0] and "Traceback" not in err[0]
