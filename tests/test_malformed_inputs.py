"""Malformed inputs across every command (issue 9): each must exit 2 with exactly one ``error:`` line
that names the file (and the row, column, flag or key), print no traceback, and add or change nothing
where the command writes.

Every case builds its bad input in its own folder from small shared fixtures (a 54-row CSV dataset, a
teacher cache imported from an npz, three predictions files, one audit) and calls
``distillab.cli.main`` in-process; cases marked ``subprocess`` run ``python -m distillab`` to prove the
real exit code. Nothing here trains a transformer; the whole table runs in well under 90 s.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

from distillab.cli import main

CASE_TIMEOUT_S = 30  # a case that hangs (an unchecked 1e12 allocation, an alias bomb) fails instead
INF, NAN = float("inf"), float("nan")
DELETE = object()
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))


# --------------------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Path:
    """Small valid inputs for every command, built once; cases copy and damage them, never edit them."""
    root = tmp_path_factory.mktemp("fixtures")
    words = {"a": "apple banana cherry", "b": "river ocean lake", "c": "engine wheel brake"}
    (root / "data").mkdir()
    for split, n, offset in (("train", 30, 0), ("test", 24, 100)):
        with open(root / "data" / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for i in range(n):
                label = "abc"[i % 3] if i % 5 else "a"
                writer.writerow([f"{words[label]} item {i + offset}", label])

    from distillab.data import load_dataset

    dataset = load_dataset({"path": str(root / "data")})
    rng = np.random.default_rng(0)
    labels = np.concatenate([dataset.splits[s].labels for s in ("train", "test")])
    ids = np.concatenate([dataset.splits[s].ids for s in ("train", "test")])
    logits = rng.normal(size=(labels.size, 3)).astype(np.float32)
    logits[np.arange(labels.size), labels] += 2.0
    np.savez(root / "teacher_logits.npz", logits=logits, labels=labels, ids=ids)
    test = dataset.splits["test"]
    for name, shift in (("teacher", 2.5), ("vanilla", 1.5), ("kd", 1.8)):
        scores = rng.normal(size=(len(test), 3)).astype(np.float32)
        scores[np.arange(len(test)), test.labels] += shift
        np.savez(root / f"{name}.npz", logits=scores, labels=test.labels, ids=test.ids)
    assert main(["cache", "import", str(root / "teacher_logits.npz"), "--data", str(root / "data"),
                 "--out", str(root / "cache"), "--no-progress"]) == 0
    assert main([*audit_argv(root, root / "audit")]) == 0
    (root / "config.yaml").write_text(yaml.safe_dump(base_config(root, root / "never")), encoding="utf-8")
    return root


def base_config(fx: Path, out: Path) -> dict:
    """A config `validate` accepts (checked by test_the_base_config_is_valid); cases change one key."""
    return {
        "name": "malformed", "output_dir": str(out), "data": {"path": str(fx / "data")}, "eval_split": "test",
        "tiers": {"cutoffs": [1, 2]}, "teacher": {"cache": str(fx / "cache")},
        "training": {"student": "bow", "epochs": 1, "batch_size": 8, "seed": 0, "bow_buckets": 1024, "bow_dim": 8},
        "arms": ["vanilla", "kd:T=4,alpha=0.7,name=kd"], "grid": {}, "calibration": {"seed": 1041},
        "audit": {"baseline": "vanilla", "distilled": "kd", "n_resamples": 10, "seed": 42, "bins": 15},
    }


def audit_argv(fx: Path, out: Path, *extra: str, teacher: str | None = None, arms: dict | None = None) -> list[str]:
    arms = arms or {"vanilla": str(fx / "vanilla.npz"), "kd": str(fx / "kd.npz")}
    argv = ["audit", "--teacher", teacher or str(fx / "teacher.npz"), "--baseline", "vanilla", "--tier-cutoffs", "1,2",
            "--n-resamples", "10", "--quiet", "--out", str(out)]
    for name, path in arms.items():
        argv += ["--arm", f"{name}={path}"]
    return argv + list(extra)


# --------------------------------------------------------------------------- building bad inputs


def write(path: Path, content: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def config(w: Path, fx: Path, changes: dict[str, Any]) -> str:
    """The base config with dotted keys set (``DELETE`` removes one), written as YAML."""
    values = base_config(fx, w / "out")
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value.format(w=w, fx=fx) if isinstance(value, str) else value
    return write(w / "config.yaml", yaml.safe_dump(values, allow_unicode=True))


def preds(w: Path, fx: Path, name: str, source: str = "vanilla", **arrays: Any) -> str:
    """A predictions file: the fixture's ``source`` arrays with some replaced (``DELETE`` drops one)."""
    with np.load(fx / f"{source}.npz") as npz:
        data = {key: npz[key] for key in npz.files}
    for key, value in arrays.items():
        if value is DELETE:
            data.pop(key)
        else:
            data[key] = value(data) if callable(value) else value
    path = w / name
    with open(path, "wb") as handle:  # np.savez would add '.npz' to other names
        np.savez(handle, **data)
    return str(path)


def copy_tree(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for item in source.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


def damaged_cache(w: Path, fx: Path, damage: Callable[[Path], None]) -> str:
    cache = copy_tree(fx / "cache", w / "cache")
    damage(cache)
    return str(cache)


def edit_manifest(edit: Callable[[dict], Any]) -> Callable[[Path], None]:
    def apply(cache: Path) -> None:
        manifest = json.loads((cache / "manifest.json").read_text())
        edit(manifest)
        (cache / "manifest.json").write_text(json.dumps(manifest))
    return apply


def edit_shard(make_bytes: Callable[[bytes], bytes], refresh: bool = True) -> Callable[[Path], None]:
    """Rewrite the shard's bytes; ``refresh`` updates the manifest's sha256 as a careful forger would."""
    def apply(cache: Path) -> None:
        import hashlib

        shard = cache / "shard-00000.safetensors"
        shard.write_bytes(make_bytes(shard.read_bytes()))
        if refresh:
            data = shard.read_bytes()
            edit_manifest(lambda m: m["shards"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))(cache)
    return apply


def flip_byte(data: bytes) -> bytes:
    return data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:]


def edit_header(edit: Callable[[dict], Any]) -> Callable[[Path], None]:
    def rewrite(data: bytes) -> bytes:
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
        edit(header)
        encoded = json.dumps(header).encode()
        return struct.pack("<Q", len(encoded)) + encoded + data[8 + length:]
    return edit_shard(rewrite)


def audit_json(w: Path, fx: Path, edit: Callable[[dict], Any] | None = None, raw: str | bytes | None = None) -> str:
    """A copy of the fixture audit folder whose audit.json is edited (or replaced by ``raw``)."""
    folder = copy_tree(fx / "audit", w / "audit")
    if raw is not None:
        write(folder / "audit.json", raw)
    else:
        data = json.loads((folder / "audit.json").read_text())
        edit(data)
        write(folder / "audit.json", json.dumps(data))
    return str(folder)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path, Path], list[str]]  # (case folder, fixtures) -> argv, after writing the bad input
    names: tuple[str, ...]  # each must appear in the error; {w} and {fx} expand to the two folders
    subprocess: bool = False


CASES: list[Case] = []


def case(id: str, build: Callable[[Path, Path], list[str]], *names: str, sub: bool = False) -> None:
    assert id not in {c.id for c in CASES}, id
    CASES.append(Case(id, build, names, sub))


# ---- configs: validate must catch what run would hit; run must refuse before training anything
CONFIG_CHANGES = [
    ("float-batch-size", {"training.batch_size": 8.5}, "training.batch_size"),
    ("string-reference-score", {"audit.reference_score": "high"}, "audit.reference_score"),
    ("negative-seed", {"training.seed": -1}, "training.seed"),
    ("huge-seed", {"training.seed": 1e20}, "training.seed"),
    ("infinite-epochs", {"training.epochs": INF}, "training.epochs"),
    ("nan-learning-rate", {"training.learning_rate": NAN}, "training.learning_rate"),
    ("string-learning-rate", {"training.learning_rate": "fast"}, "training.learning_rate"),
    ("bow-buckets-1e12", {"training.bow_buckets": 1e12}, "training.bow_buckets"),
    ("zero-batch-size", {"training.batch_size": 0}, "batch_size"),
    ("unknown-training-key", {"training.epochz": 2}, "epochz"),
    ("list-name", {"name": ["a", "b"]}, "name"),
    ("list-baseline", {"audit.baseline": ["vanilla"]}, "audit.baseline"),
    ("output-dir-null", {"output_dir": None}, "output_dir"),
    ("output-dir-int", {"output_dir": 123}, "output_dir"),
    ("scalar-audit-thresholds", {"audit.thresholds": 0.5}, "audit.thresholds"),
    ("nan-audit-threshold", {"audit.thresholds": [0.5, NAN]}, "audit.thresholds"),
    ("scalar-grid-T", {"grid": {"T": 4, "alpha": [0.7]}}, "grid.T"),
    ("grid-alpha-2", {"grid": {"T": [4], "alpha": [2]}}, "grid.alpha"),
    ("grid-T-inf", {"grid": {"T": [INF], "alpha": [0.7]}}, "grid.T"),
    ("tier-cutoffs-inf", {"tiers.cutoffs": [INF, 4]}, "tiers.cutoffs"),
    ("tier-cutoffs-strings", {"tiers.cutoffs": ["a", "b"]}, "tiers.cutoffs"),
    ("calibration-seed-1e20", {"calibration.seed": 1e20}, "calibration.seed"),
    ("audit-bins-1e12", {"audit.bins": 1e12}, "audit.bins"),
    ("audit-resamples-string", {"audit.n_resamples": "many"}, "audit.n_resamples"),
    ("audit-sla-nan", {"audit.sla": NAN}, "audit.sla"),
    ("audit-distilled-is-baseline", {"audit.distilled": "vanilla"}, "audit.distilled"),
    ("audit-baseline-not-an-arm", {"audit.baseline": "nobody"}, "nobody"),
    ("arm-bad-T", {"arms": ["vanilla", "kd:T=abc"]}, "kd:T=abc"),
    ("arms-scalar", {"arms": 5}, "arms"),
    ("arm-named-as-a-side-student", {"arms": ["vanilla", "kd:T=4,alpha=0.7,name=kd", "online_kd:name=o", "kd:name=o-online"]},
     "'o-online'"),
    ("arm-name-ends-in-newline", {"arms": ["vanilla", {"name": "kd\n", "objectives": [{"kd": {"T": 4}}]}]}, "'kd\\n'"),
    ("arm-setting-given-twice", {"arms": ["vanilla", "kd:T=4,alpha=0.7,T=2,name=kd"]}, "'T' is given twice"),
    ("eval-split-int", {"eval_split": 5}, "eval_split"),
    ("no-teacher", {"teacher": {}}, "teacher"),
    ("two-teachers", {"teacher.model": "x"}, "teacher"),
    ("teacher-temperature-inf", {"teacher.temperature": INF}, "teacher.temperature"),
    ("data-is-a-list", {"data": [1]}, "data"),
    ("unknown-top-level-key", {"outputdir": "x"}, "outputdir"),
    ("unknown-report-key", {"report": {"colour": "red"}}, "colour"),
    ("unknown-audit-key", {"audit.bootstraps": 5}, "bootstraps"),
    ("nan-scenario-constraint", {"report": {"scenarios": [{"id": "A", "constraints": [{"metric": "ece", "max": NAN}],
                                                           "objective": {"metric": "macro_f1", "goal": "max"}}]}},
     "report.scenarios"),
    ("scenarios-not-a-list", {"report": {"scenarios": "fast"}}, "report.scenarios"),
    ("baselines-unknown", {"baselines": ["svm"]}, "baselines"),
    ("born-again-zero-generations", {"born_again": [{"name": "ban", "arm": "kd", "generations": 0}]},
     "born_again[0].generations"),
    ("born-again-float-generations", {"born_again": [{"name": "ban", "arm": "kd", "generations": 1.5}]},
     "born_again[0].generations"),
    ("born-again-reads-no-teacher", {"born_again": [{"name": "ban", "arm": "vanilla", "generations": 2}]},
     "born_again[0].arm"),
    ("chain-one-stage", {"chains": [{"name": "ta", "compare_with": "kd", "stages": [{"name": "s", "arm": "kd"}]}]},
     "chains[0].stages"),
    ("chain-unknown-override", {"chains": [{"name": "ta", "compare_with": "kd", "stages": [
        {"name": "a", "arm": "kd", "training": {"bow_dimm": 16}}, {"name": "s", "arm": "kd"}]}]}, "bow_dimm"),
    ("chain-stage-is-an-arm", {"arms": ["vanilla", "kd:T=4,alpha=0.7,name=kd", "kd:name=ta-s"], "chains": [
        {"name": "ta", "compare_with": "kd", "stages": [{"name": "a", "arm": "kd"}, {"name": "s", "arm": "kd"}]}]},
     "ta-s"),
    ("chain-compare-with-not-an-arm", {"chains": [{"name": "ta", "compare_with": "kdd", "stages": [
        {"name": "a", "arm": "kd"}, {"name": "s", "arm": "kd"}]}]}, "chains[0].compare_with"),
    ("chain-compare-with-other-settings", {"chains": [{"name": "ta", "compare_with": "kd", "stages": [
        {"name": "a", "arm": "kd"}, {"name": "s", "arm": "kd", "training": {"bow_dim": 16}}]}]}, "chains[0].compare_with"),
]
for _id, _changes, _key in CONFIG_CHANGES:
    case(f"validate-{_id}", lambda w, fx, c=_changes: ["validate", config(w, fx, c)], "{w}/config.yaml", _key)
    case(f"run-{_id}", lambda w, fx, c=_changes: ["run", config(w, fx, c)], "{w}/config.yaml", _key)

CONFIG_TEXTS = [
    ("alias-bomb", BOMB, "alias"),
    ("not-utf8", b"name: caf\xe9\n", "UTF-8"),
    ("lone-surrogate", 'name: "a\\ud800"\n', "name"),
    ("list-document", "- a\n- b\n", "mapping"),
    ("invalid-yaml", "name: [unclosed\n", "line"),
    ("empty-file", "", "config.yaml"),
]
for _id, _text, _what in CONFIG_TEXTS:
    for _command in ("validate", "run"):
        case(f"{_command}-{_id}", lambda w, fx, t=_text, c=_command: [c, write(w / "config.yaml", t)],
             "{w}/config.yaml", _what)
case("validate-config-missing", lambda w, fx: ["validate", str(w / "nope.yaml")], "{w}/nope.yaml")
case("run-config-missing", lambda w, fx: ["run", str(w / "nope.yaml")], "{w}/nope.yaml")
case("validate-config-is-a-folder", lambda w, fx: ["validate", str(w)], "{w}")
case("run-config-is-a-folder", lambda w, fx: ["run", str(w)], "{w}")
case("run-out-is-a-file", lambda w, fx: ["run", str(fx / "config.yaml"), "--out", write(w / "out", "x")], "{w}/out")
case("run-out-under-a-file", lambda w, fx: ["run", str(fx / "config.yaml"), "--out", str(Path(write(w / "f", "x")) / "o")],
     "{w}/f")
case("run-restart-unknown-stage", lambda w, fx: ["run", config(w, fx, {}), "--restart", "bogus"], "--restart")
case("run-data-repeated-column", lambda w, fx: ["run", config(w, fx, {"data": {"path": write(
    w / "d.csv", "text,label,text\na,x,b\nc,y,d\n")}})], "{w}/d.csv", "'text'")
case("run-teacher-cache-missing", lambda w, fx: ["run", config(w, fx, {"teacher.cache": "{w}/nocache"})], "{w}/nocache")
case("run-teacher-import-not-npz", lambda w, fx: ["run", config(w, fx, {"teacher": {"import_npz": write(
    w / "t.npz", "not a zip")}})], "{w}/t.npz")
case("run-eval-split-missing", lambda w, fx: ["run", config(w, fx, {"eval_split": "validation"})], "validation")

# ---- data inspect
DATA_FILES = [
    ("repeated-column", "d.csv", b"text,label,text\na,x,b\n", "column 'text'"),
    ("header-only", "d.csv", b"text,label\n", "no data rows"),
    ("too-many-fields", "d.csv", b"text,label\na,x\nb,y,z\n", "row 1"),
    ("not-utf8-csv", "d.csv", b"text,label\na,x\ncaf\xe9,y\n", "line 3"),
    ("not-utf8-jsonl", "d.jsonl", b'{"text": "caf\xe9", "label": "x"}\n', "line 1"),
    ("surrogate-jsonl", "d.jsonl", b'{"text": "a\\ud800", "label": "x"}\n', "row 0"),
    ("jsonl-not-object", "d.jsonl", b'{"text": "a", "label": "x"}\n"b"\n', "row 1"),
    ("jsonl-bad-json", "d.jsonl", b'{"text": "a", "label": "x"}\n{oops\n', "line 2"),
    ("jsonl-list-label", "d.jsonl", b'{"text": "a", "label": [1]}\n', "label column 'label'"),
    ("jsonl-huge-number", "d.jsonl", b'{"text": "a", "label": 1e999}\n', "row 0"),
    ("jsonl-repeated-key", "d.jsonl", b'{"text": "a", "label": "x", "label": "y"}\n', "'label'"),
    ("json-object-read-as-spec", "d.json", b'{"text": "a"}', "unknown key(s) text"),
    ("no-label-column", "d.csv", b"text,labels\na,x\n", "'label'"),
    ("bad-parquet", "d.parquet", b"PAR1 not really", "Parquet"),
]
for _id, _name, _content, _what in DATA_FILES:
    case(f"data-inspect-{_id}", lambda w, fx, n=_name, c=_content: ["data", "inspect", write(w / n, c)],
         f"{{w}}/{_name}", _what)
case("data-inspect-spec-alias-bomb", lambda w, fx: ["data", "inspect", write(w / "s.yaml", BOMB)], "{w}/s.yaml", "alias")
case("data-inspect-spec-not-utf8", lambda w, fx: ["data", "inspect", write(w / "s.yaml", b"path: caf\xe9\n")], "{w}/s.yaml")
case("data-inspect-spec-wrong-type", lambda w, fx: ["data", "inspect", write(w / "s.json", '{"path": 5}')], "path")
case("data-inspect-inline-json-broken", lambda w, fx: ["data", "inspect", '{"path": '], "inline JSON")
case("data-inspect-merge-map-not-utf8", lambda w, fx: ["data", "inspect", json.dumps(
    {"path": str(fx / "data"), "merge_map": write(w / "m.json", b'{"a": "\xff"}')})], "{w}/m.json")
case("data-inspect-label-list-surrogate", lambda w, fx: ["data", "inspect", json.dumps(
    {"path": str(fx / "data"), "label_list": write(w / "l.json", '["a", "b\\ud800", "c"]')})], "{w}/l.json")
case("data-inspect-indices-folder", lambda w, fx: ["data", "inspect", json.dumps(
    {"path": str(fx / "data"), "split_indices": {"val": {"indices": str(w)}}})], "{w}")

case("audit-sidecar-recipe-not-a-mapping", lambda w, fx: audit_argv(fx, w / "out", arms={
    "vanilla": str(fx / "vanilla.npz"), "kd": preds(w, fx, "kd.npz", "kd")}) if write(w / "kd.json", '{"recipe": "kd"}') else [],
     "{w}/kd.json", "'recipe'")

# ---- cache import
IMPORT_ARRAYS = [
    ("not-a-zip", None, "t.npz"),
    ("logits-1d", {"logits": lambda d: d["logits"][:, 0]}, "'logits'"),
    ("nan-logits", {"logits": lambda d: np.where(np.arange(d["logits"].size).reshape(d["logits"].shape) == 4, np.nan,
                                                 d["logits"]).astype(np.float32)}, "t.npz"),
    ("wrong-rows", {"logits": lambda d: d["logits"][:-1], "labels": DELETE, "ids": DELETE}, "t.npz"),
    ("labels-disagree", {"labels": lambda d: (d["labels"] + 1) % 3}, "t.npz"),
    ("duplicate-ids", {"ids": lambda d: np.array(["x"] * d["ids"].size)}, "'ids'"),
]


def import_file(w: Path, fx: Path, arrays: dict | None) -> str:
    if arrays is None:
        return write(w / "t.npz", b"not a zip")
    with np.load(fx / "teacher_logits.npz") as npz:
        data = {key: npz[key] for key in npz.files}
    for key, value in arrays.items():
        if value is DELETE:
            data.pop(key)
        else:
            data[key] = value(data)
    with open(w / "t.npz", "wb") as handle:
        np.savez(handle, **data)
    return str(w / "t.npz")


for _id, _arrays, _what in IMPORT_ARRAYS:
    case(f"cache-import-{_id}", lambda w, fx, a=_arrays: ["cache", "import", import_file(w, fx, a), "--data",
                                                          str(fx / "data"), "--out", str(w / "c"), "--no-progress"],
         "{w}/t.npz", _what)
case("cache-import-object-array", lambda w, fx: ["cache", "import", preds(w, fx, "t.npz", logits=np.array(
    [{"a": 1}] * 24, dtype=object)), "--data", str(fx / "data"), "--out", str(w / "c")], "{w}/t.npz")
IMPORT_FLAGS = [
    ("temperature-zero", ["--temperature", "0"], "--temperature"),
    ("temperature-inf", ["--temperature", "inf"], "--temperature"),
    ("temperature-nan", ["--temperature", "nan"], "--temperature"),
    ("already-scaled-negative", ["--already-scaled-by", "-1"], "--already-scaled-by"),
    ("shard-rows-zero", ["--shard-rows", "0"], "--shard-rows"),
    ("split-unknown", ["--split", "nope"], "nope"),
]
for _id, _flags, _what in IMPORT_FLAGS:
    case(f"cache-import-{_id}", lambda w, fx, f=_flags: ["cache", "import", str(fx / "teacher_logits.npz"), "--data",
                                                         str(fx / "data"), "--out", str(w / "c"), *f], _what)
case("cache-import-out-is-a-file", lambda w, fx: ["cache", "import", str(fx / "teacher_logits.npz"), "--data",
                                                  str(fx / "data"), "--out", write(w / "c", "x")], "{w}/c")
case("cache-import-out-under-a-file", lambda w, fx: ["cache", "import", str(fx / "teacher_logits.npz"), "--data",
                                                     str(fx / "data"), "--out", str(Path(write(w / "f", "x")) / "c")],
     "{w}/f")
case("cache-import-data-repeated-column", lambda w, fx: ["cache", "import", str(fx / "teacher_logits.npz"), "--data",
                                                         write(w / "d.csv", "text,label,text\na,x,b\n"), "--out",
                                                         str(w / "c")], "{w}/d.csv")
case("cache-import-file-missing", lambda w, fx: ["cache", "import", str(w / "none.npz"), "--data", str(fx / "data"),
                                                 "--out", str(w / "c")], "{w}/none.npz", sub=True)

# ---- cache inspect / export, and the same damaged caches used by train
DAMAGE = [
    ("bit-flipped-shard", edit_shard(flip_byte, refresh=False), "shard-00000.safetensors"),
    ("truncated-shard", edit_shard(lambda b: b[:-20]), "shard-00000.safetensors"),
    ("header-length-2-40", edit_shard(lambda b: struct.pack("<Q", 2 ** 40) + b[8:]), "shard-00000.safetensors"),
    ("header-length-2-64", edit_shard(lambda b: struct.pack("<Q", 2 ** 64 - 1) + b[8:]), "shard-00000.safetensors"),
    ("header-not-object", edit_shard(lambda b: struct.pack("<Q", 6) + b"[1, 2]"), "shard-00000.safetensors"),
    ("offsets-past-eof", edit_header(lambda h: h["logits"].__setitem__("data_offsets", [0, 10 ** 9])),
     "shard-00000.safetensors"),
    ("negative-shape", edit_header(lambda h: h["logits"].__setitem__("shape", [-54, -3])), "shard-00000.safetensors"),
    ("ids-not-json", edit_header(lambda h: h["__metadata__"].__setitem__("ids", "[oops")), "shard-00000.safetensors"),
    ("manifest-no-shards", edit_manifest(lambda m: m.pop("shards")), "manifest.json"),
    ("manifest-empty-shards", edit_manifest(lambda m: m.__setitem__("shards", [])), "manifest.json"),
    ("manifest-list", lambda c: write(c / "manifest.json", "[1, 2]"), "manifest.json"),
    ("manifest-not-utf8", lambda c: write(c / "manifest.json", b'{"format": "\xff"}'), "manifest.json"),
    ("lying-shard-rows", edit_manifest(lambda m: m.__setitem__("shard_rows", 4)), "manifest.json"),
    ("num-classes-not-a-number", edit_manifest(lambda m: m.__setitem__("num_classes", "3x")), "manifest.json"),
    ("shard-path-dotdot", edit_manifest(lambda m: m["shards"][0].__setitem__("file", "../elsewhere")), "manifest.json"),
    ("shard-path-dev-zero", edit_manifest(lambda m: m["shards"][0].__setitem__("file", "/dev/zero")), "manifest.json"),
    ("manifest-missing", lambda c: (c / "manifest.json").unlink(), "{w}/cache"),
]
for _id, _damage, _what in DAMAGE:
    case(f"cache-inspect-{_id}", lambda w, fx, d=_damage: ["cache", "inspect", damaged_cache(w, fx, d)], "{w}/cache", _what)
for _id, _damage, _what in DAMAGE[:8:2] + DAMAGE[8:17:3]:
    case(f"cache-export-{_id}", lambda w, fx, d=_damage: ["cache", "export", damaged_cache(w, fx, d), "--out",
                                                          str(w / "e.npz")], "{w}/cache", _what)
    case(f"train-cache-{_id}", lambda w, fx, d=_damage: ["train", "--data", str(fx / "data"), "--cache",
                                                         damaged_cache(w, fx, d), "--out", str(w / "o"), "--arm", "kd",
                                                         "--epochs", "1", "--bow-buckets", "1024"],
         "{w}/cache", _what)
case("cache-inspect-not-a-folder", lambda w, fx: ["cache", "inspect", write(w / "c", "x")], "{w}/c")
case("cache-export-split-unknown", lambda w, fx: ["cache", "export", str(fx / "cache"), "--split", "nope", "--out",
                                                  str(w / "e.npz")], "nope")
case("cache-export-out-is-a-folder", lambda w, fx: ["cache", "export", str(fx / "cache"), "--out", str(w)], "{w}")
case("cache-export-out-under-a-file", lambda w, fx: ["cache", "export", str(fx / "cache"), "--out",
                                                     str(Path(write(w / "f", "x")) / "e.npz")], "{w}/f")
COMPARE = ["cache", "compare", "{fx}/cache", "{fx}/cache", "--data", "{fx}/data"]
case("cache-compare-damaged-other", lambda w, fx: ["cache", "compare", str(fx / "cache"),
                                                   damaged_cache(w, fx, edit_shard(flip_byte, refresh=False)),
                                                   "--data", str(fx / "data")], "{w}/cache", "shard-00000.safetensors")
case("cache-compare-split-unknown", lambda w, fx: expand(COMPARE + ["--split", "nope"], w, fx), "nope")
case("cache-compare-thresholds-one-number", lambda w, fx: expand(COMPARE + ["--tier-thresholds", "6"], w, fx),
     "--tier-thresholds")
case("cache-compare-cutoffs-not-ranks", lambda w, fx: expand(COMPARE + ["--tier-cutoffs", "1.5,2"], w, fx),
     "--tier-cutoffs")
case("cache-compare-train-split-unknown", lambda w, fx: expand(COMPARE + ["--train-split", "dev"], w, fx), "dev")
case("cache-compare-other-missing", lambda w, fx: ["cache", "compare", str(fx / "cache"), str(w / "none"), "--data",
                                                   str(fx / "data")], "{w}/none")

# ---- train / grid
TRAIN = ["train", "--data", "{fx}/data", "--out", "{w}/o", "--epochs", "1", "--bow-buckets", "1024"]
TRAIN_FLAGS = [
    ("epochs-inf", ["--epochs", "inf"], "--epochs"),
    ("epochs-nan", ["--epochs", "nan"], "--epochs"),
    ("seed-negative", ["--seed", "-1"], "--seed"),
    ("seed-1e20", ["--seed", "1e20"], "--seed"),
    ("seed-2-70", ["--seed", str(2 ** 70)], "--seed"),
    ("batch-size-zero", ["--batch-size", "0"], "--batch-size"),
    ("batch-size-float", ["--batch-size", "8.5"], "--batch-size"),
    ("bow-buckets-1e12", ["--bow-buckets", "1000000000000"], "--bow-buckets"),
    ("max-steps-negative", ["--max-steps", "-1"], "--max-steps"),
    ("accumulation-zero", ["--gradient-accumulation-steps", "0"], "--gradient-accumulation-steps"),
    ("warmup-ratio-2", ["--warmup-ratio", "2"], "--warmup-ratio"),
    ("max-grad-norm-nan", ["--max-grad-norm", "nan"], "--max-grad-norm"),
    ("learning-rate-negative", ["--learning-rate", "-1"], "--learning-rate"),
    ("precision-unknown", ["--precision", "fp8"], "--precision"),
    ("arm-unknown", ["--arm", "magic"], "magic"),
    ("arm-bad-T", ["--arm", "kd:T=abc"], "kd:T=abc"),
    ("kd-without-cache", ["--arm", "kd"], "--cache"),
    ("cache-missing", ["--arm", "kd", "--cache", "{w}/nocache"], "{w}/nocache"),
    ("eval-split-unknown", ["--eval-split", "nope"], "nope"),
    ("train-split-unknown", ["--train-split", "nope"], "nope"),
    ("student-layers-garbage", ["--student-layers", "first:x"], "--student-layers"),
]


def expand(argv: list[str], w: Path, fx: Path) -> list[str]:
    return [a.format(w=w, fx=fx) for a in argv]


for _id, _flags, _what in TRAIN_FLAGS:
    case(f"train-{_id}", lambda w, fx, f=_flags: expand(TRAIN + f, w, fx), _what)
case("train-learning-rate-inf", lambda w, fx: expand(TRAIN + ["--learning-rate", "inf"], w, fx), "--learning-rate")
case("train-out-is-a-file", lambda w, fx: expand(TRAIN, w, fx)[:-4] + ["--epochs", "1", "--out", write(w / "o", "x")],
     "{w}/o")
case("train-data-repeated-column", lambda w, fx: ["train", "--data", write(w / "d.csv", "text,label,text\na,x,b\n"),
                                                  "--out", str(w / "o")], "{w}/d.csv")
case("train-data-missing", lambda w, fx: ["train", "--data", str(w / "nothing.csv"), "--out", str(w / "o")],
     "nothing.csv", sub=True)
GRID = ["grid", "--data", "{fx}/data", "--cache", "{fx}/cache", "--out", "{w}/o", "--epochs", "1", "--bow-buckets", "1024"]
GRID_FLAGS = [
    ("T-inf", ["--T", "inf"], "T=inf"),
    ("T-words", ["--T", "a,b"], "--T"),
    ("T-zero", ["--T", "0,4"], "T=0"),
    ("alpha-2", ["--alpha", "2"], "alpha=2"),
    ("alpha-nan", ["--alpha", "nan"], "alpha=nan"),
    ("seed-negative", ["--seed", "-1"], "--seed"),
]
for _id, _flags, _what in GRID_FLAGS:
    case(f"grid-{_id}", lambda w, fx, f=_flags: expand(GRID + f, w, fx), _what)
case("grid-without-cache", lambda w, fx: ["grid", "--data", str(fx / "data"), "--out", str(w / "o")], "--cache")

# ---- calibrate
CALIBRATE = [
    ("file-missing", lambda w, fx: ["calibrate", str(w / "p.npz")], "{w}/p.npz"),
    ("not-npz", lambda w, fx: ["calibrate", write(w / "p.npz", "hello")], "{w}/p.npz"),
    ("predictions-named-json", lambda w, fx: ["calibrate", preds(w, fx, "p.json")], "{w}/p.json"),
    ("nan-logits", lambda w, fx: ["calibrate", preds(w, fx, "p.npz", logits=lambda d: np.where(
        np.arange(d["logits"].size).reshape(d["logits"].shape) == 7, np.nan, d["logits"]))], "{w}/p.npz", "row 2"),
    ("labels-out-of-range", lambda w, fx: ["calibrate", preds(w, fx, "p.npz", labels=lambda d: d["labels"] + 5)],
     "{w}/p.npz"),
    ("cal-split-not-json", lambda w, fx: ["calibrate", preds(w, fx, "p.npz"), "--cal-split", write(w / "s.json", "{")],
     "{w}/s.json"),
    ("cal-split-not-utf8", lambda w, fx: ["calibrate", preds(w, fx, "p.npz"), "--cal-split",
                                          write(w / "s.json", b'{"cal": [0], "eval": ["\xff"]}')], "{w}/s.json"),
    ("cal-split-index-1e23", lambda w, fx: ["calibrate", preds(w, fx, "p.npz"), "--cal-split",
                                            write(w / "s.json", '{"cal": [1e23], "eval": [1]}')], "{w}/s.json"),
    ("cal-split-overlap", lambda w, fx: ["calibrate", preds(w, fx, "p.npz"), "--cal-split",
                                         write(w / "s.json", '{"cal": [0, 1], "eval": [1, 2]}')], "{w}/s.json"),
    ("split-seed-negative", lambda w, fx: ["calibrate", preds(w, fx, "p.npz"), "--split-seed", "-1"], "--split-seed"),
    ("split-seed-1e20", lambda w, fx: ["calibrate", preds(w, fx, "p.npz"), "--split-seed", "1e20"], "--split-seed"),
    ("out-is-the-input", lambda w, fx: ["calibrate", preds(w, fx, "p.npz"), "--no-sidecar", "--out", str(w / "p.npz")],
     "{w}/p.npz"),
    ("out-is-a-folder", lambda w, fx: ["calibrate", preds(w, fx, "p.npz"), "--no-sidecar", "--out", str(w)], "{w}"),
    ("out-under-a-file", lambda w, fx: ["calibrate", preds(w, fx, "p.npz"), "--out",
                                        str(Path(write(w / "f", "x")) / "c.json")], "{w}/f"),
    ("sidecar-is-a-folder", lambda w, fx: ["calibrate", preds(w, fx, "p.npz")] if (w / "p.json").mkdir() is None
     else [], "{w}/p.json"),
    ("sidecar-not-utf8", lambda w, fx: ["calibrate", preds(w, fx, "p.npz")] if write(w / "p.json", b'{"a": "\xff"}')
     else [], "{w}/p.json"),
    ("sidecar-is-a-list", lambda w, fx: ["calibrate", preds(w, fx, "p.npz")] if write(w / "p.json", "[1]") else [],
     "{w}/p.json"),
]
for _id, _build, *_names in CALIBRATE:
    case(f"calibrate-{_id}", _build, *_names)

# ---- audit
AUDIT_FLAGS = [
    ("bins-1e12", ["--bins", "1e12"], "--bins"),
    ("bins-zero", ["--bins", "0"], "--bins"),
    ("bins-huge-int", ["--bins", "1000000000000"], "--bins"),
    ("tier-cutoffs-inf", ["--tier-cutoffs", "inf,4"], "--tier-cutoffs"),
    ("tier-cutoffs-one-number", ["--tier-cutoffs", "4"], "--tier-cutoffs"),
    ("tier-cutoffs-words", ["--tier-cutoffs", "a,b"], "--tier-cutoffs"),
    ("tier-thresholds-nan", ["--tier-thresholds", "nan,4"], "--tier-thresholds"),
    ("n-resamples-zero", ["--n-resamples", "0"], "--n-resamples"),
    ("n-resamples-1e12", ["--n-resamples", "1000000000000"], "--n-resamples"),
    ("seed-negative", ["--seed", "-1"], "--seed"),
    ("seed-1e20", ["--seed", "1e20"], "--seed"),
    ("thresholds-nan", ["--thresholds", "0.5,nan"], "--thresholds"),
    ("thresholds-2", ["--thresholds", "2"], "--thresholds"),
    ("sla-2", ["--sla", "2"], "--sla"),
    ("sla-nan", ["--sla", "nan"], "--sla"),
    ("reference-score-nan", ["--reference-score", "nan"], "--reference-score"),
    ("reference-score-2", ["--reference-score", "2"], "--reference-score"),
    ("baseline-unknown", ["--baseline", "nobody"], "nobody"),
    ("distilled-unknown", ["--distilled", "nobody"], "nobody"),
    ("calibrate-unknown", ["--calibrate", "nobody"], "nobody"),
]
for _id, _flags, _what in AUDIT_FLAGS:
    case(f"audit-{_id}", lambda w, fx, f=_flags: audit_argv(fx, w / "out", *f), _what)
AUDIT_FILES = [
    ("train-counts-not-utf8", "--train-counts", "counts.json", b'{"a": 3, "b": "\xff"}'),
    ("train-counts-1e29", "--train-counts", "counts.json", '{"a": 1e29, "b": 3, "c": 2}'),
    ("train-counts-negative", "--train-counts", "counts.json", "[-3, 2, 1]"),
    ("train-counts-wrong-length", "--train-counts", "counts.json", "[3, 2]"),
    ("train-counts-csv-garbage", "--train-counts", "counts.csv", "label,count\na,many\n"),
    ("cal-split-index-1e23", "--cal-split", "split.json", '{"cal": [1e23], "eval": [0]}'),
    ("cal-split-not-utf8", "--cal-split", "split.json", b'{"cal": ["\xff"]}'),
    ("classes-not-utf8", "--classes", "classes.json", b'["a", "b", "\xff"]'),
    ("classes-wrong-count", "--classes", "classes.json", '["a", "b"]'),
    ("classes-surrogate", "--classes", "classes.json", '["a", "b", "c\\ud800"]'),
]
for _id, _flag, _name, _content in AUDIT_FILES:
    case(f"audit-{_id}", lambda w, fx, f=_flag, n=_name, c=_content: audit_argv(fx, w / "out", f, write(w / n, c)),
         f"{{w}}/{_name}")
case("audit-train-counts-folder", lambda w, fx: audit_argv(fx, w / "out", "--train-counts", str(w)), "{w}")
case("audit-teacher-missing", lambda w, fx: audit_argv(fx, w / "out", teacher=str(w / "t.npz")), "{w}/t.npz")
case("audit-arm-without-name", lambda w, fx: audit_argv(fx, w / "out", "--arm", str(fx / "kd.npz")), "--arm")
case("audit-arm-named-twice", lambda w, fx: audit_argv(fx, w / "out", "--arm", f"kd={fx / 'vanilla.npz'}"), "kd")
case("audit-arm-nan-logits", lambda w, fx: audit_argv(fx, w / "out", arms={
    "vanilla": str(fx / "vanilla.npz"), "kd": preds(w, fx, "kd.npz", logits=lambda d: np.full_like(d["logits"], np.nan))}),
    "{w}/kd.npz")
case("audit-arm-labels-disagree", lambda w, fx: audit_argv(fx, w / "out", arms={
    "vanilla": str(fx / "vanilla.npz"), "kd": preds(w, fx, "kd.npz", labels=lambda d: (d["labels"] + 1) % 3)}),
    "{w}/kd.npz")
case("audit-arm-ids-disagree", lambda w, fx: audit_argv(fx, w / "out", arms={
    "vanilla": str(fx / "vanilla.npz"), "kd": preds(w, fx, "kd.npz", ids=lambda d: np.char.add(d["ids"], "x"))}),
    "{w}/kd.npz")
case("audit-arm-fewer-classes", lambda w, fx: audit_argv(fx, w / "out", arms={
    "vanilla": str(fx / "vanilla.npz"), "kd": preds(w, fx, "kd.npz", logits=lambda d: d["logits"][:, :2],
                                                    labels=lambda d: d["labels"] % 2)}), "{w}/kd.npz")
case("audit-arm-named-json", lambda w, fx: audit_argv(fx, w / "out", arms={
    "vanilla": str(fx / "vanilla.npz"), "kd": preds(w, fx, "kd.json")}), "{w}/kd.json")
case("audit-arm-sidecar-not-utf8", lambda w, fx: audit_argv(fx, w / "out", arms={
    "vanilla": str(fx / "vanilla.npz"), "kd": preds(w, fx, "kd.npz")}) if write(w / "kd.json", b'{"x": "\xff"}')
    else [], "{w}/kd.json")
case("audit-arm-sidecar-folder", lambda w, fx: audit_argv(fx, w / "out", arms={
    "vanilla": str(fx / "vanilla.npz"), "kd": preds(w, fx, "kd.npz")}) if (w / "kd.json").mkdir() is None
    else [], "{w}/kd.json")
case("audit-arm-tiers-unknown", lambda w, fx: audit_argv(fx, w / "out", arms={
    "vanilla": str(fx / "vanilla.npz"), "kd": preds(w, fx, "kd.npz", tiers=lambda d: np.array(["top"] * d["labels"].size))}),
    "{w}/kd.npz")
case("audit-out-is-a-file", lambda w, fx: audit_argv(fx, Path(write(w / "out", "x"))), "{w}/out")
case("audit-out-under-a-file", lambda w, fx: audit_argv(fx, Path(write(w / "f", "x")) / "out"), "{w}/f", sub=True)

# ---- report
REPORT_AUDITS = [
    ("not-json", None, "{"),
    ("not-utf8", None, b'{"arms": "\xff"}'),
    ("a-list", None, "[1, 2]"),
    ("nested-too-deeply", None, "[" * 100000),
    ("arms-as-a-list", lambda a: a.__setitem__("arms", list(a["arms"].values())), None),
    ("arms-missing", lambda a: a.pop("arms"), None),
    ("string-macro-f1", lambda a: a["arms"]["kd"]["overall"].__setitem__("macro_f1", "high"), None),
    ("nan-ece", lambda a: a["arms"]["kd"]["overall"].__setitem__("ece", "NaN"), None),
    ("minimal-arm-block", lambda a: a["arms"].__setitem__("kd", {"overall": {"macro_f1": 0.5}}), None),
    ("tiers-not-a-mapping", lambda a: a.__setitem__("tiers", 5), None),
    ("bootstrap-garbage", lambda a: a.__setitem__("bootstrap", "x"), None),
    ("num-classes-string", lambda a: a.__setitem__("num_classes", "three"), None),
]
for _id, _edit, _raw in REPORT_AUDITS:
    case(f"report-audit-{_id}", lambda w, fx, e=_edit, r=_raw: ["report", audit_json(w, fx, e, r), "--out", str(w / "r")],
         "{w}/audit/audit.json")
case("report-audit-dir-empty", lambda w, fx: ["report", str(w), "--out", str(w / "r")], "{w}")
case("report-audit-missing", lambda w, fx: ["report", str(w / "nope"), "--out", str(w / "r")], "{w}/nope", sub=True)
SCENARIOS = [
    ("not-utf8", "s.yaml", b"- id: caf\xe9\n"),
    ("alias-bomb", "s.yaml", BOMB),
    ("nan-constraint", "s.yaml", "- id: A\n  constraints: [{metric: ece, max: .nan}]\n  objective: {metric: macro_f1}\n"),
    ("unknown-metric", "s.yaml", "- id: A\n  objective: {metric: speed}\n"),
    ("not-a-list", "s.yaml", "fast\n"),
    ("json-broken", "s.json", "[{"),
    ("unknown-key", "s.yaml", "- id: A\n  objective: {metric: macro_f1}\n  colour: red\n"),
]
for _id, _name, _content in SCENARIOS:
    case(f"report-scenarios-{_id}", lambda w, fx, n=_name, c=_content: [
        "report", str(fx / "audit"), "--out", str(w / "r"), "--scenarios", write(w / n, c)], f"{{w}}/{_name}")
case("report-out-is-a-file", lambda w, fx: ["report", str(fx / "audit"), "--out", write(w / "r", "x")], "{w}/r")
case("report-out-under-a-file", lambda w, fx: ["report", str(fx / "audit"), "--out", str(Path(write(w / "f", "x")) / "r")],
     "{w}/f")

# ---- check-loss
LOSSES = [
    ("exits-zero", "import sys\ndef loss(s, t, y, T, alpha):\n    sys.exit(0)\n", "loss"),
    ("returns-none", "def loss(s, t, y, T, alpha):\n    return None\n", "loss"),
    ("raises", "def loss(s, t, y, T, alpha):\n    raise ValueError('boom')\n", "loss"),
    ("not-callable", "loss = 3\n", "loss"),
    ("syntax-error", "def loss(:\n", "l.py"),
    ("import-fails", "import no_such_module_here\n", "l.py"),
    ("wrong-arity", "def loss(s):\n    return s.sum()\n", "loss"),
    ("returns-string", "def loss(s, t, y, T, alpha):\n    return 'small'\n", "loss"),
]
for _id, _source, _what in LOSSES:
    case(f"check-loss-{_id}", lambda w, fx, s=_source: ["check-loss", f"{write(w / 'l.py', s)}:loss"], _what)
case("check-loss-os-exit", lambda w, fx: ["check-loss", write(w / "l.py", "import os\ndef loss(s, t, y, T, alpha):\n"
                                          "    os._exit(0)\n") + ":loss"], "loss", sub=True)
case("check-loss-etc-passwd", lambda w, fx: ["check-loss", "/etc/passwd:x"], "/etc/passwd", sub=True)
case("check-loss-no-colon", lambda w, fx: ["check-loss", "losses"], "losses")
case("check-loss-module-missing", lambda w, fx: ["check-loss", "no_such_loss_module_xyz:kd"], "no_such_loss_module_xyz")
case("check-loss-attribute-missing", lambda w, fx: ["check-loss", write(w / "l.py", "x = 1\n") + ":kd"], "kd")
case("check-loss-a-folder", lambda w, fx: ["check-loss", f"{w}/:kd"], "{w}")
case("check-loss-T-nan", lambda w, fx: ["check-loss", write(w / "l.py", "def loss(s, t, y):\n    return (s - t).sum()\n")
                                        + ":loss", "--T", "nan"], "--T")
case("check-loss-alpha-2", lambda w, fx: ["check-loss", write(w / "l.py", "def loss(s, t, y):\n    return (s - t).sum()\n")
                                          + ":loss", "--alpha", "2"], "--alpha")

# ---- teacher (flags are checked before any model is loaded)
TEACHER = ["teacher", "--model", "{w}/model", "--data", "{fx}/data", "--out", "{w}/c", "--no-progress"]
TEACHER_FLAGS = [
    ("model-missing", [], "{w}/model"),
    ("temperature-zero", ["--temperature", "0"], "--temperature"),
    ("temperature-nan", ["--temperature", "nan"], "--temperature"),
    ("batch-size-zero", ["--batch-size", "0"], "--batch-size"),
    ("max-length-zero", ["--max-length", "0"], "--max-length"),
    ("shard-rows-negative", ["--shard-rows", "-1"], "--shard-rows"),
    ("topk-negative", ["--topk", "-1"], "--topk"),
    ("data-missing", ["--data", "{w}/none.csv"], "{w}/none.csv"),
    ("quantize-unknown", ["--quantize", "int3"], "--quantize"),
    ("quantize-causal-lm", ["--quantize", "int8", "--causal-lm", "--topk", "2"], "--quantize"),
]
for _id, _flags, _what in TEACHER_FLAGS:
    case(f"teacher-{_id}", lambda w, fx, f=_flags: expand(TEACHER + f, w, fx), _what)
case("teacher-data-repeated-column", lambda w, fx: ["teacher", "--model", str(w / "model"), "--data",
                                                    write(w / "d.csv", "text,label,text\na,x,b\n"), "--out",
                                                    str(w / "c")], "{w}/d.csv")


# --------------------------------------------------------------------------- the checks

def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file (size, mtime) and folder below ``folders``: what a failed command must not change.

    A folder's own mtime is left out: a command may create and remove a temporary file or lock in it.
    """
    found = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            info = path.lstat()
            found[str(path)] = (info.st_size, info.st_mtime_ns) if not path.is_dir() else (-1, 0)
    return found


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout(f"no answer within {CASE_TIMEOUT_S} s")


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "distillab", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return done.returncode, done.stdout, done.stderr


def error_block(err: str) -> list[str]:
    """The ``distillab CMD: error:`` line and what follows it.

    Before it may come argparse's usage block and progress lines (run's ``[stage]`` lines, progress
    bars), but nothing that looks like another error.
    """
    lines = err.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^distillab [\w -]+: error: \S", line)), None)
    assert start is not None, f"no 'distillab CMD: error:' line in stderr: {err[-1500:]!r}"
    before = [line for line in lines[:start] if not line.startswith("usage:") and not line.startswith(" ")]
    assert not [line for line in before if re.search(r"error|Error|Traceback", line)], before
    return lines[start:]


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id) for c in CASES])
def test_malformed_input_is_one_line_exit_2_and_writes_nothing(c: Case, fx, tmp_path, capsys, monkeypatch):
    w = tmp_path / "w"
    w.mkdir()
    monkeypatch.chdir(w)  # anything written relative to the cwd lands where the snapshot sees it
    argv = c.build(w, fx)
    assert argv, "the case built no command"
    before = snapshot(w, fx)
    if c.subprocess:
        code, out, err = run_subprocess(argv, w)
    else:
        code, out, err = run_in_process(argv, capsys)
    assert "Traceback" not in out + err, err[-3000:]
    assert code == 2, f"exit {code}; stderr: {err[-1500:]!r}"
    lines = error_block(err)
    # One error: one line, except that a config error lists each of its problems on an indented line below.
    assert len([line for line in lines if not line.startswith("  ")]) == 1, f"expected one error line: {lines[:6]}"
    message = "\n".join(lines)
    for name in c.names:
        expected = name.format(w=w, fx=fx)
        accepted = (expected, expected.lstrip("-").replace("-", "_")) if expected.startswith("--") else (expected,)
        assert any(a in message for a in accepted), f"the error does not name {expected!r}: {message}"
    after = snapshot(w, fx)
    changed = sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))
    assert not changed, f"a failed command left new or changed files: {changed[:5]}"


def test_the_table_is_large_and_covers_every_command():
    commands = {c.id.split("-")[0] for c in CASES} | {"-".join(c.id.split("-")[:2]) for c in CASES}
    for command in ("run", "validate", "data-inspect", "teacher", "cache-inspect", "cache-import", "cache-export",
                    "train", "grid", "calibrate", "audit", "report", "check-loss"):
        assert command in commands, command
    assert len(CASES) >= 150


def test_the_base_config_is_valid(fx, capsys):
    """So each config case fails because of its one change, not because the base is wrong."""
    assert main(["validate", str(fx / "config.yaml")]) == 0, capsys.readouterr().err


def test_unchanged_fixtures_pass_where_the_cases_damage_them(fx, tmp_path, capsys):
    """The undamaged cache, audit and predictions work, so each case's failure comes from its damage."""
    assert main(["cache", "inspect", str(fx / "cache")]) == 0
    assert main(["cache", "export", str(fx / "cache"), "--out", str(tmp_path / "e.npz")]) == 0
    assert main(["cache", "compare", str(fx / "cache"), str(fx / "cache"), "--data", str(fx / "data")]) == 0
    assert main(["calibrate", str(fx / "vanilla.npz"), "--no-sidecar", "--out", str(tmp_path / "c.json")]) == 0
    assert math.isfinite(json.loads((tmp_path / "c.json").read_text())["temperature"])
