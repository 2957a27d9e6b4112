"""The teacher identity a cache records is portable: no local path, but the model's name, weight-file
hashes and the build card's identity fields, so a cache built on one machine is recognised on another."""

from __future__ import annotations

import hashlib
import json

from teacher_helpers import build_tiny_bert, make_dataset

from distillab.teacher.cache import TeacherCache
from distillab.teacher.fingerprint import describe_teacher, model_identity
from distillab.teacher.hf_classifier import cache_classifier

CARD = {"package": "distillab-r52-teacher", "package_version": "2.0", "build_script_sha256": "ab" * 32,
        "settings": {"route": "gpu", "epochs": 3}, "held_out": {"accuracy": 0.97}}


def test_recorded_teacher_identity_holds_no_local_path(tmp_path):
    model_dir = tmp_path / "machine-specific" / "tiny-teacher"
    build_tiny_bert(model_dir)
    (model_dir / "teacher_card.json").write_text(json.dumps(CARD))
    out = cache_classifier(str(model_dir), make_dataset(), tmp_path / "c", shard_rows=64, progress=False)
    manifest_text = (out / "manifest.json").read_text()
    assert str(tmp_path) not in manifest_text and "machine-specific" not in manifest_text

    teacher = TeacherCache.open(out).manifest["fingerprint"]["teacher"]
    weights = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert teacher["name"] == "tiny-teacher" and teacher["tokenizer"]["name"] == "tiny-teacher"
    assert teacher["files_sha256"] == {"model.safetensors": weights}
    assert teacher["card"] == {key: CARD[key] for key in ("package", "package_version", "build_script_sha256",
                                                          "settings")}
    # what a config naming the same folder computes without loading the model agrees with the record
    identity = model_identity(model_dir)
    assert {key: teacher[key] for key in identity} == identity
    assert describe_teacher(teacher) == (f"model tiny-teacher (package distillab-r52-teacher 2.0; build script sha256 "
                                         f"{'ab' * 6}; model.safetensors sha256 {weights[:12]})")


def test_identity_of_a_hub_id_or_an_imported_file():
    assert model_identity("sentence-transformers/all-mpnet-base-v2") == {
        "name": "sentence-transformers/all-mpnet-base-v2", "files_sha256": None, "card": None}
    assert describe_teacher({"name": "x", "source_file": "logits.npz", "source_sha256": "f" * 64}) == \
        f"imported logits.npz (sha256 {'f' * 12})"
