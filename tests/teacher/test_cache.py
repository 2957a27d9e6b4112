"""Cache writer/reader: round trips, independent reads with safetensors, fingerprint checks, checksums."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from teacher_helpers import make_dataset
from safetensors import safe_open

from distillab.data.dataset import TextDataset, TextSplit
from distillab.errors import FingerprintMismatch, InputError
from distillab.teacher.cache import MANIFEST, PROGRESS, CacheWriter, TeacherCache, shard_name
from distillab.teacher.capture import select_rows, topk_outputs
from distillab.teacher.fingerprint import dataset_fingerprint, make_fingerprint


def write_cache(out, dataset, logits=None, *, kind="dense", dtype="fp16", k=None, shard_rows=8, splits=None,
                temperature=None, features=None):
    """Write ``logits`` (float32, one row per selected dataset row) through the writer, shard by shard.

    ``features``: name (``pooled.L``) → float32 [rows, width], stored in the cache dtype as a runner would.
    """
    splits, ids, texts, labels = select_rows(dataset, splits)
    if logits is None:
        logits = np.random.RandomState(1).normal(size=(len(ids), len(dataset.classes))).astype(np.float32) * 3
    features = features or {}
    capture = {"splits": splits, **({"features": list(features)} if features else {})}
    fingerprint = make_fingerprint(dataset_fingerprint(dataset, splits, ids, labels), {"name": "fixture"}, capture)
    entries = [{"name": name, "layer": int(name.split(".")[1]), "pooling": "mean", "width": value.shape[1],
                "dtype": dtype} for name, value in features.items()]
    writer = CacheWriter(out, ids=ids, labels=labels, texts=texts, classes=dataset.classes, fingerprint=fingerprint,
                         kind=kind, width=logits.shape[1], dtype=dtype, k=k, shard_rows=shard_rows,
                         temperature=temperature, features=entries,
                         teacher_layers=max((e["layer"] for e in entries), default=None))
    writer.prepare()
    for index in writer.pending_shards():
        start, stop = writer.shard_range(index)
        arrays = {"logits": logits[start:stop]} if kind == "dense" else topk_outputs(logits[start:stop], k)
        arrays.update({f"feature.{name}": value[start:stop] for name, value in features.items()})
        writer.write_shard(index, arrays)
    writer.finalize()
    return ids, labels, logits


@pytest.mark.parametrize("dtype,np_dtype", [("fp16", np.float16), ("fp32", np.float32), ("bf16", None)])
def test_dense_round_trip_by_id_in_any_order(tmp_path, dataset, dtype, np_dtype):
    ids, labels, logits = write_cache(tmp_path / "c", dataset, dtype=dtype, shard_rows=7)
    cache = TeacherCache.open(tmp_path / "c", verify=True)
    order = np.random.RandomState(0).permutation(len(ids))
    got = cache.logits(ids[order])
    assert got.dtype == np.float32 and got.shape == (len(ids), 3)
    if np_dtype is not None:
        np.testing.assert_array_equal(got, logits[order].astype(np_dtype).astype(np.float32))
    else:  # bf16 keeps 8 significant bits: relative error below 2^-8
        np.testing.assert_allclose(got, logits[order], rtol=2 ** -8, atol=0)
    np.testing.assert_array_equal(cache.labels(ids[order]), labels[order])
    assert cache.ids.tolist() == ids.tolist()
    assert cache.splits == {"train": 30, "test": 12}
    assert cache.split_ids("test").tolist() == dataset.splits["test"].ids.tolist()
    assert cache.kind == "dense" and cache.num_classes == 3 and cache.classes == dataset.classes


def test_shards_read_the_same_with_safetensors_safe_open(tmp_path, dataset):
    ids, labels, logits = write_cache(tmp_path / "c", dataset, shard_rows=16)
    manifest = json.loads((tmp_path / "c" / MANIFEST).read_text())
    assert [s["file"] for s in manifest["shards"]] == [shard_name(i) for i in range(3)]
    stacked, stacked_ids = [], []
    for shard in manifest["shards"]:
        with safe_open(tmp_path / "c" / shard["file"], framework="np") as handle:
            stacked.append(handle.get_tensor("logits"))
            stacked_ids += json.loads(handle.metadata()["ids"])
            assert handle.get_tensor("labels").dtype == np.int32
    np.testing.assert_array_equal(np.concatenate(stacked), logits.astype(np.float16))
    assert stacked_ids == ids.tolist()


def test_topk_round_trip(tmp_path, dataset):
    ids, _, logits = write_cache(tmp_path / "c", dataset, kind="topk", k=2)
    cache = TeacherCache.open(tmp_path / "c")
    top_ids, top_lp, tail = cache.topk(ids[::-1])
    expected = topk_outputs(logits[::-1], 2)
    np.testing.assert_array_equal(top_ids, expected["topk_ids"])
    np.testing.assert_array_equal(top_lp, expected["topk_logprobs"].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(tail, expected["tail_logmass"])
    assert cache.manifest["truncation"]["positions"] == len(ids)
    with pytest.raises(InputError, match="top-k cache; use topk"):
        cache.logits(ids[:2])


def test_writing_twice_gives_identical_bytes(tmp_path, dataset):
    write_cache(tmp_path / "a", dataset)
    write_cache(tmp_path / "b", dataset)
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == sorted(os.listdir(tmp_path / "b")) and PROGRESS not in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_unknown_id_is_named(tmp_path, dataset):
    write_cache(tmp_path / "c", dataset)
    with pytest.raises(InputError, match="'nope' is not in the teacher cache"):
        TeacherCache.open(tmp_path / "c").logits(["tiny-train-0", "nope"])


def test_check_matches_accepts_the_same_dataset_and_names_each_difference(tmp_path):
    write_cache(tmp_path / "c", make_dataset())
    cache = TeacherCache.open(tmp_path / "c")
    cache.check_matches(make_dataset())

    relabelled = make_dataset()
    relabelled.splits["train"].labels[4] = (relabelled.splits["train"].labels[4] + 1) % 3
    with pytest.raises(FingerprintMismatch, match=r"labels differ on 1 row\(s\) \(e.g. 'tiny-train-4'"):
        cache.check_matches(relabelled)

    edited = make_dataset()
    edited.splits["test"].texts[2] = "an entirely new text"
    with pytest.raises(FingerprintMismatch, match=r"texts differ on 1 row\(s\) \(e.g. 'tiny-test-2' in shard-00004.safetensors\)"):
        cache.check_matches(edited)

    reordered = make_dataset()
    reordered = TextDataset(name="tiny", classes=reordered.classes[::-1], splits={
        s: TextSplit(sp.ids, sp.texts, 2 - sp.labels) for s, sp in reordered.splits.items()})
    with pytest.raises(FingerprintMismatch, match="same 3 classes in a different order"):
        cache.check_matches(reordered)

    other_classes = make_dataset()
    other_classes = TextDataset(name="tiny", classes=["grain", "crude", "money"], splits=other_classes.splits)
    with pytest.raises(FingerprintMismatch, match="only in cache: 'earn'.*only in dataset: 'money'"):
        cache.check_matches(other_classes)

    bigger = make_dataset()
    train = bigger.splits["train"]
    bigger.splits["train"] = TextSplit(ids=[*train.ids, "tiny-train-30", "tiny-train-31", "tiny-train-32"],
                                       texts=[*train.texts, "wheat", "oil", "profit"], labels=[*train.labels, 0, 1, 2])
    with pytest.raises(FingerprintMismatch, match=r"3 row\(s\) of split\(s\) train, test are not in the cache "
                                                  r"\(e.g. 'tiny-train-30'\)"):
        cache.check_matches(bigger)
    cache.check_matches(bigger, splits=["test"])  # the rows the caller will read are all there

    unrelated = make_dataset(name="other")
    with pytest.raises(FingerprintMismatch, match="none of the dataset's rows is in the cache"):
        cache.check_matches(unrelated)


def test_check_matches_accepts_regrouped_splits_and_a_superset_cache(tmp_path):
    from distillab.data.load import combine_splits

    write_cache(tmp_path / "c", make_dataset())
    cache = TeacherCache.open(tmp_path / "c")
    cache.check_matches(combine_splits(make_dataset(), {"all": ["train", "test"]}))
    smaller = make_dataset()
    smaller.splits.pop("test")
    cache.check_matches(TextDataset(name="tiny", classes=smaller.classes, splits=smaller.splits))


def test_a_flipped_byte_is_refused_on_every_open_unless_verification_is_turned_off(tmp_path, dataset, capsys):
    from distillab.cli import main

    write_cache(tmp_path / "c", dataset)
    assert main(["cache", "inspect", str(tmp_path / "c"), "--verify"]) == 0
    shard = tmp_path / "c" / shard_name(1)
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # inside the payload: size unchanged, contents differ
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert TeacherCache.open(tmp_path / "c", verify=False).verify() == [
        f"{shard_name(1)}: sha256 mismatch (file is corrupt or was modified)"]
    assert "NOT verified" in capsys.readouterr().err
    with pytest.raises(InputError, match="sha256 mismatch"):
        TeacherCache.open(tmp_path / "c")  # verification is the default
    out = tmp_path / "teacher.npz"
    for command in (["cache", "inspect", str(tmp_path / "c")], ["cache", "export", str(tmp_path / "c"), "--out", str(out)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{shard}: sha256 mismatch" in err[0], err
        assert not out.exists()
    assert main(["cache", "export", str(tmp_path / "c"), "--out", str(out), "--no-verify-cache"]) == 0
    assert "NOT verified" in capsys.readouterr().err and out.exists()


def test_nan_and_fp16_overflow_are_errors_naming_the_row(tmp_path, dataset):
    logits = np.zeros((42, 3), dtype=np.float32)
    logits[10, 1] = np.nan
    with pytest.raises(InputError, match="NaN or inf in 'logits' for row 'tiny-train-10'"):
        write_cache(tmp_path / "a", dataset, logits)
    logits[10, 1] = 7e4
    with pytest.raises(InputError, match="beyond fp16's range.*use --dtype bf16 or fp32"):
        write_cache(tmp_path / "b", dataset, logits)
    write_cache(tmp_path / "c", dataset, logits, dtype="fp32")  # fp32 holds it


def test_unfinished_or_different_cache_in_out_dir(tmp_path, dataset):
    splits, ids, texts, labels = select_rows(dataset, None)
    fp = make_fingerprint(dataset_fingerprint(dataset, splits, ids, labels), {"name": "fixture"}, {})
    writer = CacheWriter(tmp_path / "c", ids=ids, labels=labels, texts=texts, classes=dataset.classes,
                         fingerprint=fp, width=3, shard_rows=8)
    writer.prepare()
    writer.write_shard(0, {"logits": np.zeros((8, 3), np.float32)})
    with pytest.raises(InputError, match="unfinished"):
        TeacherCache.open(tmp_path / "c")
    other = CacheWriter(tmp_path / "c", ids=ids, labels=labels, texts=texts, classes=dataset.classes,
                        fingerprint=fp, width=3, shard_rows=8, temperature=2.0)
    with pytest.raises(FingerprintMismatch, match="partial cache made differently.*temperature: None != 2.0"):
        other.prepare()
    other.prepare(overwrite=True)
    assert other.pending_shards() == list(range(6))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        CacheWriter(tmp_path / "d", ids=ids, labels=labels, texts=texts, classes=dataset.classes,
                    fingerprint=fp, width=3).prepare()


def test_killed_between_manifest_and_cleanup_is_complete(tmp_path, dataset):
    write_cache(tmp_path / "c", dataset)
    (tmp_path / "c" / PROGRESS).write_text((tmp_path / "c" / MANIFEST).read_text())
    (tmp_path / "c" / ".shard-00003.safetensors.abc.tmp").write_bytes(b"half")
    before = (tmp_path / "c" / MANIFEST).read_bytes()
    write_cache(tmp_path / "c", dataset)  # resumes: nothing pending, strays removed
    assert sorted(os.listdir(tmp_path / "c")) == [MANIFEST] + [shard_name(i) for i in range(6)]
    assert (tmp_path / "c" / MANIFEST).read_bytes() == before


def test_duplicate_ids_rejected(tmp_path):
    with pytest.raises(InputError, match="duplicate row id 'x'"):
        CacheWriter(tmp_path, ids=np.array(["x", "x"]), labels=np.zeros(2), texts=["a", "b"], classes=["a", "b"],
                    fingerprint={}, width=2)
