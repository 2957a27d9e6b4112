"""Cache writes fail cleanly (one line naming the file, nothing partial left) and every command that
uses a cache verifies its shards unless told not to."""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from teacher_helpers import make_dataset, write_dataset_folder
from test_cache import write_cache

from distillab.cli import main
from distillab.teacher.cache import shard_name


@pytest.fixture
def spec(tmp_path):
    return str(write_dataset_folder(tmp_path / "data", make_dataset()))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def npz(tmp_path, bad_row=None, bad=np.nan) -> str:
    logits = np.random.RandomState(0).normal(size=(42, 3)).astype(np.float32)
    if bad_row is not None:
        logits[bad_row, 0] = bad
    np.savez(tmp_path / "logits.npz", logits=logits)
    return str(tmp_path / "logits.npz")


@pytest.mark.parametrize("bad,message", [(np.nan, "NaN or inf in 'logits' at row 20 (row id 'tiny-train-20'"),
                                         (7e4, "'logits' at row 20 (row id 'tiny-train-20') reach 7e+04")])
def test_bad_values_in_an_import_name_the_file_and_row_before_writing(tmp_path, spec, capsys, bad, message):
    path = npz(tmp_path, bad_row=20, bad=bad)
    out = tmp_path / "cache"
    assert main(["cache", "import", path, "--data", spec, "--out", str(out), "--no-progress"]) == 2
    assert f"{path}: {message}" in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("existing", [False, True])
def test_disk_full_midway_through_an_import_leaves_nothing_behind(tmp_path, spec, capsys, monkeypatch, existing):
    calls = []

    def full_at_the_third_shard(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_at_the_third_shard)
    out = tmp_path / "cache"
    if existing:
        out.mkdir()  # a folder the user made stays, empty
    assert main(["cache", "import", npz(tmp_path), "--data", spec, "--out", str(out), "--shard-rows", "8",
                 "--no-progress"]) == 2
    assert f"{out / shard_name(2)}: cannot write (No space left on device)" in one_error_line(capsys)
    assert (os.listdir(out) == []) if existing else not out.exists()  # no in-progress.json, no shards 0 and 1


def test_import_out_under_a_file_is_one_line(tmp_path, spec, capsys):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "cache"
    assert main(["cache", "import", npz(tmp_path), "--data", spec, "--out", str(out), "--no-progress"]) == 2
    assert f"{out}: cannot be made: {tmp_path / 'file'} is a file" in one_error_line(capsys)


def test_file_size_limit_during_export_names_the_file_and_leaves_nothing(tmp_path):
    write_cache(tmp_path / "c", make_dataset())
    out = tmp_path / "export" / "teacher.npz"
    limited = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024)); "
               "from distillab.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", limited, "cache", "export", str(tmp_path / "c"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert f"{out}: cannot write (File too large)" in err[0]
    assert not (tmp_path / "export").exists()  # not even the folder made for it


def test_export_out_must_be_an_npz_file(tmp_path, capsys):
    write_cache(tmp_path / "c", make_dataset())
    assert main(["cache", "export", str(tmp_path / "c"), "--out", str(tmp_path / "teacher.json")]) == 2
    assert "--out must name a .npz file" in one_error_line(capsys)
    assert not (tmp_path / "teacher.json").exists()


def test_train_verifies_the_cache_unless_told_not_to(tmp_path, spec, capsys):
    write_cache(tmp_path / "c", make_dataset())
    shard = tmp_path / "c" / shard_name(2)
    data = bytearray(shard.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    data[8 + length + json.loads(data[8:8 + length])["logits"]["data_offsets"][0]] ^= 0x01  # a teacher logit
    shard.write_bytes(bytes(data))
    argv = ["train", "--data", spec, "--cache", str(tmp_path / "c"), "--arm", "kd", "--student", "bow",
            "--bow-buckets", "256", "--bow-dim", "4", "--epochs", "1", "--out", str(tmp_path / "runs")]
    capsys.readouterr()
    assert main(argv) == 2
    assert f"{shard}: sha256 mismatch" in one_error_line(capsys)
    assert main([*argv, "--no-verify-cache"]) == 0
    assert "NOT verified" in capsys.readouterr().err
