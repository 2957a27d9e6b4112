"""``distillab audit`` end to end on the synthetic example, plus every kind of bad input."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from distillab.audit import audit, make_example
from distillab.audit import metrics as M
from distillab.calibrate import TemperatureScaler, cal_eval_split
from distillab.cli import main
from distillab.io import load_predictions, save_predictions

FAST = ["--n-resamples", "40"]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return make_example(tmp_path_factory.mktemp("example"), n=2500, grid=True)


def cli_args(ex, out, *extra):
    return [
        "audit", "--teacher", str(ex["teacher"]), "--arm", f"vanilla={ex['vanilla']}", "--arm", f"distilled={ex['distilled']}",
        "--baseline", "vanilla", "--train-counts", str(ex["train_counts"]), "--out", str(out), *FAST, *extra,
    ]


@pytest.fixture(scope="module")
def result(example, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    args = cli_args(example, out, "--arm", f"kd_T1_a70={example['kd_T1_a70']}", "--arm", f"kd_T8_a90={example['kd_T8_a90']}",
                    "--reference-score", "0.2", "--quiet")
    assert main(args) == 0
    assert (out / "audit.md").read_text().startswith("# distillab audit")
    return json.loads((out / "audit.json").read_text())


def test_course_shaped_example_end_to_end(tmp_path, capsys):
    ex = make_example(tmp_path / "ex")
    assert main(cli_args(ex, tmp_path / "out", "--classes", str(ex["classes"]))) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "Test B" in out
    res = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert (res["n"], res["num_classes"]) == (6430, 113)
    assert [res["tiers"][t]["n"] for t in ("head", "mid", "tail")] == [5155, 1065, 210]
    assert [len(res["tiers"][t]["classes"]) for t in ("head", "mid", "tail")] == [20, 40, 53]
    assert res["tier_source"] == "train_counts" and res["classes"][0] == "issue-000"
    assert res["calibration"]["vanilla"]["n_cal"] == 3215


def test_keys_the_report_relies_on(result):
    for key in ("schema_version", "tool_version", "settings", "inputs", "n", "num_classes", "classes", "tiers", "tier_source",
                "tier_support", "arms", "bootstrap", "calibration", "transfer_tests", "per_class_delta_f1", "grid",
                "noise_floor", "lift_table"):
        assert key in result, key
    arm = result["arms"]["distilled"]
    assert set(arm) >= {"overall", "tiers", "per_class_f1", "coverage", "sla", "reliability"}
    for m in (arm["overall"], arm["tiers"]["tail"]):
        assert set(m) >= {"macro_f1", "accuracy", "ece", "nll", "js_to_teacher", "agreement", "entropy", "brier"}
    assert set(arm["sla"]) == {"target", "threshold", "coverage", "accuracy", "n_covered", "best_accuracy"}
    assert [r["threshold"] for r in arm["coverage"]] == [0.5, 0.6, 0.7, 0.8, 0.9]
    cal = result["calibration"]["vanilla"]
    assert set(cal["eval"]["raw"]) == {"overall", "tiers", "reliability"}
    assert set(cal["eval"]["scaled"]) == {"overall", "tiers", "reliability", "coverage", "threshold_search"}
    scaled_coverage = cal["eval"]["scaled"]["coverage"]
    assert [r["threshold"] for r in scaled_coverage] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert scaled_coverage[0]["n_covered"] <= cal["n_eval"]
    assert set(result["transfer_tests"]["test_a"]["distilled"]["head"]) == {
        "js_to_teacher", "agreement", "js_reduction_vs_baseline", "agreement_gain_vs_baseline"}
    assert set(result["transfer_tests"]["test_b"]) >= {"baseline", "distilled", "ece_fraction", "nll_fraction", "ece", "nll"}
    assert set(result["noise_floor"]) == {"overall", "head", "mid", "tail"}
    assert [g["arm"] for g in result["grid"]] == ["distilled", "kd_T1_a70", "kd_T8_a90"]
    assert sorted(g["rank_macro_f1"] for g in result["grid"]) == [1, 2, 3]
    assert set(result["inputs"]) == {"teacher", "vanilla", "distilled", "kd_T1_a70", "kd_T8_a90"}
    assert result["tier_support"][0]["rank"] == 1


def test_numbers_match_independent_computation(example, result):
    vanilla, distilled = load_predictions(example["vanilla"]), load_predictions(example["distilled"])
    y = vanilla.labels
    pv, pd = vanilla.logits.argmax(1), distilled.logits.argmax(1)
    assert result["arms"]["vanilla"]["overall"]["macro_f1"] == f1_score(y, pv, average="macro", zero_division=0)
    delta = f1_score(y, pd, labels=range(113), average=None, zero_division=0) - f1_score(
        y, pv, labels=range(113), average=None, zero_division=0)
    np.testing.assert_allclose(result["per_class_delta_f1"]["distilled"], delta, atol=1e-15)
    cal, ev = cal_eval_split(len(y))
    scaler = TemperatureScaler().fit(vanilla.logits[cal], y[cal])
    assert result["calibration"]["vanilla"]["temperature"] == scaler.temperature_
    ece_raw = M.ece(M.softmax(vanilla.logits[ev]), y[ev])
    ece_t = M.ece(scaler.predict_proba(vanilla.logits[ev]), y[ev])
    ece_d = M.ece(M.softmax(distilled.logits[ev]), y[ev])
    assert result["transfer_tests"]["test_b"]["ece_fraction"] == pytest.approx((ece_raw - ece_t) / (ece_raw - ece_d), rel=1e-12)
    lift = result["lift_table"]
    assert lift["data_lift"] == pytest.approx(lift["baseline_score"] - 0.2)
    assert lift["ratio"] == pytest.approx(lift["data_lift"] / lift["kd_lift"])
    head_width = next(r["ci_width"] for r in result["bootstrap"]
                      if (r["arm"], r["tier"], r["metric"]) == ("distilled", "head", "macro_f1"))
    assert result["noise_floor"]["head"] == head_width


def test_alignment_by_ids_ignores_row_order(example, tmp_path):
    pred = load_predictions(example["distilled"])
    order = np.random.default_rng(0).permutation(pred.n)
    shuffled = tmp_path / "shuffled.npz"
    save_predictions(shuffled, pred.logits[order], pred.labels[order], ids=pred.ids[order], meta=pred.meta)
    arms = {"vanilla": example["vanilla"], "distilled": example["distilled"]}
    a = audit(arms, "vanilla", teacher=example["teacher"], n_resamples=20, calibrate=["vanilla"])
    b = audit({**arms, "distilled": shuffled}, "vanilla", teacher=example["teacher"], n_resamples=20, calibrate=["vanilla"])
    assert a["arms"] == b["arms"] and a["bootstrap"] == b["bootstrap"]
    assert list(a["calibration"]) == ["vanilla"]


def test_tier_sources(example, tmp_path):
    vanilla = load_predictions(example["vanilla"])
    fallback = audit({"vanilla": example["vanilla"]}, "vanilla", n_resamples=5)
    assert fallback["tier_source"] == "eval_labels"
    assert fallback["transfer_tests"] == {"test_a": None, "test_b": None} and fallback["lift_table"] is None
    tiered = tmp_path / "tiered.npz"
    save_predictions(tiered, vanilla.logits, vanilla.labels, tiers=_row_tiers(fallback, vanilla.labels))
    from_file = audit({"vanilla": tiered}, "vanilla", n_resamples=5)
    assert from_file["tier_source"] == "file" and from_file["tiers"] == fallback["tiers"]
    counts = np.bincount(vanilla.labels, minlength=113)
    by_threshold = audit({"vanilla": example["vanilla"]}, "vanilla", n_resamples=5, train_counts=counts.tolist(),
                         tier_thresholds=(40, 5))
    assert by_threshold["tier_source"] == "train_counts"
    assert set(by_threshold["tiers"]["head"]["classes"]) == set(np.flatnonzero(counts >= 40))


def _row_tiers(result, labels):
    class_tier = {c: t for t in ("head", "mid", "tail") for c in result["tiers"][t]["classes"]}
    return np.array([class_tier[c] for c in labels])


def _write(path, logits, labels, **arrays):
    np.savez(path, logits=logits, labels=labels, **arrays)  # bypasses save_predictions' validation on purpose
    return path


def _with_sidecar(path, good, text):
    _write(path, good.logits, good.labels)
    path.with_suffix(".json").write_text(text)
    return path


def _bad_cases(tmp_path, ex):
    good = load_predictions(ex["vanilla"])
    bad_label = good.labels.copy()
    bad_label[7] = 113
    nan_logits = good.logits.copy()
    nan_logits[3, 0] = np.nan
    other_ids = good.ids.copy()
    other_ids[5] = "stranger"
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"cal": [0, 1, 2], "eval": list(range(3, 50))}))
    return {
        "label out of range": (["--arm", f"distilled={_write(tmp_path / 'a.npz', good.logits, bad_label)}"], "a.npz", "outside [0, 113)"),
        "K differs": (["--arm", f"distilled={_write(tmp_path / 'b.npz', good.logits[:, :100], np.minimum(good.labels, 99))}"], "b.npz", "classes"),
        "NaN logits": (["--arm", f"distilled={_write(tmp_path / 'c.npz', nan_logits, good.labels)}"], "c.npz", "NaN"),
        "fewer rows": (["--arm", f"distilled={_write(tmp_path / 'd.npz', good.logits[:-1], good.labels[:-1])}"], "d.npz", "rows"),
        "rows shuffled, no ids": (["--arm", f"distilled={_write(tmp_path / 'e.npz', good.logits[::-1], good.labels[::-1])}"], "e.npz", "aligned by row order"),
        "unknown id": (["--arm", f"distilled={_write(tmp_path / 'f.npz', good.logits, good.labels, ids=other_ids)}"], "f.npz", "missing"),
        "empty tier": (["--arm", f"distilled={ex['distilled']}", "--tier-cutoffs", "100,113"], "tier 'tail' has no rows", "--tier-cutoffs"),
        "cal split too small": (["--arm", f"distilled={ex['distilled']}", "--cal-split", str(split)], "split.json", "at least 10"),
        "unknown baseline": (["--arm", f"distilled={ex['distilled']}", "--baseline", "nope"], "--baseline", "'nope'"),
        "reserved name": (["--arm", f"teacher={ex['distilled']}"], "reserved", "teacher"),
        "missing file": (["--arm", f"distilled={tmp_path / 'missing.npz'}"], "missing.npz", "not found"),
        "sidecar not an object": (["--arm", f"distilled={_with_sidecar(tmp_path / 'g.npz', good, '[1, 2]')}"], "g.json",
                                  "JSON object"),
        "negative seed": (["--arm", f"distilled={ex['distilled']}", "--seed", "-1"], "--seed", "2**32"),
    }


@pytest.mark.parametrize("case", ["label out of range", "K differs", "NaN logits", "fewer rows", "rows shuffled, no ids",
                                  "unknown id", "empty tier", "cal split too small", "unknown baseline", "reserved name",
                                  "missing file", "sidecar not an object", "negative seed"])
def test_bad_input_exits_2_with_one_line_and_no_audit(example, tmp_path, capsys, case):
    out = tmp_path / "out"
    extra, names, says = _bad_cases(tmp_path, example)[case]
    base = ["audit", "--teacher", str(example["teacher"]), "--arm", f"vanilla={example['vanilla']}", "--baseline", "vanilla",
            "--train-counts", str(example["train_counts"]), "--out", str(out), "--quiet", *FAST]
    if "--baseline" in extra:
        base = base[: base.index("--baseline")] + base[base.index("--baseline") + 2 :]
    assert main([*base, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert names in err[0] and says in err[0], err[0]
    assert not (out / "audit.json").exists()


def test_failed_rerun_keeps_previous_audit(example, tmp_path):
    out = tmp_path / "out"
    assert main(cli_args(example, out, "--quiet")) == 0
    before = (out / "audit.json").read_bytes()
    assert main(cli_args(example, out, "--quiet", "--tier-cutoffs", "100,113")) == 2
    assert (out / "audit.json").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_example_script(tmp_path, monkeypatch):
    script = Path(__file__).parents[2] / "scripts" / "make_example_predictions.py"
    monkeypatch.setattr(sys, "argv", [script.name, str(tmp_path), "--n", "600", "--k", "30"])
    runpy.run_path(str(script), run_name="__main__")
    assert {p.name for p in tmp_path.iterdir()} >= {"teacher.npz", "vanilla.npz", "distilled.npz", "train_counts.json", "classes.json"}


def test_course_layout_files(example, tmp_path):
    """The course's npz files: fp16 logits, preds, labels and val_tiers (teacher: tiers), no ids."""
    tiers = _row_tiers(audit({"vanilla": example["vanilla"]}, "vanilla", n_resamples=5), load_predictions(example["vanilla"]).labels)
    paths = {}
    for name in ("teacher", "vanilla", "distilled"):
        p = load_predictions(example[name])
        key = "tiers" if name == "teacher" else "val_tiers"
        paths[name] = _write(tmp_path / f"{name}.npz", p.logits.astype(np.float16), p.labels,
                             preds=p.logits.argmax(1), **{key: tiers})
    res = audit({"vanilla": paths["vanilla"], "distilled": paths["distilled"]}, "vanilla", teacher=paths["teacher"],
                n_resamples=20)
    assert res["tier_source"] == "file" and res["settings"]["tier_cutoffs"] is None
    assert res["arms"]["teacher"]["overall"]["agreement"] == 1.0
    assert res["classes"][0] == "0"
