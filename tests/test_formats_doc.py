"""docs/formats.md is enough to audit a bring-your-own problem: its worked example runs as written.

The worked example's code blocks are taken from the page itself (a block whose fence names a file
is saved under that name, a ``bash`` block is run), in a fresh folder, with the installed
``distillab``; the page's other examples and key tables are checked against the code they describe.
"""

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from distillab.data.tiers import load_train_counts
from distillab.report.decision import CONSTRAINT_KEYS, SCENARIO_KEYS
from distillab.report.schema import META
from distillab.report.tables import CANDIDATE_METRICS

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats.md"
FENCE = re.compile(r"^```(\w*)(?: (\S+))?\n(.*?)^```", re.MULTILINE | re.DOTALL)
CLASSES = ["billing", "bug", "outage"]


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


@pytest.fixture(scope="module")
def worked(tmp_path_factory):
    """Follow the worked example step by step; return its folder."""
    folder = tmp_path_factory.mktemp("byo")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    blocks = FENCE.findall(section("Worked example"))
    assert [(lang, name) for lang, name, _ in blocks] == [
        ("python", "make_predictions.py"), ("yaml", "scenarios.yaml"), ("bash", "")]
    for lang, name, body in blocks:
        if name:
            (folder / name).write_text(body, encoding="utf-8")
        else:
            done = subprocess.run(["bash", "-e", "-c", body], cwd=folder, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_worked_example_audits_and_reports(worked):
    audit = json.loads((worked / "audit" / "audit.json").read_text())
    assert {"audit.md", "report.html", "report.md"} <= {p.name for p in (worked / "audit").iterdir()}
    # What the page says the example shows.
    assert audit["classes"] == CLASSES and audit["tier_source"] == "train_counts"
    assert [audit["tiers"][t]["classes"] for t in ("head", "mid", "tail")] == [[0], [1], [2]]
    temperatures = {arm: audit["calibration"][arm]["temperature"] for arm in ("vanilla", "distilled", "teacher")}
    assert temperatures == pytest.approx({"vanilla": 1.6, "distilled": 1.1, "teacher": 1.0}, abs=0.1)
    page = html.unescape((worked / "audit" / "report.html").read_text(encoding="utf-8"))
    assert audit["settings"]["tier_cutoffs_chosen"] in page  # "the settings table says so"
    for title in ("Route tickets without a person", "Count outage reports"):
        assert title in page
    assert audit["warnings"] == []


def test_the_three_train_counts_forms_shown_agree(tmp_path):
    text = section("Training counts")
    inline = re.findall(r"`(\[[^`]*\]|\{[^`]*\})`", text)  # the JSON list and the JSON object
    assert len(inline) == 2
    forms = {"list.json": inline[0], "object.json": inline[1], "counts.csv": FENCE.findall(text)[0][2]}
    for name, body in forms.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
        assert load_train_counts(tmp_path / name, CLASSES).tolist() == [6000, 2900, 1100], name


def documented_keys(title: str) -> set[str]:
    return set(re.findall(r"^\| `([^`]+)`", section(title), re.MULTILINE))


def test_every_sidecar_key_the_report_reads_is_documented():
    keys = documented_keys("The sidecar")
    for key in META:
        assert key.rstrip("?") in {k.split(".")[0] for k in keys}, key


def test_every_scenario_key_and_metric_is_documented():
    text = section("Deployment scenarios")
    keys = documented_keys("Deployment scenarios") | set(re.findall(r"`(include_\w+)`", text))
    assert SCENARIO_KEYS <= keys
    for key in CONSTRAINT_KEYS | set(CANDIDATE_METRICS):
        assert f"{key}" in text, key


def test_every_teacher_cache_key_and_tensor_written_is_documented(tmp_path):
    """The cache section's tables cover what the writer writes: manifest keys, feature entries, shard tensors."""
    import numpy as np

    from distillab.teacher.cache import CacheWriter, read_safetensors
    from distillab.teacher.capture import topk_outputs

    documented = documented_keys("The teacher cache")
    rows, width = 5, 4
    ids, labels = np.array([f"r{i}" for i in range(rows)]), np.arange(rows) % 3
    features = [{"name": "pooled.2", "layer": 2, "pooling": "mean", "width": 6, "dtype": "fp16"}]
    written = set()
    for kind, tokens in (("dense", None), ("topk", None), ("topk", 3)):
        out = tmp_path / f"{kind}-{tokens}"
        writer = CacheWriter(out, ids=ids, labels=labels, texts=["t"] * rows, classes=CLASSES[:3] + ["x"],
                             fingerprint={"dataset": {"splits": {"all": rows}}, "teacher": {}, "capture": {}},
                             kind=kind, width=width, k=None if kind == "dense" else 2, tokens=tokens,
                             features=features, teacher_layers=4)
        writer.prepare()
        logits = np.random.RandomState(0).normal(size=(rows, *((tokens,) if tokens else ()), width)).astype(np.float32)
        arrays = {"logits": logits} if kind == "dense" else topk_outputs(logits, 2)
        if tokens:
            arrays.update(input_ids=np.zeros((rows, tokens), np.int32), num_tokens=np.full(rows, tokens, np.int32))
        writer.write_shard(0, {**arrays, "feature.pooled.2": np.zeros((rows, 6), np.float32)})
        manifest = writer.finalize()
        written |= set(manifest) | set(manifest["shards"][0]) | set(manifest["features"][0])
        written |= {name.replace("pooled.2", "NAME") for name in read_safetensors(out / "shard-00000.safetensors")[1]}
    shard_entry = {"file", "first_row", "rows", "bytes", "sha256"}  # listed inline in the `shards` row
    entry_text = "{" + ", ".join(sorted(shard_entry, key=list(manifest["shards"][0]).index)) + "}"
    assert entry_text in section("The teacher cache")
    assert not written - documented - shard_entry, written - documented
