"""Malformed and tampered teacher caches: each is refused with one line naming the file (and key), exit 2.

Most cases refresh the manifest's checksums after the edit, as an adversary (or a buggy tool)
would, so that the structural checks, not the sha256 check, have to catch them.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np
import pytest
from teacher_helpers import make_dataset
from test_cache import write_cache

from distillab.cli import main
from distillab.errors import FingerprintMismatch, InputError
from distillab.teacher.cache import MANIFEST, TeacherCache, shard_name
from distillab.teacher.fingerprint import sha256_lines


def manifest_of(cache) -> dict:
    return json.loads((cache / MANIFEST).read_text())


def write_manifest(cache, manifest) -> None:
    (cache / MANIFEST).write_text(json.dumps(manifest))


def refresh_checksums(cache) -> None:
    """Make the manifest's bytes and sha256 agree with the shards as they are now."""
    manifest = manifest_of(cache)
    for entry in manifest["shards"]:
        data = (cache / entry["file"]).read_bytes()
        entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    write_manifest(cache, manifest)


def edit_manifest(edit):
    def apply(cache):
        manifest = manifest_of(cache)
        edit(manifest)
        write_manifest(cache, manifest)
    return apply


def set_key(key, value):
    return edit_manifest(lambda m: m.__setitem__(key, value))


def set_shard_file(name):
    return edit_manifest(lambda m: m["shards"][0].__setitem__("file", str(name)))


def edit_header(edit, index=1):
    """Rewrite shard ``index``'s safetensors header with ``edit(header)``, then refresh the checksums."""
    def apply(cache):
        path = cache / shard_name(index)
        data = path.read_bytes()
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
        edit(header)
        encoded = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + length:])
        refresh_checksums(cache)
    return apply


def raw_shard(make_bytes, index=1, refresh=True):
    """Replace shard ``index`` with ``make_bytes(old_bytes)``."""
    def apply(cache):
        path = cache / shard_name(index)
        path.write_bytes(make_bytes(path.read_bytes()))
        if refresh:
            refresh_checksums(cache)
    return apply


def outside_file(cache):
    (cache.parent / "elsewhere.safetensors").write_bytes((cache / shard_name(0)).read_bytes())
    return cache.parent / "elsewhere.safetensors"


def symlink_out(cache):
    target = outside_file(cache)
    (cache / shard_name(0)).unlink()
    os.symlink(target, cache / shard_name(0))


def subfolder_shard(cache):
    (cache / "sub").mkdir()
    set_shard_file("sub")(cache)


def set_labels(cache, value):
    def edit(data):
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
        begin, _ = header["labels"]["data_offsets"]
        at = 8 + length + begin
        return data[:at] + struct.pack("<i", value) + data[at + 4:]
    raw_shard(edit)(cache)


def swap_shard_ids(cache):
    """Shard 1 claims shard 0's ids: every id appears twice."""
    ids0 = json.loads(_metadata(cache, 0)["ids"])
    edit_header(lambda h: h["__metadata__"].__setitem__("ids", json.dumps(ids0)))(cache)


def _metadata(cache, index):
    data = (cache / shard_name(index)).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length])["__metadata__"]


M, S1 = MANIFEST, shard_name(1)
CASES = {
    # shard bytes
    "truncated shard": (raw_shard(lambda b: b[:-20], refresh=False), S1, "truncated or replaced"),
    "truncated shard, checksums refreshed": (raw_shard(lambda b: b[:-20]), S1, "past the end of the file"),
    "shard shorter than its header length": (raw_shard(lambda b: b[:5]), S1, "truncated safetensors file"),
    "header length 2^40": (raw_shard(lambda b: struct.pack("<Q", 2 ** 40) + b[8:]), S1, "header length 1099511627776"),
    "header length 2^64-1": (raw_shard(lambda b: struct.pack("<Q", 2 ** 64 - 1) + b[8:]), S1,
                             f"header length {2 ** 64 - 1}"),
    "header not an object": (raw_shard(lambda b: struct.pack("<Q", 6) + b"[1, 2]"), S1, "must be a JSON object"),
    "header not JSON": (raw_shard(lambda b: struct.pack("<Q", 6) + b"{nope}"), S1, "not valid JSON"),
    "header not UTF-8": (raw_shard(lambda b: struct.pack("<Q", 6) + b'{"\xff":1}'), S1, "not UTF-8"),
    "offsets past EOF": (edit_header(lambda h: h["logits"].__setitem__("data_offsets", [0, 10 ** 9])), S1,
                         "tensor 'logits'"),
    "negative shape": (edit_header(lambda h: h["logits"].__setitem__("shape", [-8, -3])), S1, "'shape'"),
    "shape disagrees with its bytes": (edit_header(lambda h: h["logits"].__setitem__("shape", [8, 4])), S1,
                                       "tensor 'logits'"),
    "lying shape (same bytes)": (edit_header(lambda h: h["logits"].__setitem__("shape", [3, 8])), S1,
                                 "tensor 'logits' is F16 (3, 8)"),
    "unknown dtype": (edit_header(lambda h: h["logits"].__setitem__("dtype", "F99")), S1, "tensor 'logits'"),
    "tensor missing": (edit_header(lambda h: h.pop("labels")), S1, "holds tensors"),
    "ids metadata not JSON": (edit_header(lambda h: h["__metadata__"].__setitem__("ids", "[oops")), S1,
                              "metadata key 'ids'"),
    "ids metadata too short": (edit_header(lambda h: h["__metadata__"].__setitem__("ids", "[\"a\"]")), S1,
                               "metadata key 'ids'"),
    "metadata not strings": (edit_header(lambda h: h.__setitem__("__metadata__", {"ids": [1]})), S1,
                             "'__metadata__'"),
    "label out of range": (lambda c: set_labels(c, 99), S1, "tensor 'labels' row 0 is 99"),
    "ids stored twice": (swap_shard_ids, "/c: row id 'tiny-train-0'", "stored twice"),
    # manifest
    "manifest missing shards": (edit_manifest(lambda m: m.pop("shards")), M, "key 'shards'"),
    "manifest with shards: []": (set_key("shards", []), M, "key 'shards'"),
    "manifest is a list": (lambda c: (c / MANIFEST).write_text("[1, 2]"), M, "must be a JSON object"),
    "manifest not JSON": (lambda c: (c / MANIFEST).write_text("{"), M, "not valid JSON"),
    "manifest not UTF-8": (lambda c: (c / MANIFEST).write_bytes(b'{"format": "\xff"}'), M, "not UTF-8"),
    "manifest nested too deeply": (lambda c: (c / MANIFEST).write_text("[" * 100000), M, "nested too deeply"),
    "manifest is a folder": (lambda c: ((c / MANIFEST).unlink(), (c / MANIFEST).mkdir()), M, "not a regular file"),
    "lying shard_rows": (set_key("shard_rows", 4), M, "shard_rows 4"),
    "lying shard_rows, same shard count": (set_key("shard_rows", 7), M, "key 'shards[0]' must be {file, first_row: 0, rows: 7"),
    "lying rows": (set_key("rows", 41), M, "key 'shards[5]'"),
    "non-numeric num_classes": (set_key("num_classes", "3x"), M, "key 'num_classes'"),
    "num_classes disagrees": (set_key("num_classes", 4), M, "key 'num_classes'"),
    "classes not a list": (set_key("classes", "grain"), M, "key 'classes'"),
    "unknown kind": (set_key("kind", "sparse"), M, "key 'kind'"),
    "lying dtype": (set_key("dtype", "fp32"), shard_name(0), "implies F32"),
    "NaN temperature": (lambda c: (c / MANIFEST).write_text((c / MANIFEST).read_text().replace(
        '"temperature": null', '"temperature": NaN')), M, "key 'temperature'"),
    "splits do not add up": (edit_manifest(lambda m: m["fingerprint"]["dataset"]["splits"].__setitem__("test", 1)), M,
                             "fingerprint.dataset.splits"),
    "shard entry without sha256": (edit_manifest(lambda m: m["shards"][2].pop("sha256")), M, "key 'shards[2]'"),
    # where shards may live
    "shard path ../x": (lambda c: (outside_file(c), set_shard_file("../elsewhere.safetensors")(c)), M,
                        "shards[0].file '../elsewhere.safetensors' points outside"),
    "absolute shard path": (lambda c: set_shard_file(outside_file(c))(c), M, "points outside"),
    "shard path /dev/zero": (set_shard_file("/dev/zero"), M, "shards[0].file '/dev/zero' points outside"),
    "symlink out of the folder": (symlink_out, M, f"shards[0].file '{shard_name(0)}' points outside"),
    "shard is a folder": (subfolder_shard, M, "shards[0].file 'sub' is not a regular file"),
    "shard missing": (lambda c: (c / shard_name(3)).unlink(), shard_name(3), "missing"),
}


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "c"
    write_cache(path, make_dataset())
    return path


def copy_cache(source, target):
    target.mkdir()
    for name in os.listdir(source):
        (target / name).write_bytes((source / name).read_bytes())
    return target


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_cache_gives_one_line_naming_the_file(case, good_cache, tmp_path, capsys):
    damage, names, key = CASES[case]
    cache = copy_cache(good_cache, tmp_path / "c")
    damage(cache)
    out = tmp_path / "export" / "teacher.npz"
    capsys.readouterr()
    assert main(["cache", "export", str(cache), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert names in err[0] and key in err[0], err[0]
    assert not (tmp_path / "export").exists()


def test_the_shipped_cache_still_opens_verified():
    from distillab.config import resolve_builtin

    cache = TeacherCache.open(resolve_builtin("builtin:r52-mpnet-teacher"))
    assert cache.verified and len(cache) == 9100


def permute_ids(cache, refresh_fingerprint: bool) -> None:
    """Swap the ids of rows 0 and 1 in shard 0 (labels grain and crude), refreshing checksums."""
    ids = json.loads(_metadata(cache, 0)["ids"])
    ids[0], ids[1] = ids[1], ids[0]
    edit_header(lambda h: h["__metadata__"].__setitem__("ids", json.dumps(ids)), index=0)(cache)
    if refresh_fingerprint:
        manifest = manifest_of(cache)
        stored = [i for index in range(manifest["num_shards"]) for i in json.loads(_metadata(cache, index)["ids"])]
        manifest["fingerprint"]["dataset"]["ids_sha256"] = sha256_lines(stored)
        write_manifest(cache, manifest)


def test_permuted_ids_are_refused_naming_the_shard_and_row(good_cache, tmp_path):
    cache = copy_cache(good_cache, tmp_path / "a")
    permute_ids(cache, refresh_fingerprint=False)
    with pytest.raises(InputError, match="fingerprint.dataset.ids_sha256"):
        TeacherCache.open(cache)
    cache = copy_cache(good_cache, tmp_path / "b")
    permute_ids(cache, refresh_fingerprint=True)  # the recorded dataset hash still matches the dataset
    opened = TeacherCache.open(cache)
    with pytest.raises(FingerprintMismatch, match=r"labels differ on 2 row\(s\) \(e.g. 'tiny-train-0' in "
                                                  r"shard-00000.safetensors: cache 'crude', dataset 'grain'\)"):
        opened.check_matches(make_dataset())
    assert np.array_equal(opened.labels(["tiny-train-0"]), [1])  # what would have been served
