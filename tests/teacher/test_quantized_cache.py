"""A quantized teacher's cache (``distillab teacher --quantize int8``) and ``distillab cache compare``.

The int8 cache records its scheme and backend in the fingerprint (never mistaken for the full-precision
cache: a resume either way is refused, inspect and export say so); int4 is refused with one line where
torchao or CUDA is missing. The comparison's per-tier KL and disagreement equal a float64 loop and
scipy's entropy on a small synthetic case with an empty tier. Tiny models and caches: seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from distillab.cli import main
from distillab.errors import FingerprintMismatch, InputError
from distillab.io import load_predictions
from distillab.quantize import backends as B
from distillab.teacher.cache import TeacherCache
from distillab.teacher.compare import compare_caches
from distillab.teacher.hf_classifier import cache_classifier
from distillab.teacher.importer import import_logits

INT4_RUNS_HERE = B.torchao_available()[0] and torch.cuda.is_available()


@pytest.fixture(scope="module")
def caches(tmp_path_factory, tiny_bert):
    from teacher_helpers import make_dataset

    root = tmp_path_factory.mktemp("quantized-teacher")
    dataset = make_dataset()
    cache_classifier(tiny_bert, dataset, root / "fp32", dtype="fp32", progress=False, batch_size=8)
    cache_classifier(tiny_bert, dataset, root / "int8", dtype="fp32", progress=False, batch_size=8,
                     quantize="int8", quantize_backend="torch.ao")
    return root, dataset


def test_int8_cache_records_its_quantization_and_stays_close(caches, tiny_bert):
    root, dataset = caches
    full, int8 = TeacherCache.open(root / "fp32"), TeacherCache.open(root / "int8")
    assert full.quantization is None and "quantization" not in full.manifest["fingerprint"]["teacher"]
    record = int8.quantization
    assert record["scheme"] == "int8" and record["backend"] == "torch.ao" and record["requested_backend"] == "torch.ao"
    assert "classifier" in record["quantized"]["linear"] and "bert.embeddings.word_embeddings" in record["kept_float32"]
    assert record["memory_bytes"]["int8"] < record["memory_bytes"]["float32"]
    assert len(record["quantized_weights_sha256"]) == 64
    # The float teacher's identity is kept (same weights hash): what differs is what ran.
    assert int8.manifest["fingerprint"]["teacher"]["weights_sha256"] == full.manifest["fingerprint"]["teacher"]["weights_sha256"]
    assert int8.manifest["fingerprint"]["capture"]["precision"] == "int8-dynamic"
    a, b = full.logits(), int8.logits()
    assert not np.array_equal(a, b)  # int8 rounding shows
    np.testing.assert_allclose(b, a, atol=0.1 * np.abs(a).max())
    # The same capture again gives the same bytes (batches fixed by the shard; quantization deterministic).
    cache_classifier(tiny_bert, dataset, root / "int8-again", dtype="fp32", progress=False, batch_size=8,
                     quantize="int8", quantize_backend="torch.ao")
    np.testing.assert_array_equal(TeacherCache.open(root / "int8-again").logits(), b)


def test_a_quantized_cache_is_never_taken_for_the_full_one(caches, tiny_bert, tmp_path, capsys):
    root, dataset = caches
    with pytest.raises(FingerprintMismatch, match="quantization"):  # full-precision run into the int8 folder
        cache_classifier(tiny_bert, dataset, root / "int8", dtype="fp32", progress=False, batch_size=8)
    with pytest.raises(FingerprintMismatch, match="quantization"):  # and the other way round
        cache_classifier(tiny_bert, dataset, root / "fp32", dtype="fp32", progress=False, batch_size=8,
                         quantize="int8", quantize_backend="torch.ao")
    assert main(["cache", "inspect", str(root / "int8")]) == 0
    out = capsys.readouterr().out
    assert "int8-quantized by torch.ao" in out and "quantized  int8 by torch.ao" in out
    assert main(["cache", "inspect", str(root / "int8"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quantization"]["scheme"] == "int8"
    assert main(["cache", "export", str(root / "int8"), "--split", "test", "--out", str(tmp_path / "t.npz")]) == 0
    meta = load_predictions(tmp_path / "t.npz").meta
    assert meta["model"].endswith("-int8") and meta["quantization"]["backend"] == "torch.ao"


@pytest.mark.skipif(INT4_RUNS_HERE, reason="torchao and a CUDA device are here: int4 is not refused")
def test_int4_without_torchao_or_cuda_is_one_line_naming_what_is_missing(tiny_bert, tmp_path, capsys):
    with pytest.raises(InputError, match="--quantize int4: 4-bit weight-only quantization needs"):
        B.resolve_teacher_quantization("int4")
    out = tmp_path / "never"
    code = main(["teacher", "--model", tiny_bert, "--data", "r52", "--out", str(out), "--quantize", "int4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--quantize int4" in err[0] and not out.exists()
    assert ("torchao" in err[0]) or ("CUDA" in err[0])
    with pytest.raises(InputError, match="torch.ao has no 4-bit"):
        B.resolve_teacher_quantization("int4", "torch.ao")


def test_quantize_is_refused_for_causal_lm(tiny_bert, tmp_path, capsys):
    code = main(["teacher", "--model", tiny_bert, "--data", "r52", "--out", str(tmp_path / "o"), "--quantize", "int8",
                 "--causal-lm", "--topk", "2"])
    assert code == 2 and "--quantize is for sequence-classifier teachers" in capsys.readouterr().err


# --------------------------------------------------------------------------- cache compare


def _write_dataset(root) -> None:
    """5 classes, train counts 9, 7, 5, 1, 1: thresholds 6,2 give head {c0, c1}, mid {c2}, tail {c3, c4};
    thresholds 6,5.5 leave the mid tier empty."""
    import csv

    root.mkdir()
    for split, labels in (("train", np.repeat(np.arange(5), [9, 7, 5, 1, 1])), ("test", np.arange(20) % 5)):
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((f"{split} text {i}", f"c{y}") for i, y in enumerate(labels))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from distillab.data import load_dataset

    root = tmp_path_factory.mktemp("compare")
    _write_dataset(root / "data")
    dataset = load_dataset({"path": str(root / "data")})
    rows = sum(len(s.labels) for s in dataset.splits.values())
    rng = np.random.default_rng(7)
    full = rng.normal(scale=3.0, size=(rows, 5)).astype(np.float32)
    other = (full + rng.normal(scale=2.0, size=full.shape)).astype(np.float32)
    other[0] = full[0]  # one row identical: KL exactly 0
    for name, logits in (("full", full), ("other", other)):
        np.savez(root / f"{name}.npz", logits=logits)
        import_logits(root / f"{name}.npz", dataset, root / name, dtype="fp32", progress=False)
    return root, dataset, full, other


def _loop(full, other, labels, tier_of_class):
    """Per tier and overall: ([KL per row], [disagreement per row]), one row at a time in float64."""
    out = {}
    for i, y in enumerate(labels):
        p = np.exp(full[i].astype(np.float64) - full[i].max())
        p /= p.sum()
        q = np.exp(other[i].astype(np.float64) - other[i].max())
        q /= q.sum()
        kl = sum(p[j] * np.log(p[j] / q[j]) for j in range(len(p)))
        for group in (tier_of_class[int(y)], "overall"):
            kls, flips = out.setdefault(group, ([], []))
            kls.append(kl)
            flips.append(int(np.argmax(full[i]) != np.argmax(other[i])))
    return out


def test_compare_matches_a_float64_loop_and_scipy_with_an_empty_tier(synthetic):
    root, dataset, full, other = synthetic
    labels = np.concatenate([dataset.splits["train"].labels, dataset.splits["test"].labels])
    order = [dataset.classes.index(f"c{i}") for i in range(5)]  # class ids of c0..c4
    result = compare_caches(root / "full", root / "other", dataset, tier_thresholds=(6, 2))
    tier_of_class = dict(zip(order, ("head", "head", "mid", "tail", "tail")))
    expected = _loop(full, other, labels, tier_of_class)
    for group in ("head", "mid", "tail", "overall"):
        g, (kls, flips) = result["groups"][group], expected[group]
        assert g["rows"] == len(kls)
        assert g["mean_kl"] == pytest.approx(np.mean(kls), rel=1e-12, abs=1e-15)
        assert g["max_kl"] == pytest.approx(max(kls), rel=1e-12)
        assert g["disagreement_rate"] == pytest.approx(np.mean(flips)) and g["disagreements"] == sum(flips)
    assert result["groups"]["mid"]["classes"] == 1 and 0 < result["groups"]["overall"]["disagreements"]
    p, q = np.exp(full.astype(np.float64)), np.exp(other.astype(np.float64))  # scipy's entropy(p, q) is KL(p || q)
    scipy_kl = entropy(p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True), axis=1)
    assert result["groups"]["overall"]["mean_kl"] == pytest.approx(scipy_kl.mean(), rel=1e-10)

    empty = compare_caches(root / "full", root / "other", dataset, tier_thresholds=(6, 5.5))  # no count in [5.5, 6)
    assert empty["groups"]["mid"] == {"classes": 0, "rows": 0, "mean_kl": None, "median_kl": None, "max_kl": None,
                                      "disagreements": 0, "disagreement_rate": None}
    assert empty["groups"]["head"]["rows"] + empty["groups"]["tail"]["rows"] == empty["rows"] == labels.size
    same = compare_caches(root / "full", root / "full", dataset, splits=["test"])
    assert same["groups"]["overall"]["mean_kl"] == 0.0 and same["groups"]["overall"]["disagreements"] == 0
    assert same["rows"] == 20 and same["fingerprint_differences"] == []


def test_compare_cli_prints_a_table_and_json(synthetic, capsys):
    root, dataset, *_ = synthetic
    argv = ["cache", "compare", str(root / "full"), str(root / "other"), "--data", str(root / "data"),
            "--tier-thresholds", "6,5.5"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "count thresholds 6,5.5" in table and "top-1 disagree" in table
    mid = next(line for line in table.splitlines() if line.startswith("mid "))
    assert mid.split()[:3] == ["mid", "0", "0"] and "—" in mid  # an empty tier: no statistics, not zeros
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(json.dumps(compare_caches(root / "full", root / "other", dataset,
                                                          tier_thresholds=(6, 5.5))))
    assert main([*argv[:-2], "--tier-thresholds", "6"]) == 2
    assert "--tier-thresholds '6'" in capsys.readouterr().err


def test_compare_refuses_what_it_cannot_compare(synthetic, tmp_path):
    root, dataset, full, _ = synthetic
    np.savez(tmp_path / "t.npz", logits=full)
    import_logits(tmp_path / "t.npz", dataset, tmp_path / "hot", dtype="fp32", temperature=2.0, progress=False)
    with pytest.raises(InputError, match="temperature"):
        compare_caches(root / "full", tmp_path / "hot", dataset)
    np.savez(tmp_path / "test.npz", logits=full[-20:])
    import_logits(tmp_path / "test.npz", dataset, tmp_path / "test-only", splits=["test"], dtype="fp32", progress=False)
    with pytest.raises(InputError, match="lacks 23 of the 43 compared rows"):
        compare_caches(root / "full", tmp_path / "test-only", dataset)
    assert compare_caches(tmp_path / "test-only", root / "full", dataset)["rows"] == 20  # the first cache's rows
    with pytest.raises(InputError, match="split 'dev' is not in the cache"):
        compare_caches(root / "full", root / "other", dataset, splits=["dev"])


def test_the_int4_weights_digest_reads_plain_tensors_of_any_shape():
    """int4 is not runnable here; its digest helper is (torchao tensor subclasses flatten to plain tensors)."""
    layer = torch.nn.Linear(4, 3)
    layer.register_buffer("scalar", torch.tensor(2.0))  # a 0-dim tensor
    before = B._subclass_sha256(layer)
    with torch.no_grad():
        layer.weight[0, 0] += 1.0
    assert B._subclass_sha256(layer) != before and B._subclass_bytes(layer) == (12 + 3 + 1) * 4
