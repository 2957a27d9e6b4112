"""Lab datasets: search order, sha256 pinning, download into the cache (file:// and a local HTTP server)."""

from __future__ import annotations

import gzip
import json
import hashlib
import http.server
import shutil
import threading
from dataclasses import replace

import numpy as np
import pytest

from distillab.data import lab, load_dataset, load_lab_dataset, train_counts
from distillab.errors import InputError

PAYLOAD = b"label,text\nx,hello\n"
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No shared data on the search path and an empty cache: every lookup is explicit."""
    monkeypatch.setenv("DISTILLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DISTILLAB_DATA_DIR", raising=False)
    monkeypatch.delenv("DISTILLAB_OFFLINE", raising=False)
    return tmp_path


def toy_lab(url: str, sha256: str = DIGEST) -> lab.LabDataset:
    return lab.LabDataset(name="toy", folder="toy", description="", license="",
                          files=(lab.LabFile("sub/data.csv", url, sha256),), build=lambda files: files)


def test_search_order_data_dir_then_env_then_cache(isolated, monkeypatch):
    unreachable = toy_lab("http://127.0.0.1:9/never")
    for where in ("arg", "env1", "env2", "cache/toy"):
        (isolated / where / "sub").mkdir(parents=True)
    (isolated / "env2" / "toy" / "sub").mkdir(parents=True)
    for path in (isolated / "arg" / "sub", isolated / "env2" / "toy" / "sub", isolated / "cache" / "toy" / "sub"):
        (path / "data.csv").write_bytes(PAYLOAD)
    monkeypatch.setenv("DISTILLAB_DATA_DIR", f"{isolated / 'env1'}:{isolated / 'env2'}")
    file = unreachable.files[0]
    assert lab.locate(unreachable, file, isolated / "arg") == isolated / "arg" / "sub" / "data.csv"
    assert lab.locate(unreachable, file) == isolated / "env2" / "toy" / "sub" / "data.csv"  # env1 has nothing
    monkeypatch.delenv("DISTILLAB_DATA_DIR")
    assert lab.locate(unreachable, file) == isolated / "cache" / "toy" / "sub" / "data.csv"


def test_gz_copy_verifies_by_uncompressed_bytes(isolated):
    (isolated / "d" / "toy" / "sub").mkdir(parents=True)
    with gzip.open(isolated / "d" / "toy" / "sub" / "data.csv.gz", "wb") as handle:
        handle.write(PAYLOAD)
    toy = toy_lab("http://127.0.0.1:9/never")
    assert lab.locate(toy, toy.files[0], isolated / "d").name == "data.csv.gz"


def test_local_file_with_wrong_hash_is_refused(isolated):
    (isolated / "d" / "toy" / "sub").mkdir(parents=True)
    (isolated / "d" / "toy" / "sub" / "data.csv").write_bytes(PAYLOAD + b"tampered\n")
    toy = toy_lab("http://127.0.0.1:9/never")
    with pytest.raises(InputError, match=f"data.csv: sha256 is .*, expected {DIGEST}"):
        lab.locate(toy, toy.files[0], isolated / "d")


def test_download_from_file_url_lands_in_cache_once(isolated):
    source = isolated / "published.csv"
    source.write_bytes(PAYLOAD)
    toy = toy_lab(source.as_uri())
    path = lab.locate(toy, toy.files[0])
    assert path == isolated / "cache" / "toy" / "sub" / "data.csv" and path.read_bytes() == PAYLOAD
    source.unlink()  # the second lookup must not need the source any more
    assert lab.locate(toy, toy.files[0]) == path


def test_download_with_wrong_hash_leaves_nothing(isolated):
    source = isolated / "published.csv"
    source.write_bytes(PAYLOAD + b"changed upstream\n")
    toy = toy_lab(source.as_uri())
    with pytest.raises(InputError, match="download from .* has sha256 .*nothing was saved"):
        lab.locate(toy, toy.files[0])
    target_dir = isolated / "cache" / "toy" / "sub"
    assert not target_dir.exists() or list(target_dir.iterdir()) == []


def test_download_over_http(isolated):
    served = isolated / "www"
    served.mkdir()
    (served / "data.csv").write_bytes(PAYLOAD)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        toy = toy_lab(f"{base}/data.csv")
        assert lab.locate(toy, toy.files[0]).read_bytes() == PAYLOAD
        missing = replace(toy, folder="toy2", files=(replace(toy.files[0], url=f"{base}/gone.csv"),))
        with pytest.raises(InputError, match=r"not found locally and the download from .*gone\.csv failed \(HTTP 404"):
            lab.locate(missing, missing.files[0])
    finally:
        server.shutdown()
        server.server_close()


def test_offline_flag_gives_one_clear_error(isolated, monkeypatch):
    monkeypatch.setenv("DISTILLAB_OFFLINE", "1")
    toy = toy_lab("https://example.org/data.csv")
    with pytest.raises(InputError, match="sub/data.csv not found .*DISTILLAB_OFFLINE=1; copy it from https://example.org"):
        lab.locate(toy, toy.files[0])


def test_unknown_lab_name():
    with pytest.raises(InputError, match="unknown lab dataset 'r8' \\(available: r52, banking77, cfpb-issue-113\\)"):
        load_lab_dataset("r8")


def test_every_registered_file_is_pinned_and_present_in_shared_data(shared):
    for entry in lab.LAB_DATASETS.values():
        for file in entry.files:
            assert len(file.sha256) == 64 and file.url.startswith("https://raw.githubusercontent.com/")
            path = lab.locate(entry, file, shared)  # verifies the sha256
            assert str(path).startswith(str(shared))


def test_banking77(shared, monkeypatch):
    monkeypatch.setenv("DISTILLAB_OFFLINE", "1")
    ds = load_dataset({"lab": "banking77", "data_dir": str(shared)})
    assert ds.num_classes == 77 and len(ds.splits["train"]) == 10003 and len(ds.splits["test"]) == 3080
    assert ds.classes[:2] == ["card_arrival", "card_linking"]  # categories.json order = class ids
    assert (train_counts(ds, "test") == 40).all()
    counts = dict(zip(ds.classes, train_counts(ds)))
    assert counts["card_payment_fee_charged"] == 187 and counts["contactless_not_working"] == 35
    assert ds.splits["test"].ids[0] == "banking77-test-0"
    assert ds.source["lab"] == "banking77" and "train.csv" in ds.source["lab_files"]
    assert json.loads(json.dumps(ds.source)) == ds.source


def test_r52_from_a_cache_holding_plain_sgm_files(r52, shared, isolated, monkeypatch):
    """The layout a download produces (uncompressed .sgm in the cache) gives the same dataset as shared .gz files."""
    raw = isolated / "cache" / "reuters-r52" / "raw"
    raw.mkdir(parents=True)
    for gz in sorted((shared / "reuters-r52" / "raw").glob("reut2-*.sgm.gz")):
        with gzip.open(gz, "rb") as src, open(raw / gz.name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    monkeypatch.setenv("DISTILLAB_OFFLINE", "1")
    again = load_lab_dataset("r52")
    assert again.content_hash() == r52.content_hash()
    assert np.array_equal(train_counts(again), train_counts(r52))
