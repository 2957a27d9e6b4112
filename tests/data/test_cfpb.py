"""cfpb-issue-113: the course's merge / label-list / index-file path on real CFPB rows, and the Hub path offline.

The text lives on the Hub (unreachable here). The real label list and merge map are applied to the real
647-narrative sample; the Hub loader is driven through a stand-in ``datasets.load_dataset`` whose train
split is as long as the real one, so the real index files (57,846 / 6,430 rows) are exercised too.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from distillab.data import lab, load_dataset, load_lab_dataset, train_counts
from distillab.errors import InputError

NARRATIVE, ISSUE = "Consumer complaint narrative", "Issue"


@pytest.fixture(scope="module")
def course(shared):
    folder = shared / "cfpb-issue-113"
    return {
        "files": {f.path: folder / f.path for f in lab.LAB_DATASETS["cfpb-issue-113"].files},
        "labels": json.loads((folder / "label_list.json").read_text()),
        "merge": {k: v for k, v in json.loads((folder / "label_merge_mapping.json").read_text()).items()
                  if not k.startswith("_")},
        "sample": shared / "cfpb-complaints" / "small_complaints.csv",
    }


@pytest.fixture(scope="module")
def narratives(course):
    """(text, raw Issue) of the sample's rows with a narrative, read independently with csv.DictReader."""
    with course["sample"].open(encoding="utf-8", newline="") as handle:
        return [(r[NARRATIVE], r[ISSUE]) for r in csv.DictReader(handle) if r[NARRATIVE].strip()]


def test_real_sample_through_the_course_label_path(course, narratives):
    spec = lab.cfpb_issue_113_spec(
        course["files"], text_source={"path": str(course["sample"]), "text_column": NARRATIVE, "label_column": ISSUE}
    )
    # The course's index files point into the 64,292-row Hub split; on the 2,000-row sample use our own.
    spec["split_indices"] = {"train": {"split": "train", "indices": list(range(0, 2000, 2))},
                             "val": {"split": "train", "indices": list(range(1, 2000, 2))}}
    spec["empty_text"] = "drop"  # 1,353 sample rows have no narrative
    ds = load_dataset(spec)
    assert ds.classes == course["labels"] and ds.num_classes == 113
    n = len(ds.splits["train"]) + len(ds.splits["val"])
    assert n == len(narratives) == 647  # SOURCE.md: all 647 map into the label list
    assert ds.source["dropped"] == {"empty_text": {"train": 1000 - len(ds.splits["train"]),
                                                   "val": 1000 - len(ds.splits["val"])}}
    # Every label equals merge_map.get(Issue, Issue), looked up by the raw row number in the id.
    with course["sample"].open(encoding="utf-8", newline="") as handle:
        raw_rows = list(csv.DictReader(handle))
    for split in ds.splits.values():
        for row_id, text, label in zip(split.ids, split.texts, split.labels):
            raw = raw_rows[int(row_id.rsplit("-", 1)[1])]
            assert text == raw[NARRATIVE]
            assert ds.classes[label] == course["merge"].get(raw[ISSUE], raw[ISSUE])
    counts = train_counts(ds, "train") + train_counts(ds, "val")
    assert int((counts > 0).sum()) == 74
    top = sorted(zip(counts.tolist(), ds.classes), reverse=True)[:2]
    assert top == [(145, "Incorrect information on your report"), (59, "Attempts to collect debt not owed")]
    assert sum(issue in course["merge"] for _, issue in narratives) == 95  # rows the merge map actually changed


def test_without_merge_map_an_old_label_is_an_error_naming_the_row(course):
    spec = {"path": str(course["sample"]), "text_column": NARRATIVE, "label_column": ISSUE,
            "label_list": str(course["files"]["label_list.json"]), "empty_text": "drop"}
    with pytest.raises(InputError, match=r"small_complaints\.csv, row 9: label 'Struggling to pay mortgage' is not one of the 113"):
        load_dataset(spec)


def test_sample_column_names_must_be_given(course):
    with pytest.raises(InputError, match=r"no column 'Consumer Complaint'.*'Consumer complaint narrative'"):
        load_dataset({"path": str(course["sample"]), "text_column": "Consumer Complaint", "label_column": ISSUE})


def fake_hub(narratives, course, n_train=64_292):
    """A DatasetDict shaped like determined-ai/consumer_complaints_medium, built from the real sample."""
    import datasets

    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(narratives), size=n_train)
    train = {"Consumer Complaint": [narratives[i][0][:200] for i in picks], "Issue": [narratives[i][1] for i in picks]}
    test_rows = narratives[:20] + [("a complaint", "A label dropped by the course's filter")]
    test = {"Consumer Complaint": [t for t, _ in test_rows], "Issue": [i for _, i in test_rows]}
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(train), "test": datasets.Dataset.from_dict(test)})


def test_lab_cfpb_through_the_hub_loader_with_the_real_index_files(shared, course, narratives, monkeypatch):
    import datasets

    hub = fake_hub(narratives, course)
    calls = []

    def fake_load_dataset(path, name=None, revision=None):
        calls.append(path)
        return hub

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setenv("DISTILLAB_OFFLINE", "1")
    ds = load_lab_dataset("cfpb-issue-113", data_dir=str(shared))
    assert calls == ["determined-ai/consumer_complaints_medium"]
    assert list(ds.splits) == ["train", "val", "test"]
    assert len(ds.splits["train"]) == 57_846 and len(ds.splits["val"]) == 6_430
    assert len(ds.splits["test"]) == 20  # the unknown label is dropped, as in the course
    assert ds.source["dropped"] == {"unknown_label": {"test": {"A label dropped by the course's filter": 1}}}
    train_indices = json.loads(course["files"]["train_indices.json"].read_text())
    assert ds.splits["train"].ids.tolist() == [f"cfpb-train-{i}" for i in train_indices]
    hub_issue = hub["train"].with_format("arrow")["Issue"].to_pylist()
    val_indices = json.loads(course["files"]["val_indices.json"].read_text())
    expected = [course["labels"].index(course["merge"].get(hub_issue[i], hub_issue[i])) for i in val_indices]
    assert ds.splits["val"].labels.tolist() == expected
    assert ds.source["kind"] == "hub" and ds.source["split_indices"]["val"]["rows"] == 6_430


def test_hub_class_label_columns_become_names(monkeypatch):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    table = datasets.Dataset.from_dict({"text": ["good", "bad", "fine"], "label": [1, 0, 1]}, features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, revision=None: datasets.DatasetDict({"train": table}))
    ds = load_dataset({"hub": "someone/reviews", "label_list": ["pos", "neg"]})
    assert ds.name == "reviews" and ds.splits["train"].labels.tolist() == [0, 1, 0]
    assert ds.splits["train"].ids.tolist() == ["reviews-train-0", "reviews-train-1", "reviews-train-2"]


def test_unreachable_hub_is_one_clear_error(monkeypatch, tmp_path):
    """The real client in offline mode with an empty cache: what a user on an offline machine sees."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    with pytest.raises(InputError) as info:
        load_dataset({"hub": "determined-ai/consumer_complaints_medium", "text_column": "Consumer Complaint",
                      "label_column": "Issue"})
    message = str(info.value)
    assert "cannot load 'determined-ai/consumer_complaints_medium' from the Hugging Face Hub" in message
    assert "HF_DATASETS_OFFLINE=1" in message and "load them with 'path'" in message
    assert "\n" not in message
