"""Named teacher features in the cache: pooled hidden states equal a direct computation with the model, do not
depend on padding, are checksummed and validated on open, named in errors and in ``cache inspect``, and a cache
asked for no features is written exactly as before (the shipped demo cache's manifest, byte for byte)."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
from teacher_helpers import build_tiny_mpnet, make_dataset, make_tokenizer, write_dataset_folder
from test_cache import write_cache
from test_malformed_cache import edit_manifest, manifest_of, refresh_checksums

from distillab.cli import main
from distillab.errors import InputError
from distillab.teacher.cache import MANIFEST, PROGRESS, CacheWriter, TeacherCache, shard_name
from distillab.teacher.features import pooled_features
from distillab.teacher.hf_classifier import cache_classifier

RUN = dict(shard_rows=16, max_length=16, progress=False)


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory):
    return build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))


def load(model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)


def direct_pooled(model_dir, texts, layers, max_length=16) -> list[np.ndarray]:
    """One text at a time (no padding at all), plain torch: mean over its tokens of hidden_states[L]."""
    import torch

    model, tokenizer = load(model_dir)
    rows = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            states = model(**encoded, output_hidden_states=True).hidden_states
            rows.append([states[layer][0].double().mean(dim=0).numpy() for layer in layers])
    return [np.stack([row[i] for row in rows]) for i in range(len(layers))]


def all_texts(dataset) -> list[str]:
    return [text for split in dataset.splits.values() for text in split.texts]


@pytest.mark.parametrize("teacher", ["tiny_bert", "tiny_mpnet"])
def test_features_equal_a_direct_masked_mean_over_tokens(tmp_path, request, teacher, dataset):
    model_dir = request.getfixturevalue(teacher)
    last = load(model_dir)[0].config.num_hidden_layers
    out = cache_classifier(model_dir, dataset, tmp_path / "c", features="pooled.last,pooled.0", dtype="fp32",
                           batch_size=5, **RUN)
    cache = TeacherCache.open(out, verify=True)
    names = ("pooled.0", f"pooled.{last}")  # 'last' written as the number; sorted by layer
    assert cache.feature_names == names
    assert cache.manifest["features"] == [{"name": name, "layer": layer, "pooling": "mean", "width": 32,
                                           "dtype": "fp32"} for name, layer in zip(names, (0, last))]
    assert cache.manifest["fingerprint"]["capture"]["features"] == list(names)
    assert cache.feature_info(names[1])["layer"] == last and cache.teacher_layers == last

    expected = direct_pooled(model_dir, all_texts(dataset), [0, last])
    order = np.random.RandomState(0).permutation(len(cache))
    for name, want in zip(names, expected):
        got = cache.features(name, cache.ids[order])  # aligned with ids exactly like logits(ids)
        assert got.dtype == np.float32 and got.shape == (len(cache), 32)
        np.testing.assert_allclose(got, want[order], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(cache.features(name), got[np.argsort(order)])
        assert cache.features(name, []).shape == (0, 32)
    np.testing.assert_array_equal(cache.features("pooled.last"), cache.features(names[1]))
    assert not np.allclose(expected[0], expected[1], atol=1e-2)  # the two layers really differ

    # Asking for features changes nothing else the cache holds: same logits, bit for bit.
    plain = TeacherCache.open(cache_classifier(model_dir, dataset, tmp_path / "plain", dtype="fp32", batch_size=5,
                                               **RUN))
    np.testing.assert_array_equal(plain.logits(), cache.logits())
    assert plain.feature_names == () and plain.teacher_layers is None
    assert "features" not in plain.manifest and "teacher_layers" not in plain.manifest
    assert "features" not in plain.manifest["fingerprint"]["capture"]
    assert plain.manifest["fingerprint"]["capture"] == {key: value for key, value in
                                                         cache.manifest["fingerprint"]["capture"].items()
                                                         if key != "features"}
    assert plain.manifest["fingerprint"] != cache.manifest["fingerprint"]  # different caches


def test_a_rows_feature_does_not_depend_on_the_batch_padding(tmp_path, tiny_mpnet, dataset):
    import torch

    alone = TeacherCache.open(cache_classifier(tiny_mpnet, dataset, tmp_path / "alone", features="pooled.1,pooled.3",
                                               dtype="fp32", batch_size=1, **RUN))
    # one batch per shard: every row but the longest of each shard is padded
    padded = TeacherCache.open(cache_classifier(tiny_mpnet, dataset, tmp_path / "padded", features="pooled.1,pooled.3",
                                                dtype="fp32", batch_size=16, **RUN))
    for name in ("pooled.1", "pooled.3"):
        np.testing.assert_allclose(padded.features(name), alone.features(name), rtol=1e-5, atol=1e-6)

    # And the pooling itself: a short text padded beside a long one equals the short text alone.
    model, tokenizer = load(tiny_mpnet)
    short, long = "wheat corn", "oil barrel opec refinery pipeline the a of market price week"
    entries = [{"name": "pooled.3", "layer": 3}]
    with torch.inference_mode():
        batch = tokenizer([long, short], padding=True, return_tensors="pt")
        assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()
        both = pooled_features(model(**batch, output_hidden_states=True).hidden_states, batch["attention_mask"], entries)
        one = tokenizer([short], return_tensors="pt")
        single = pooled_features(model(**one, output_hidden_states=True).hidden_states, one["attention_mask"], entries)
    np.testing.assert_allclose(both["feature.pooled.3"][1], single["feature.pooled.3"][0], rtol=1e-5, atol=1e-6)


def test_padded_positions_cannot_leak_into_the_mean():
    import torch

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [float("nan"), float("inf")]]])
    mask = torch.tensor([[1, 1, 0]])
    out = pooled_features([hidden], mask, [{"name": "pooled.0", "layer": 0}])
    np.testing.assert_array_equal(out["feature.pooled.0"], [[2.0, 3.0]])


def feature_offset(path, tensor) -> int:
    """Byte offset of ``tensor``'s data inside a safetensors file."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return 8 + length + json.loads(data[8:8 + length])[tensor]["data_offsets"][0]


def test_a_flipped_byte_in_a_feature_is_refused_on_open(tmp_path, tiny_bert, dataset, capsys):
    out = cache_classifier(tiny_bert, dataset, tmp_path / "c", features="pooled.2", **RUN)
    shard = out / shard_name(1)
    data = bytearray(shard.read_bytes())
    data[feature_offset(shard, "feature.pooled.2") + 5] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"{shard_name(1)}: sha256 mismatch"):
        TeacherCache.open(out)
    capsys.readouterr()
    assert main(["cache", "inspect", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256 mismatch" in err[0]


def fixture_cache(tmp_path, dataset, dtype="fp16"):
    rng = np.random.RandomState(2)
    features = {"pooled.1": rng.normal(size=(42, 6)).astype(np.float32),
                "pooled.4": rng.normal(size=(42, 6)).astype(np.float32) * 10}
    ids, _, _ = write_cache(tmp_path / "c", dataset, dtype=dtype, features=features)
    return tmp_path / "c", ids, features


@pytest.mark.parametrize("dtype,np_dtype", [("fp16", np.float16), ("fp32", np.float32), ("bf16", None)])
def test_writer_round_trip_in_each_dtype_and_lazily_mapped(tmp_path, dataset, dtype, np_dtype):
    path, ids, features = fixture_cache(tmp_path, dataset, dtype)
    cache = TeacherCache.open(path)
    assert cache.feature_names == ("pooled.1", "pooled.4") and cache.teacher_layers == 4
    assert cache.feature_width("pooled.4") == 6
    np.testing.assert_array_equal(cache.features("pooled.last"), cache.features("pooled.4"))
    rows = ids[[40, 3, 17]]
    for name, value in features.items():
        got = cache.features(name, rows)
        if np_dtype is None:
            np.testing.assert_allclose(got, value[[40, 3, 17]], rtol=2 ** -8)
        else:
            np.testing.assert_array_equal(got, value[[40, 3, 17]].astype(np_dtype).astype(np.float32))
    # opening maps the shards; nothing of a feature is read into memory until asked for
    assert all(isinstance(getattr(shard["feature.pooled.4"], "raw", shard["feature.pooled.4"]), np.memmap)
               for shard in cache._shards)


def test_an_unknown_feature_name_names_the_cache_and_what_it_has(tmp_path, dataset):
    path, ids, _ = fixture_cache(tmp_path, dataset)
    with pytest.raises(InputError, match=rf"teacher cache {path} has no feature 'pooled\.12' "
                                         r"\(it has: pooled\.1, pooled\.4\)"):
        TeacherCache.open(path).features("pooled.12", ids[:2])
    write_cache(tmp_path / "plain", dataset)
    with pytest.raises(InputError, match=r"has no feature 'pooled\.1' \(it has: none\)"):
        TeacherCache.open(tmp_path / "plain").features("pooled.1")


def without_features(manifest):
    del manifest["features"], manifest["teacher_layers"], manifest["fingerprint"]["capture"]["features"]


TAMPERED = {
    "entry dropped (shard still holds it)": (edit_manifest(lambda m: (m["features"].pop(), m["fingerprint"]["capture"]
                                                                      ["features"].pop())), "holds tensors"),
    "features dropped, fingerprint kept": (edit_manifest(lambda m: m.pop("features")),
                                           "'fingerprint.capture.features' lists"),
    "fingerprint dropped, features kept": (edit_manifest(lambda m: m["fingerprint"]["capture"].pop("features")),
                                           "differs from 'fingerprint.capture.features'"),
    "all of it dropped": (edit_manifest(without_features), "holds tensors"),
    "teacher_layers left alone": (edit_manifest(lambda m: (without_features(m), m.__setitem__("teacher_layers", 4))),
                                  "'teacher_layers' is only written with 'features'"),
    "teacher_layers too shallow": (edit_manifest(lambda m: m.__setitem__("teacher_layers", 3)),
                                   "'teacher_layers' must be .* >= 4"),
    "width lies": (edit_manifest(lambda m: m["features"][0].__setitem__("width", 7)), "tensor 'feature.pooled.1' is"),
    "dtype lies": (edit_manifest(lambda m: m["features"][0].__setitem__("dtype", "fp32")), "F16 .* implies F32"),
    "layer not its name's": (edit_manifest(lambda m: m["features"][0].__setitem__("layer", 2)),
                             "features\\[0\\]' layer must be the integer in its name"),
    "unknown pooling": (edit_manifest(lambda m: m["features"][0].__setitem__("pooling", "max")), "pooling must be"),
    "empty list": (edit_manifest(lambda m: m.__setitem__("features", [])), "non-empty list"),
    "name twice": (edit_manifest(lambda m: m["features"].__setitem__(1, m["features"][0])), "name twice"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_feature_manifest_is_refused(tmp_path, dataset, case, capsys):
    path, _, _ = fixture_cache(tmp_path, dataset)
    tamper, message = TAMPERED[case]
    tamper(path)
    refresh_checksums(path)  # as a careless tool would: the structural checks must catch it
    with pytest.raises(InputError, match=message):
        TeacherCache.open(path)
    capsys.readouterr()
    assert main(["cache", "inspect", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_bad_layer_or_name_is_one_line_exit_2_before_any_work(tmp_path, tiny_bert, tiny_llama, dataset, capsys):
    out = tmp_path / "c"
    missing_data = str(tmp_path / "no-such-spec.yaml")  # never read: the features are checked first
    for features, message in [
        ("pooled.3", "--features pooled.3: layer 3 is outside the valid range 0..2 for teacher"),
        ("pooled.1,pooled.99", "--features pooled.99: layer 99 is outside the valid range 0..2"),
        ("hidden.1", "--features 'hidden.1': a feature is pooled.LAYER"),
        ("pooled.-1", "--features 'pooled.-1': a feature is pooled.LAYER"),
        ("pooled.2,pooled.last", "--features: layer 2 is asked for twice (pooled.2 and pooled.last)"),
    ]:
        assert main(["teacher", "--model", tiny_bert, "--data", missing_data, "--out", str(out),
                     "--features", features]) == 2, features
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (features, err)
        assert not out.exists()
    assert main(["teacher", "--model", tiny_llama, "--causal-lm", "--topk", "2", "--data", missing_data,
                 "--out", str(out), "--features", "pooled.1"]) == 2
    assert "--features is for sequence-classifier teachers" in capsys.readouterr().err

    # The Python API says the same, for a path and for a loaded model
    with pytest.raises(InputError, match="layer 5 is outside the valid range 0..2"):
        cache_classifier(tiny_bert, dataset, out, features=["pooled.5"], progress=False)
    model, _ = load(tiny_bert)
    with pytest.raises(InputError, match="layer 3 is outside the valid range 0..2"):
        cache_classifier(model, dataset, out, tokenizer=make_tokenizer(), features="pooled.3", progress=False)
    assert not out.exists()


def test_teacher_features_cli_then_inspect(tmp_path, tiny_bert, capsys):
    spec = write_dataset_folder(tmp_path / "data", make_dataset())
    out = tmp_path / "cache"
    args = ["teacher", "--model", tiny_bert, "--data", str(spec), "--out", str(out), "--shard-rows", "16",
            "--batch-size", "8", "--max-length", "16", "--no-progress"]
    assert main([*args, "--features", "pooled.last", "--features", "pooled.1"]) == 0
    cache = TeacherCache.open(out)
    assert cache.feature_names == ("pooled.1", "pooled.2") and cache.manifest["features"][0]["dtype"] == "fp16"
    reference = TeacherCache.open(cache_classifier(tiny_bert, make_dataset(), tmp_path / "fp32", dtype="fp32",
                                                   batch_size=8, features="pooled.1,pooled.2", **RUN))
    for name in cache.feature_names:  # fp16 by default: the same numbers, rounded once
        np.testing.assert_array_equal(cache.features(name), reference.features(name).astype(np.float16))

    capsys.readouterr()
    assert main(["cache", "inspect", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["features"] == [
        {"name": f"pooled.{layer}", "layer": layer, "pooling": "mean", "width": 32, "dtype": "fp16",
         "bytes": 42 * 32 * 2, "bytes_per_row": 64} for layer in (1, 2)]
    assert summary["teacher_layers"] == 2
    assert main(["cache", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert ("feature    pooled.2: mean of hidden_states[2] (of 0..2) over non-padding tokens, width 32, fp16, "
            "2,688 bytes (64 bytes/row)") in text

    # The same command resumes/finishes; the same cache without features (or with others) is another cache.
    assert main([*args, "--features", "pooled.1,pooled.2"]) == 0
    assert main(args) == 2
    assert "made differently" in capsys.readouterr().err
    assert main([*args, "--features", "pooled.0"]) == 2
    assert "capture.features" in capsys.readouterr().err


def test_the_shipped_cache_is_written_and_read_back_byte_for_byte(tmp_path):
    """The shipped demo cache (logits + pooled.12): the writer given its settings writes its manifest byte for
    byte (so its fingerprint, which training stamps hash, is what the writer makes)."""
    from distillab.config import resolve_builtin

    shipped = resolve_builtin("builtin:r52-mpnet-teacher")
    cache = TeacherCache.open(shipped)
    assert cache.feature_names == ("pooled.12",) and cache.teacher_layers == 12
    with pytest.raises(InputError, match=r"\(it has: pooled.12\)"):
        cache.features("pooled.6")
    manifest = cache.manifest
    copy = tmp_path / "copy"
    copy.mkdir()
    for entry in manifest["shards"]:
        shutil.copy(shipped / entry["file"], copy / entry["file"])
    writer = CacheWriter(copy, ids=cache.ids, labels=cache.labels(), texts=[""] * len(cache),
                         classes=cache.classes, fingerprint=manifest["fingerprint"], kind=manifest["kind"],
                         width=manifest["width"], dtype=manifest["dtype"], k=manifest["k"], tokens=manifest["tokens"],
                         temperature=manifest["temperature"], shard_rows=manifest["shard_rows"],
                         features=manifest["features"], teacher_layers=manifest["teacher_layers"])
    assert writer.head == {key: value for key, value in manifest.items() if key != "shards"}
    (copy / PROGRESS).write_text(json.dumps(writer.head))
    writer.finalize()
    assert (copy / MANIFEST).read_bytes() == (shipped / MANIFEST).read_bytes()
    assert manifest_of(copy) == manifest


def test_a_cache_without_features_has_none_of_their_keys(tmp_path, dataset):
    """Caches written before features existed (and any written without them) keep the manifest they had."""
    write_cache(tmp_path / "c", dataset)
    manifest = json.loads((tmp_path / "c" / MANIFEST).read_text())
    assert "features" not in manifest and "teacher_layers" not in manifest
    assert "features" not in manifest["fingerprint"]["capture"]
    with pytest.raises(InputError, match=r"\(it has: none\)"):
        TeacherCache.open(tmp_path / "c").features("pooled.12")
