"""TextDataset: construction-time validation, content_hash sensitivity, train_counts, a light package import."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from distillab.data import TextDataset, TextSplit, train_counts
from distillab.errors import InputError


def make(texts_train=("a b", "c d", "e f"), labels_train=(0, 1, 1), classes=("x", "y"), ids_train=None) -> TextDataset:
    ids_train = ids_train or [f"t-train-{i}" for i in range(len(texts_train))]
    return TextDataset(
        name="t",
        classes=list(classes),
        splits={
            "train": TextSplit(ids=ids_train, texts=list(texts_train), labels=list(labels_train)),
            "test": TextSplit(ids=["t-test-0"], texts=["g h"], labels=[0]),
        },
    )


def test_split_coerces_to_numpy_unicode_and_int64():
    split = make().splits["train"]
    assert split.ids.dtype.kind == "U" and split.labels.dtype == np.int64
    assert split.take(np.array([2, 0])).ids.tolist() == ["t-train-2", "t-train-0"]


@pytest.mark.parametrize(
    "change",
    [
        {"texts_train": ("a b", "c d", "e F")},  # one text
        {"labels_train": (0, 1, 0)},  # one label
        {"ids_train": ["t-train-0", "t-train-1", "t-train-9"]},  # one id
        {"classes": ("y", "x")},  # class order (= class ids)
        {"classes": ("x", "z")},  # a class name
        {"classes": ("x", "y", "w")},  # an extra class
    ],
)
def test_content_hash_changes_with_any_text_label_id_or_class(change):
    assert make(**change).content_hash() != make().content_hash()


def test_content_hash_ignores_row_order_but_not_split_membership():
    base = make()
    shuffled = make(texts_train=("e f", "a b", "c d"), labels_train=(1, 0, 1),
                    ids_train=["t-train-2", "t-train-0", "t-train-1"])
    assert shuffled.content_hash() == base.content_hash()
    moved = TextDataset(name="t", classes=["x", "y"], splits={
        "train": base.splits["train"].take([0, 1]),
        "test": TextSplit(ids=["t-test-0", "t-train-2"], texts=["g h", "e f"], labels=[0, 1]),
    })
    assert moved.content_hash() != base.content_hash()
    assert len(base.content_hash()) == 64


def test_validation_names_the_problem():
    with pytest.raises(InputError, match=r"row id 't-train-0' occurs more than once"):
        make(ids_train=["t-train-0", "t-train-0", "t-train-1"])
    with pytest.raises(InputError, match=r"split 'train', row 2 .*label 5 is outside \[0, 2\)"):
        make(labels_train=(0, 1, 5))
    with pytest.raises(InputError, match=r"split 'train', row 1 .*empty text"):
        make(texts_train=("a", "  ", "b"))
    with pytest.raises(InputError, match=r"class 'x' is listed twice"):
        make(classes=("x", "x"))
    with pytest.raises(InputError, match="3 texts but ids"):
        TextSplit(ids=["a", "b"], texts=["1", "2", "3"], labels=[0, 0, 0])


def test_train_counts_equals_counter():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=200)
    labels[labels == 3] = 4  # class 3 absent: its count must be 0, not a shorter array
    dataset = TextDataset(name="c", classes=[str(i) for i in range(8)], splits={
        "train": TextSplit(ids=[f"c-{i}" for i in range(200)], texts=["t"] * 200, labels=labels)})
    counter = Counter(labels.tolist())
    assert train_counts(dataset).tolist() == [counter.get(k, 0) for k in range(8)]
    assert train_counts(dataset).dtype == np.int64
    with pytest.raises(InputError, match="no split 'val'"):
        train_counts(dataset, "val")


def test_package_import_is_light():
    """The audit imports distillab.data.tiers; the package __init__ must not drag in datasets/pyarrow/torch."""
    code = (
        "import sys, distillab.data; "
        "heavy = [m for m in ('datasets', 'pyarrow', 'pandas', 'torch', 'distillab.data.load') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
