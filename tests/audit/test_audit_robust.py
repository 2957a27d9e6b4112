"""Issue 9 for the audit: numbers that hold up (tier label sets on the halves, the course's temperature
optimizer, clamped temperatures, preds ties, position alignment said out loud) and bad input or a bad
output location as one line, exit 2, nothing written."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import f1_score

from distillab.audit import audit
from distillab.cli import main
from distillab.io import save_predictions

K = 6
CUTOFFS = (2, 4)  # head = classes 0-1, mid = 2-3, tail = 4-5 (train counts fall with the class id)
TRAIN_COUNTS = [600, 500, 300, 200, 20, 10]


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(K, size=n, p=[0.3, 0.3, 0.15, 0.15, 0.05, 0.05])
    return labels, rng


def _arm(labels, rng, skill):
    logits = rng.normal(0, 1, (labels.size, K))
    logits[np.arange(labels.size), labels] += skill
    return logits


@pytest.fixture
def files(tmp_path):
    labels, rng = _data()
    ids = np.array([f"r{i}" for i in range(labels.size)])
    paths = {}
    for name, skill in (("teacher", 3.0), ("vanilla", 1.0), ("kd", 1.5)):
        paths[name] = save_predictions(tmp_path / f"{name}.npz", _arm(labels, rng, skill), labels, ids=ids)
    (tmp_path / "counts.json").write_text(json.dumps(TRAIN_COUNTS))
    return paths


def argv(files, out, *extra, arms=None):
    arms = arms or {"vanilla": files["vanilla"], "kd": files["kd"]}
    pairs = [x for name, path in arms.items() for x in ("--arm", f"{name}={path}")]
    tiers = [] if "--tier-thresholds" in extra else ["--tier-cutoffs", "2,4"]  # the two flags exclude each other
    return ["audit", "--teacher", str(files["teacher"]), *pairs, "--baseline", "vanilla", "--train-counts",
            str(files["teacher"].parent / "counts.json"), *tiers, "--n-resamples", "20", "--quiet",
            "--out", str(out), *extra]


def snapshot(folder):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def one_error_line(capsys, *names):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], lines
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- numbers


def test_eval_half_tier_f1_uses_the_tiers_full_label_set(tmp_path):
    """A tail class whose rows all fall in the cal half still counts on the eval half, with F1 0 (sklearn labels=)."""
    labels, rng = _data(n=400, seed=1)
    labels[labels == 5] = 4
    labels[:3] = 5  # class 5: three rows, all put in the cal half below
    logits = _arm(labels, rng, 1.2)
    path = save_predictions(tmp_path / "a.npz", logits, labels)
    cal = [0, 1, 2, *range(3, 200)]
    evaluation = list(range(200, 400))
    (tmp_path / "split.json").write_text(json.dumps({"cal": cal, "eval": evaluation}))
    result = audit({"a": path}, "a", train_counts=TRAIN_COUNTS, tier_cutoffs=CUTOFFS, n_resamples=5,
                   cal_split=tmp_path / "split.json")
    y, pred = labels[evaluation], logits[evaluation].argmax(1)
    for tier, classes in (("head", [0, 1]), ("mid", [2, 3]), ("tail", [4, 5])):
        mask = np.isin(y, classes)
        expected = f1_score(y[mask], pred[mask], labels=classes, average="macro", zero_division=0)
        for kind in ("raw", "scaled"):  # T never moves argmax: both equal sklearn's
            assert result["calibration"]["a"]["eval"][kind]["tiers"][tier]["macro_f1"] == pytest.approx(expected, abs=1e-15)
    assert 5 not in y and result["tiers"]["tail"]["classes_evaluated"] == [4, 5]


def course_temperature(logits, labels):
    """The course's fit_temperature (HW [f13156cf]) by hand: log T from 0, LBFGS lr 0.1 max_iter 200, float32."""
    import torch

    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)
    z, y = torch.tensor(logits, dtype=torch.float32), torch.tensor(labels)

    def closure():
        opt.zero_grad()
        loss = torch.nn.CrossEntropyLoss()(z / torch.exp(log_t), y)
        loss.backward()
        return loss

    opt.step(closure)
    return torch.exp(log_t).item()


def test_reference_optimizer_is_used_and_recorded(files, tmp_path):
    out = tmp_path / "out"
    assert main(argv(files, out, "--optimizer", "reference")) == 0
    result = json.loads((out / "audit.json").read_text())
    assert result["settings"]["calibration_optimizer"] == "reference"
    from distillab.calibrate import cal_eval_split
    from distillab.io import load_predictions

    cal, _ = cal_eval_split(300)
    for name in ("teacher", "vanilla", "kd"):
        p = load_predictions(files[name])
        record = result["calibration"][name]
        assert record["temperature"] == course_temperature(p.logits[cal], p.labels[cal])
        assert (record["optimizer"], record["temperature_at_bound"]) == ("reference", None)


def test_clamped_temperature_is_recorded_and_warned(tmp_path, capsys):
    labels, _ = _data()
    logits = np.zeros((labels.size, K))
    logits[np.arange(labels.size), labels] = 0.01  # separable: T runs into its lower bound
    path = save_predictions(tmp_path / "sep.npz", logits, labels)
    result = audit({"sep": path}, "sep", train_counts=TRAIN_COUNTS, tier_cutoffs=CUTOFFS, n_resamples=5)
    assert result["calibration"]["sep"]["temperature_at_bound"] == "lower"
    assert any("sep: the temperature hit its lower bound" in w for w in result["warnings"])
    assert "distillab audit: warning: sep: the temperature hit its lower bound" in capsys.readouterr().err
    from distillab.audit.markdown import render

    assert "| sep | 0.001 (lower bound) |" in render(result)


def test_preds_ties_are_counted_per_arm(tmp_path):
    labels, rng = _data()
    logits = _arm(labels, rng, 1.0).astype(np.float16)
    logits[7, :] = 0
    logits[7, [1, 4]] = 2.0  # a tie: argmax says 1, the stored preds say 4
    preds = logits.argmax(1)
    preds[7] = 4
    np.savez(tmp_path / "tied.npz", logits=logits, labels=labels, preds=preds)
    np.savez(tmp_path / "plain.npz", logits=logits, labels=labels, preds=logits.argmax(1))
    result = audit({"tied": tmp_path / "tied.npz", "plain": tmp_path / "plain.npz"}, "plain",
                   train_counts=TRAIN_COUNTS, tier_cutoffs=CUTOFFS, n_resamples=5)
    assert result["inputs"]["tied"]["preds_argmax_ties"] == 1
    assert result["inputs"]["plain"]["preds_argmax_ties"] == 0
    assert [w for w in result["warnings"] if "tied.npz: 1 rows' stored 'preds'" in w]


def test_alignment_by_position_is_said_out_loud(files, tmp_path, capsys):
    """The teacher has ids, an arm has none: rows are matched by position, and the terminal and audit.json say so."""
    p = np.load(files["kd"])
    np.savez(tmp_path / "noids.npz", logits=p["logits"], labels=p["labels"])
    out = tmp_path / "out"
    assert main(argv(files, out, arms={"vanilla": files["vanilla"], "kd": tmp_path / "noids.npz"})) == 0
    result = json.loads((out / "audit.json").read_text())
    assert result["alignment"] == {"teacher": "row-position", "vanilla": "row-position", "kd": "row-position"}
    assert len(result["warnings"]) == 1 and "noids.npz" in result["warnings"][0]
    assert "matched by position" in result["warnings"][0]
    err = capsys.readouterr().err
    assert "distillab audit: warning: rows were matched by position" in err and "noids.npz" in err
    assert f"- {result['warnings'][0]}" in (out / "audit.md").read_text()
    assert main(argv(files, tmp_path / "out2")) == 0
    result = json.loads((tmp_path / "out2" / "audit.json").read_text())
    assert set(result["alignment"].values()) == {"ids"} and result["warnings"] == []


# --------------------------------------------------------------------------- one line, exit 2, nothing written


def _write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _preds_copy(files, w, name, **change):
    p = dict(np.load(files["kd"]))
    p.update(change)
    np.savez(w / "tmp.npz", **p)
    (w / "tmp.npz").rename(w / name)
    return w / name


BAD = {
    "out is a file": (lambda f, w: argv(f, _write(w / "o", "x")), ["{w}/o", "not a folder"]),
    "out under a file": (lambda f, w: argv(f, w / "o" / "sub") if _write(w / "o", "x") else [], ["{w}/o", "is a file"]),
    "out unwritable": (lambda f, w: argv(f, "/proc/distillab-test/out"), ["/proc/distillab-test/out"]),
    "bins 1e12": (lambda f, w: argv(f, w / "out", "--bins", "1000000000000"), ["--bins"]),
    "tier cutoffs inf": (lambda f, w: argv(f, w / "out", "--tier-cutoffs", "inf,4"), ["--tier-cutoffs"]),
    "tier thresholds nan": (lambda f, w: argv(f, w / "out", "--tier-thresholds", "nan,4"), ["--tier-thresholds", "finite"]),
    "n-resamples huge": (lambda f, w: argv(f, w / "out", "--n-resamples", "1000000000000"), ["--n-resamples"]),
    "seed 1e20": (lambda f, w: argv(f, w / "out", "--seed", "100000000000000000000"), ["--seed"]),
    "reference score nan": (lambda f, w: argv(f, w / "out", "--reference-score", "nan"), ["--reference-score"]),
    "train counts 1e29": (lambda f, w: argv(f, w / "out", "--train-counts", _write(w / "c.json", "[1e29, 5, 4, 3, 2, 1]")),
                          ["{w}/c.json", "1e+29"]),
    "train counts csv not utf-8": (lambda f, w: argv(f, w / "out", "--train-counts",
                                                     _write(w / "c.csv", b"class,count\n\xff,3\n")), ["{w}/c.csv", "UTF-8"]),
    "train counts a folder": (lambda f, w: argv(f, w / "out", "--train-counts", str(w)), ["{w}"]),
    "cal split index 1e23": (lambda f, w: argv(f, w / "out", "--cal-split",
                                               _write(w / "s.json", '{"cal": [100000000000000000000000], "eval": [1]}')),
                             ["{w}/s.json", "outside"]),
    "cal split not utf-8": (lambda f, w: argv(f, w / "out", "--cal-split", _write(w / "s.json", b'{"cal": ["\xff"]}')),
                            ["{w}/s.json", "UTF-8"]),
    "sidecar not utf-8": (lambda f, w: argv(f, w / "out", arms={"vanilla": f["vanilla"], "kd": _preds_copy(f, w, "k.npz")})
                          if _write(w / "k.json", b'{"a": "\xff"}') else [], ["{w}/k.json"]),
    "sidecar lone surrogate": (lambda f, w: argv(f, w / "out", arms={"vanilla": f["vanilla"], "kd": _preds_copy(f, w, "k.npz")})
                               if _write(w / "k.json", '{"model": "m\\ud800"}') else [], ["{w}/k.json", "surrogate"]),
    "sidecar a folder": (lambda f, w: argv(f, w / "out", arms={"vanilla": f["vanilla"], "kd": _preds_copy(f, w, "k.npz")})
                         if (w / "k.json").mkdir() is None else [], ["{w}/k.json"]),
    "predictions named json": (lambda f, w: argv(f, w / "out", arms={"vanilla": f["vanilla"], "kd": _preds_copy(f, w, "k.json")}),
                               ["{w}/k.json", "*.json"]),
    "preds with NaN": (lambda f, w: argv(f, w / "out", arms={"vanilla": f["vanilla"], "kd": _preds_copy(
        f, w, "k.npz", preds=np.full(300, np.nan))}), ["{w}/k.npz", "'preds' row 0 is nan"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_or_output_is_one_line_exit_2_and_writes_nothing(files, tmp_path, capsys, case):
    w = tmp_path / "w"
    w.mkdir()
    build, names = BAD[case]
    args = build(files, w)
    before = snapshot(tmp_path)
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors print usage, then one error line
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if ": error: " in line]
    assert len(lines) == 1, captured.err
    for name in names:
        assert name.format(w=w) in lines[0], lines[0]
    assert snapshot(tmp_path) == before


def test_full_disk_leaves_no_output_folder(files, tmp_path):
    """A file-size limit hit while writing audit.json: one line, exit 2, and no folder (not even an empty one)."""
    out = tmp_path / "new" / "out"
    before = snapshot(tmp_path)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY)); "
            f"from distillab.cli import main; sys.exit(main({argv(files, out)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert str(out) in done.stderr and "File too large" in done.stderr
    assert snapshot(tmp_path) == before


def test_audit_into_an_existing_folder_replaces_only_its_files(files, tmp_path):
    """The pipeline audits into a stage folder that holds other files: they stay, audit.json is replaced."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "stage.json").write_text("{}")
    (out / "audit.json").write_text("old")
    assert main(argv(files, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "audit.md", "stage.json"]
    assert json.loads((out / "audit.json").read_text())["n"] == 300
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
