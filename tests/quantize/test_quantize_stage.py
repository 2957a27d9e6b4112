"""``quantize_stage`` (the pipeline's int8 candidates): each arm's int8 copy becomes an audit arm ``NAME-int8``
whose sidecar carries the int8 model's measured serving cost in the trainer's format, the audit takes it like
any arm, and a deployment scenario with a tight latency bound picks it. Bow students only: seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from distillab.errors import InputError
from distillab.io import load_predictions, read_json
from distillab.quantize.stage import quantize_stage

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from train_helpers import DATA_DIR, bow_config, load_lab_dataset, write_cache  # noqa: E402

N_RESAMPLES = 50


def twelve_classes():
    """banking77 rows of its first 12 classes (15 train, 6 test each): every tier has test rows at cut-offs 4,8."""
    from distillab.data.dataset import TextDataset

    full = load_lab_dataset("banking77", data_dir=DATA_DIR)
    splits = {}
    for name, per_class in (("train", 15), ("test", 6)):
        labels = np.asarray(full.splits[name].labels)
        rows = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(12)])
        splits[name] = full.splits[name].take(np.sort(rows))
    return TextDataset("banking77-12", list(full.classes), splits, {"sliced_from": full.name})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from distillab.train.trainer import train_arm

    dataset = twelve_classes()
    root = tmp_path_factory.mktemp("arms")
    train_arm(dataset, "vanilla", bow_config(seed=3), root / "a")
    cache = write_cache(dataset, root / "cache")
    train_arm(dataset, "kd:T=4,alpha=0.7,name=kd", bow_config(seed=4), root / "b", cache=cache)
    arms = {"vanilla": root / "a" / "vanilla", "kd": root / "b" / "kd"}
    return dataset, arms, quantize_stage(arms, dataset, "test", backend="torch.ao", n_resamples=N_RESAMPLES)


def test_stage_returns_int8_arms_whose_sidecars_carry_measured_serving(trained):
    dataset, arms, out = trained
    assert out == {"vanilla-int8": arms["vanilla"] / "quantized" / "predictions" / "test.npz",
                   "kd-int8": arms["kd"] / "quantized" / "predictions" / "test.npz"}
    for name, arm in arms.items():
        float_meta = load_predictions(arm / "predictions" / "test.npz").meta
        preds = load_predictions(out[f"{name}-int8"])
        record = read_json(arm / "quantized" / "quantization.json")
        assert preds.logits.shape == (len(dataset.splits["test"].labels), len(dataset.classes))
        np.testing.assert_array_equal(preds.ids.astype(str), np.asarray(dataset.splits["test"].ids, dtype=str))
        serving = preds.meta["measurements"]["serving"]
        # The trainer's format (what report.tables.serving_of reads), the int8 model's own measurement.
        assert set(float_meta["measurements"]["serving"]) - {"architecture"} <= set(serving)
        for metric in ("ms_per_example", "forward_ms_per_example", "featurize_ms_per_example"):
            assert set(serving[metric]) == {"median", "min", "max"}
        assert serving == record["measurements"]["serving"]["int8"]
        assert serving["batch_size"] == 32 and serving["threads"] == 1 and serving["device"] == "cpu"
        assert preds.meta["params"] == float_meta["params"] and preds.meta["recipe"]["quantized"] == "int8"
        assert preds.meta["recipe"]["loss"] == float_meta["recipe"]["loss"] and preds.meta["role"] == "quantized"
        # What the pipeline already has is not measured or checked again.
        assert record["measurements"]["serving"]["float32"]["ms_per_example"] == \
            float_meta["measurements"]["serving"]["ms_per_example"]
        assert record["float32_serving_source"].startswith("the float arm's predictions sidecar")
        assert record["round_trip"]["max_abs_diff"] is None and "load_quantized" not in record["measurements"]["seconds"]
        assert record["agreement"]["top1"] > 0.9


def test_stage_skips_arms_it_already_made_and_redoes_them_identically(trained, tmp_path):
    dataset, arms, out = trained
    before = {name: (path.stat().st_mtime_ns, path.read_bytes()) for name, path in out.items()}
    said = []
    assert quantize_stage(arms, dataset, "test", backend="torch.ao", n_resamples=N_RESAMPLES, log=said.append) == out
    assert all("up to date" in line for line in said) and len(said) == 2
    assert {name: path.stat().st_mtime_ns for name, path in out.items()} == {n: b[0] for n, b in before.items()}
    quantize_stage({"vanilla": arms["vanilla"]}, dataset, "test", backend="torch.ao", n_resamples=N_RESAMPLES,
                   redo=True)
    assert out["vanilla-int8"].read_bytes() == before["vanilla-int8"][1]  # same int8 logits, byte for byte
    # The shortcuts (shared featurised rows, quantized in place, no reload) change no logit: the standalone
    # command's folder (featurised alone, float copy kept, saved-reloaded-compared) predicts the same bytes.
    from distillab.quantize.run import quantize_arm

    for name in arms:
        alone = quantize_arm(arms[name], dataset, "test", out=tmp_path / name, n_resamples=N_RESAMPLES,
                             backend="torch.ao")
        assert alone["round_trip"]["max_abs_diff"] == 0.0
        np.testing.assert_array_equal(load_predictions(tmp_path / name / "predictions" / "test.npz").logits,
                                      load_predictions(out[f"{name}-int8"]).logits)
    with pytest.raises(InputError, match="quantize.arms: 'nope' has no trained student"):
        quantize_stage({"nope": arms["vanilla"].parent / "nope"}, dataset, "test")


def test_audit_and_report_take_the_int8_arm_and_a_tight_latency_bound_picks_it(trained, tmp_path):
    from distillab.audit import audit
    from distillab.data import train_counts
    from distillab.report.decision import load_scenarios, recommend
    from distillab.report.tables import build_tables

    dataset, arms, out = trained
    result = audit(arms={"vanilla": arms["vanilla"] / "predictions" / "test.npz",
                         "kd": arms["kd"] / "predictions" / "test.npz", **out},
                   baseline="vanilla", distilled="kd", n_resamples=N_RESAMPLES,
                   train_counts=train_counts(dataset, "train"), tier_cutoffs=(4, 8),
                   classes=list(dataset.classes))
    assert set(result["arms"]) == {"vanilla", "kd", "vanilla-int8", "kd-int8"}
    int8_serving = load_predictions(out["kd-int8"]).meta["measurements"]["serving"]
    scenarios = load_scenarios(None)
    tables = build_tables(result, scenarios)
    candidates = tables["candidates"]
    assert candidates.has("kd-int8")
    assert candidates.value("kd-int8", "ms_per_example").median == pytest.approx(int8_serving["ms_per_example"]["median"])

    # The same audit with serving costs set so that only the int8 copies fit a 1 ms bound (a measurement
    # differs run to run; the decision rule is what is tested): scenario A must pick an int8 student.
    for arm, ms in (("vanilla", 5.0), ("kd", 5.0), ("vanilla-int8", 0.5), ("kd-int8", 0.5)):
        serving = result["inputs"][arm]["meta"]["measurements"]["serving"]
        serving["ms_per_example"] = {"median": ms, "min": ms * 0.9, "max": ms * 1.1}
    scenarios[0]["constraints"] = [{"metric": "ms_per_example", "max": 1.0}]
    tables = build_tables(result, scenarios)
    recs = {r.scenario["id"]: r for r in recommend(result, tables, scenarios)}
    assert recs["A"].feasible and recs["A"].candidate.split("+")[0] in ("vanilla-int8", "kd-int8")
    # The recommendation names the int8 model, not the float recipe it was made from.
    rule = " ".join(f if isinstance(f, str) else f.text for _, frags in recs["A"].items for f in frags)
    recipe = tables["candidates"].row(recs["A"].candidate).cells["recipe"].text
    assert recipe.removesuffix(" + T").endswith(" int8") and f"argmax of  {recipe} " in rule
    assert tables["candidates"].row("vanilla").cells["recipe"].text == "vanilla"  # the float arms keep their names
    # The whole report renders with int8 arms in it, and its candidates table names them as int8.
    import json

    from distillab.report.render import render_report

    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "audit.json").write_text(json.dumps(result), encoding="utf-8")
    html = render_report(tmp_path / "audit", out_dir=tmp_path / "report")["html"].read_text(encoding="utf-8")
    assert "KD (T=4, α=0.7) int8" in html
