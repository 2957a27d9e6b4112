"""Issue 13: born-again generations and teacher-assistant chains (distillab.schedules), run by `distillab run`.

On the tiny experiment (tiny_experiment.py). Each stage is an arm trained from the stage before's
training-split predictions, imported as a fingerprinted cache; a changed stage retrains the stages
after it and nothing before it; every stage is audited, and audit/schedules.json plus a report table
compare generation with generation and a chain's student with direct KD.
"""

import hashlib
import json

import numpy as np
import pytest
from tiny_experiment import tiny_config, write_config, write_teacher

from distillab.cli import main
from distillab.config import config_from_dict
from distillab.errors import ConfigError
from distillab.io import load_predictions, read_json, sha256_file
from distillab.teacher.cache import TeacherCache

KD = "kd:T=2,alpha=0.5"
BORN_AGAIN = [{"name": "ban", "arm": KD, "generations": 3}]


def chain(*trainings: dict, compare_with: str = "kd") -> dict:
    """A chain of assistants with these training overrides, then the student (trained as the arm kd)."""
    stages = [{"name": f"ta{i + 1}", "arm": KD, "training": t} for i, t in enumerate(trainings)]
    return {"name": "ta", "compare_with": compare_with, "stages": stages + [{"name": "student", "arm": KD}]}


def run(tmp_path, values, capsys) -> str:
    assert main(["run", str(write_config(tmp_path, values))]) == 0
    return capsys.readouterr().err


def trained(out) -> dict:
    """Arm folder → its train_log.json's mtime (rewritten only when the arm trains)."""
    return {str(p.parent.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("train_log.json")}


def fingerprint_sha256(cache_dir) -> str:
    fingerprint = read_json(cache_dir / "manifest.json")["fingerprint"]
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def test_born_again_generations_each_distil_from_the_one_before_and_are_audited(tmp_path, capsys):
    out, folder = tmp_path / "run", tmp_path / "run" / "born-again" / "ban"
    values = {**tiny_config(tmp_path), "born_again": BORN_AGAIN}
    err = run(tmp_path, values, capsys)
    assert "[train] born-again ban: 1 arms: g3" in err

    # Generation 1 reads the run's teacher; generation g+1 a cache of generation g's train predictions.
    g1 = read_json(folder / "g1" / "resolved_config.json")
    assert g1["teacher_cache"]["fingerprint_sha256"] == fingerprint_sha256(out / "teacher-cache")
    for g in (2, 3):
        source, cache_dir = folder / f"g{g - 1}" / "predictions" / "train.npz", folder / f"g{g - 1}-cache"
        teacher = read_json(cache_dir / "manifest.json")["fingerprint"]["teacher"]
        assert teacher["source_sha256"] == sha256_file(source) and teacher["name"] == f"ban-g{g - 1}"
        resolved = read_json(folder / f"g{g}" / "resolved_config.json")
        assert resolved["teacher_cache"]["fingerprint_sha256"] == fingerprint_sha256(cache_dir)
        assert resolved["teacher_cache"]["temperature"] is None  # raw logits: the objective's T softens them
        assert resolved["recipe"] == g1["recipe"] and resolved["bow_dim"] == g1["bow_dim"]
        before = load_predictions(source)
        np.testing.assert_array_equal(TeacherCache.open(cache_dir).logits(before.ids), before.logits)

    audit = read_json(out / "audit" / "audit.json")
    assert {"ban-g1", "ban-g2", "ban-g3"} <= set(audit["arms"])
    assert {r["arm"] for r in audit["bootstrap"]} >= {"ban-g1", "ban-g2", "ban-g3"}  # each vs the baseline
    # The T × α grid compares arms taught by the run's teacher; later generations learnt from generation g.
    assert not {"ban-g2", "ban-g3"} & {row["arm"] for row in audit["grid"]}
    comparisons = read_json(out / "audit" / "schedules.json")["comparisons"]
    assert [(c["arm"], c["against"]) for c in comparisons] == [("ban-g2", "ban-g1"), ("ban-g3", "ban-g2"),
                                                               ("ban-g3", "ban-g1")]
    f1 = audit["candidate_bootstrap"]["f1"]
    i, j = f1["candidates"].index("ban-g3"), f1["candidates"].index("ban-g2")
    assert comparisons[1]["bootstrap"]["tail"]["ci_low"] == f1["groups"]["tail"]["macro_f1"]["ci_low"][i][j]
    assert (folder / "g2" / "model" / "temperature.json").is_file()
    html = (out / "report" / "report.html").read_text()
    assert 'id="schedules"' in html and "ban-g3 − ban-g2" in html

    # A new teacher changes generation 1, hence generation 2's cache, hence generation 3's: all retrain.
    before = trained(out)
    write_teacher(tmp_path / "teacher.npz", tmp_path / "data", seed=1)
    err = run(tmp_path, values, capsys)
    after = trained(out)
    assert after["arms/vanilla"] == before["arms/vanilla"]
    assert all(after[f"born-again/ban/g{g}"] != before[f"born-again/ban/g{g}"] for g in (1, 2, 3)), err
    assert read_json(folder / "g1-cache" / "manifest.json")["fingerprint"]["teacher"]["source_sha256"] == \
        sha256_file(folder / "g1" / "predictions" / "train.npz")


def test_a_changed_chain_stage_retrains_the_stages_after_it_and_nothing_before(tmp_path, capsys):
    out, folder = tmp_path / "run", tmp_path / "run" / "chains" / "ta"
    values = {**tiny_config(tmp_path), "chains": [chain({"bow_dim": 16, "bow_ngrams": 1}, {"bow_dim": 12})]}
    run(tmp_path, values, capsys)
    first = trained(out)
    caches = {name: fingerprint_sha256(folder / f"{name}-cache") for name in ("ta1", "ta2")}
    assert read_json(folder / "ta1" / "resolved_config.json")["bow_dim"] == 16
    assert read_json(folder / "student" / "resolved_config.json")["bow_dim"] == 8  # the run's, as the arm kd's

    # Nothing changed: nothing trains, nothing is audited again.
    err = run(tmp_path, values, capsys)
    assert trained(out) == first and "audit.json is up to date" in err

    # The second assistant changes: it and the student retrain from it; the first assistant and the arms are kept.
    values["chains"] = [chain({"bow_dim": 16, "bow_ngrams": 1}, {"bow_dim": 10})]
    err = run(tmp_path, values, capsys)
    now = trained(out)
    assert {k for k in now if now[k] != first[k]} == {"chains/ta/ta2", "chains/ta/student"}, err
    assert fingerprint_sha256(folder / "ta1-cache") == caches["ta1"]
    assert fingerprint_sha256(folder / "ta2-cache") != caches["ta2"]
    assert read_json(folder / "student" / "resolved_config.json")["teacher_cache"]["fingerprint_sha256"] == \
        fingerprint_sha256(folder / "ta2-cache")

    audit = read_json(out / "audit" / "audit.json")
    assert {"ta-ta1", "ta-ta2", "ta-student"} <= set(audit["arms"])
    [comparison] = read_json(out / "audit" / "schedules.json")["comparisons"]
    assert (comparison["arm"], comparison["against"], comparison["seeds"]) == ("ta-student", "kd", None)
    assert comparison["macro_f1"]["overall"] == [audit["arms"][a]["overall"]["macro_f1"] for a in ("ta-student", "kd")]

    # Without schedules the comparisons file and table go.
    run(tmp_path, {k: v for k, v in values.items() if k != "chains"}, capsys)
    assert not (out / "audit" / "schedules.json").exists()
    assert 'id="schedules"' not in (out / "report" / "report.html").read_text()


def test_with_several_seeds_every_schedule_runs_per_seed_and_joins_the_seed_variance(tmp_path, capsys):
    out = tmp_path / "run"
    values = tiny_config(tmp_path, born_again=[{**BORN_AGAIN[0], "generations": 2}], chains=[chain({"bow_dim": 16})])
    values["training"] = {**values["training"], "seeds": [1, 2]}
    run(tmp_path, values, capsys)
    for stage in ("born-again-seed2/ban/g1", "born-again-seed2/ban/g2", "chains-seed2/ta/student"):
        assert read_json(out / stage / "resolved_config.json")["seed"] == 2, stage
    assert read_json(out / "born-again" / "ban" / "g2" / "resolved_config.json")["seed"] == 1
    seed2 = read_json(out / "born-again-seed2" / "ban" / "g2" / "resolved_config.json")
    assert seed2["teacher_cache"]["fingerprint_sha256"] == fingerprint_sha256(out / "born-again-seed2" / "ban" / "g1-cache")
    seeds = read_json(out / "audit" / "seeds.json")
    assert {"ban-g1", "ban-g2", "ta-ta1", "ta-student"} <= set(seeds["arms"])
    comparisons = read_json(out / "audit" / "schedules.json")["comparisons"]
    record = comparisons[0]["seeds"]["overall"]
    per_seed = {a: seeds["arms"][a]["values"]["overall"]["macro_f1"]["per_seed"] for a in ("ban-g2", "ban-g1")}
    assert record["n_seeds"] == 2 and record["deltas"] == pytest.approx(
        [a - b for a, b in zip(per_seed["ban-g2"], per_seed["ban-g1"])])
    assert "Mean Δ over seeds" in (out / "report" / "report.md").read_text()


OK_CHAIN = chain({"bow_dim": 16})
# (config changes, the one line the error must hold)
BAD = [
    ({"born_again": [{**BORN_AGAIN[0], "generations": 0}]}, "born_again[0].generations: must be an integer in [1, 50], got 0"),
    ({"born_again": [{**BORN_AGAIN[0], "generations": 2.5}]}, "born_again[0].generations: must be an integer"),
    ({"born_again": [{**BORN_AGAIN[0], "name": "ban\n"}]}, "born_again[0].name: must be a name of letters"),
    ({"chains": [{**OK_CHAIN, "stages": [{**OK_CHAIN["stages"][0], "name": "assistant\n"}, *OK_CHAIN["stages"][1:]]}]},
     "chains[0].stages[0].name: must be a name of letters"),
    ({"born_again": [{"name": "ban", "arm": KD}]}, "born_again[0]: missing generations"),
    ({"born_again": [{**BORN_AGAIN[0], "arm": "vanilla"}]}, "born_again[0].arm: vanilla reads no teacher"),
    ({"born_again": [{**BORN_AGAIN[0], "arm": "kd+hidden_mse"}]}, "born_again[0].arm: kd+hidden_mse reads more than"),
    ({"born_again": [BORN_AGAIN[0], dict(BORN_AGAIN[0])]}, "born_again[1].name: 'ban' names another born_again entry too"),
    ({"born_again": BORN_AGAIN, "arms": ["vanilla", "kd:T=2,alpha=0.5,name=kd", "kd:name=ban-g2"]},
     "born_again[0]: its stage 'g2' is audited as 'ban-g2', already an arm"),
    ({"chains": [{**OK_CHAIN, "stages": OK_CHAIN["stages"][1:]}]}, "chains[0].stages: a chain needs at least 2 stages"),
    ({"chains": [chain({"bow_dimm": 16})]}, "chains[0].stages[0].training: unknown setting(s) ['bow_dimm']"),
    ({"chains": [chain({"seed": 3})]}, "chains[0].stages[0].training.seed: the run's setting"),
    ({"chains": [chain([])]}, "chains[0].stages[0].training: must be a mapping of training settings, got []"),
    ({"chains": [chain(0)]}, "chains[0].stages[0].training: must be a mapping of training settings, got 0"),
    ({"chains": [chain({"bow_dim": 0})]}, "chains[0].stages[0].training.bow_dim=0: must be in [1,"),
    ({"chains": [chain({}, compare_with="kdd")]}, "chains[0].compare_with: 'kdd' is not an arm"),
    ({"chains": [chain({}, compare_with="vanilla")]}, "chains[0].compare_with: 'vanilla' has recipe"),
    ({"chains": [{**OK_CHAIN, "stages": [*OK_CHAIN["stages"][:1], {"name": "student", "arm": KD, "training": {"bow_dim": 16}}]}]},
     "chains[0].compare_with: 'kd' trains with other settings than the chain's student (last stage 'student': bow_dim: 8 vs 16)"),
    ({"chains": [OK_CHAIN], "arms": ["vanilla", "kd:T=2,alpha=0.5,name=kd", "kd:name=ta-student"]},
     "chains[0]: its stage 'student' is audited as 'ta-student', already an arm"),
]


@pytest.mark.parametrize("changes, line", BAD, ids=[line.split(":")[0] + str(i) for i, (_, line) in enumerate(BAD)])
def test_bad_schedules_are_one_line_each_caught_by_validate(tmp_path, capsys, changes, line):
    values = {**tiny_config(tmp_path), **changes}
    with pytest.raises(ConfigError) as info:
        config_from_dict(values, source="exp.yaml")
    assert str(info.value).count("\n") == 1, str(info.value)  # exactly one problem
    assert main(["validate", str(write_config(tmp_path, values))]) == 2
    err = capsys.readouterr().err
    assert any(line in one for one in err.splitlines()), err


def test_a_quantization_aware_arm_can_be_a_stage(tmp_path, capsys):
    values = {**tiny_config(tmp_path), "born_again": [{"name": "qban", "arm": f"{KD},fake_quant=int8",
                                                        "generations": 2}]}
    assert main(["validate", str(write_config(tmp_path, values))]) == 0
    assert "qban-g1, qban-g2" in capsys.readouterr().out


def test_a_rerun_with_nothing_changed_skips_the_trainers_setup(tmp_path, capsys, monkeypatch):
    """Every arm and stage finished from the same inputs: no featurising per stage (most of a rerun's time)."""
    import distillab.train.trainer as trainer

    out = tmp_path / "run"
    values = {**tiny_config(tmp_path), "born_again": [{"name": "ban", "arm": KD, "generations": 2}]}
    run(tmp_path, values, capsys)
    first, prepare = trained(out), trainer.prepare
    calls = []
    monkeypatch.setattr(trainer, "prepare", lambda *a, **k: calls.append(a[2]) or prepare(*a, **k))
    err = run(tmp_path, values, capsys)
    assert calls == [] and trained(out) == first
    assert "g2: already trained in" in err and "audit.json is up to date" in err

    # An arm without its train_log.json (a killed run) still goes to the trainer, which trains it again.
    (out / "born-again" / "ban" / "g2" / "train_log.json").unlink()
    run(tmp_path, values, capsys)
    assert len(calls) == 1 and (out / "born-again" / "ban" / "g2" / "train_log.json").is_file()
