"""distillab.io: writes that fail leave nothing behind and say which path; readers refuse text that is not text."""

import errno
import json

import numpy as np
import pytest

from distillab.errors import InputError
from distillab.io import (
    atomic_dir, atomic_path, load_predictions, read_json, save_predictions, sidecar_path, write_json_atomic,
)


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match=r"a/b/x\.json: cannot write \(No space left on device\)"):
        with atomic_path(tmp_path / "a" / "b" / "x.json") as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert listing(tmp_path) == []  # no temp file and no folders made for it


def test_other_errors_in_the_block_are_not_disguised(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "x.json"):
            raise PermissionError(errno.EACCES, "a bug of the caller, not of the disk")
    assert listing(tmp_path) == []


def test_writing_under_a_file_names_the_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=rf"{tmp_path / 'f'} is a file, not a folder"):
        write_json_atomic(tmp_path / "f" / "sub" / "x.json", {})
    with pytest.raises(InputError, match="is a folder, not a file"):
        write_json_atomic(tmp_path, {})
    assert listing(tmp_path) == ["f"]


def test_atomic_dir_lands_all_files_or_none(tmp_path):
    target = tmp_path / "new" / "out"
    with pytest.raises(InputError, match="File too large"):
        with atomic_dir(target) as folder:
            (folder / "a.json").write_text("1")
            raise OSError(errno.EFBIG, "File too large")
    assert listing(tmp_path) == []
    with atomic_dir(target) as folder:
        (folder / "a.json").write_text("1")
        (folder / "b.md").write_text("2")
    assert listing(tmp_path) == ["new", "new/out", "new/out/a.json", "new/out/b.md"]
    (target / "keep.json").write_text("k")
    with atomic_dir(target) as folder:
        (folder / "a.json").write_text("3")
    assert (target / "a.json").read_text() == "3" and (target / "keep.json").exists() and (target / "b.md").exists()
    assert listing(tmp_path / "new") == ["out", "out/a.json", "out/b.md", "out/keep.json"]


@pytest.mark.parametrize("text, where", [('["a", "c\\ud800"]', r"\[1\]"), ('{"x": {"y": [1, "\\udc00"]}}', r"x\.y\[1\]")])
def test_read_json_refuses_lone_surrogates_naming_the_key(tmp_path, text, where):
    (tmp_path / "j.json").write_text(text)
    with pytest.raises(InputError, match=rf"j\.json: {where} holds a lone surrogate"):
        read_json(tmp_path / "j.json")


def test_read_json_nested_too_deeply(tmp_path):
    (tmp_path / "j.json").write_text("[" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        read_json(tmp_path / "j.json")


def test_predictions_named_json_are_refused_both_ways(tmp_path):
    logits, labels = np.eye(3), np.arange(3)
    with pytest.raises(InputError, match=r"p\.json: a predictions file must not be named \*\.json"):
        save_predictions(tmp_path / "p.json", logits, labels, meta={"m": 1})
    np.savez(tmp_path / "p.npz", logits=logits, labels=labels)
    (tmp_path / "p.npz").rename(tmp_path / "p.json")
    with pytest.raises(InputError, match=r"p\.json: a predictions file must not be named \*\.json"):
        load_predictions(tmp_path / "p.json")
    assert sidecar_path(tmp_path / "p.npz") == tmp_path / "p.json"


@pytest.mark.parametrize("preds, says", [
    (np.array([0.0, np.nan, 2.0]), "'preds' row 1 is nan"),
    (np.array([0.0, 1.5, 2.0]), "'preds' row 1 is 1.5"),
    (np.array([0, 1, 3]), "'preds' row 2 is 3"),
    (np.array(["0", "1", "2"]), "'preds' must hold class ids"),
])
def test_preds_must_be_class_ids(tmp_path, preds, says):
    np.savez(tmp_path / "p.npz", logits=2 * np.eye(3), labels=np.arange(3), preds=preds)  # one-hot rows would be probabilities
    with pytest.raises(InputError, match=says):
        load_predictions(tmp_path / "p.npz")


def test_preds_ties_are_counted(tmp_path):
    logits = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 3.0, 3.0]], dtype=np.float16)
    np.savez(tmp_path / "p.npz", logits=logits, labels=np.arange(3), preds=np.array([1, 1, 2]))
    assert load_predictions(tmp_path / "p.npz").preds_ties == 2  # rows 0 and 2 name the second tied class
    np.savez(tmp_path / "q.npz", logits=logits, labels=np.arange(3))
    assert load_predictions(tmp_path / "q.npz").preds_ties is None
    assert load_predictions(tmp_path / "p.npz").take(np.array([2, 0])).preds_ties == 2
    json.dumps(load_predictions(tmp_path / "p.npz").preds_ties)  # plain int: goes into audit.json as is


def test_atomic_dir_output_follows_the_umask(tmp_path):
    """mkdtemp makes 0700 folders; an output folder (e.g. the audit's) must follow the user's umask instead."""
    import os

    from distillab.io import atomic_dir

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "audit") as tmp:
            (tmp / "audit.json").write_text("{}", encoding="utf-8")
    finally:
        os.umask(old)
    assert (tmp_path / "audit").stat().st_mode & 0o777 == 0o755
