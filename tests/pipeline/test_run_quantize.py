"""`quantize:` in a run config: int8 copies of trained arms, audited beside them as deployment candidates."""

from __future__ import annotations

import pytest

from distillab.cli import main
from distillab.io import read_json
from tests.pipeline.tiny_experiment import tiny_config, write_config


def test_quantized_arms_are_audited_beside_the_float_ones_and_kept_out_of_the_grid(tmp_path, capsys):
    values = tiny_config(tmp_path, arms=["vanilla", "kd:T=2,alpha=0.5,name=kd", "kd:T=4,alpha=0.5,name=kd4"],
                         quantize={"arms": ["kd", "vanilla"]})
    assert main(["run", str(write_config(tmp_path, values))]) == 0
    out = tmp_path / "run"
    audit = read_json(out / "audit" / "audit.json")
    assert {"kd-int8", "vanilla-int8"} <= set(audit["arms"])
    assert {r["arm"] for r in audit["grid"]} == {"kd", "kd4"}  # the int8 copy is a candidate, not a grid point
    sidecar = read_json(out / "arms" / "kd" / "quantized" / "predictions" / "test.json")
    assert sidecar["recipe"]["quantized"] == "int8" and "serving" in sidecar["measurements"]
    assert "kd-int8" in (out / "report" / "report.md").read_text(encoding="utf-8")

    # A rerun with nothing changed leaves the audit as it was (the int8 predictions are reproducible).
    assert main(["run", str(write_config(tmp_path, values))]) == 0
    assert "audit.json is up to date" in capsys.readouterr().err


def test_a_size_budget_only_an_int8_copy_meets_picks_it(tmp_path):
    scenario = {"id": "edge", "name": "On-device", "constraints": [{"metric": "model_mb", "max": 0.006}],
                "objective": {"metric": "macro_f1", "goal": "max"}}
    values = tiny_config(tmp_path, quantize={"arms": ["kd", "vanilla"]}, report={"scenarios": [scenario]})
    assert main(["run", str(write_config(tmp_path, values))]) == 0
    out = tmp_path / "run"
    sizes = {arm: read_json(path)["model_bytes"] for arm, path in (
        ("kd", out / "arms" / "kd" / "predictions" / "test.json"),
        ("kd-int8", out / "arms" / "kd" / "quantized" / "predictions" / "test.json"))}
    assert sizes["kd-int8"] < 0.006e6 < sizes["kd"]  # the rows the bow student uses: 7.0 KB float32, 4.7 KB int8
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    recipe = report.split("### Scenario edge — On-device: ", 1)[1].split("\n", 1)[0]
    assert recipe.removesuffix(" + T").endswith(" int8"), recipe
    assert "Left out for failing weights on disk (MB) ≤" in report


@pytest.mark.parametrize("quantize, line", [
    ({"arms": ["nope"]}, "quantize.arms: 'nope' is not an arm"),
    ({"arms": ["kd", "kd"]}, "quantize.arms: 'kd' is listed twice"),
    ({"arms": ["kd"], "backend": "tensorrt"}, "quantize.backend: 'tensorrt' must be one of"),
])
def test_bad_quantize_sections_are_one_line_caught_by_validate(tmp_path, capsys, quantize, line):
    config = write_config(tmp_path, tiny_config(tmp_path, quantize=quantize))
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert line in err and "Traceback" not in err


def test_validate_lists_the_int8_copies_it_will_audit(tmp_path, capsys):
    config = write_config(tmp_path, tiny_config(tmp_path, quantize={"arms": ["kd"]}))
    assert main(["validate", str(config)]) == 0
    assert "2 arms: vanilla, kd; int8 copies: kd-int8; output:" in capsys.readouterr().out


def test_an_int8_name_that_is_already_an_arm_is_refused(tmp_path, capsys):
    values = tiny_config(tmp_path, arms=["vanilla", "kd:T=2,alpha=0.5,name=kd", "kd:T=4,name=kd-int8"],
                         quantize={"arms": ["kd"]})
    assert main(["validate", str(write_config(tmp_path, values))]) == 2
    assert "quantize.arms: 'kd' would be audited as 'kd-int8'" in capsys.readouterr().err


def test_a_backend_that_is_not_installed_is_caught_by_validate(tmp_path, capsys):
    from distillab.quantize.backends import torchao_available

    if torchao_available()[0]:
        pytest.skip("torchao is installed here")
    values = tiny_config(tmp_path, quantize={"arms": ["kd"], "backend": "torchao"})
    assert main(["validate", str(write_config(tmp_path, values))]) == 2
    err = capsys.readouterr().err
    assert "quantize.backend:" in err and "torchao" in err and "Traceback" not in err
