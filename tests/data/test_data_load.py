"""load_dataset on local files: formats, folder discovery, labels, index files, stratified splits, bad input."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from distillab.data import load_dataset, train_counts
from distillab.errors import InputError

ROWS = [("good film", "pos"), ("bad film", "neg"), ("great plot", "pos"), ("awful plot", "neg"),
        ("fine acting", "positive"), ("dull scenes", "neg"), ("rare one", "odd")]


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows, keys=("text", "label")) -> Path:
    path.write_text("".join(json.dumps(dict(zip(keys, row))) + "\n" for row in rows), encoding="utf-8")
    return path


def test_csv_jsonl_json_parquet_read_the_same(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = ROWS[:4]
    write_csv(tmp_path / "a.csv", rows)
    write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "a.json").write_text(json.dumps([{"text": t, "label": l} for t, l in rows]), encoding="utf-8")
    pq.write_table(pa.table({"text": [t for t, _ in rows], "label": [l for _, l in rows]}), tmp_path / "a.parquet")
    hashes = set()
    for ext in ("csv", "jsonl", "json", "parquet"):
        ds = load_dataset({"path": str(tmp_path / f"a.{ext}"), "name": "a"})
        assert ds.classes == ["neg", "pos"]  # sorted
        assert ds.splits["train"].ids.tolist() == ["a-train-0", "a-train-1", "a-train-2", "a-train-3"]
        assert ds.splits["train"].labels.tolist() == [1, 0, 1, 0]
        hashes.add(ds.content_hash())
    assert len(hashes) == 1


def test_folder_discovery_takes_split_named_files_and_shards(tmp_path):
    write_csv(tmp_path / "train-00000-of-00002.csv", ROWS[:2])
    write_csv(tmp_path / "train-00001-of-00002.csv", ROWS[2:4])
    write_csv(tmp_path / "test.csv", ROWS[5:6])
    (tmp_path / "categories.json").write_text('["neg", "pos"]')  # a side file, not a split
    ds = load_dataset({"path": str(tmp_path), "name": "f"})
    assert list(ds.splits) == ["train", "test"]  # canonical order, not alphabetical
    # Row numbers run on across shards, so ids stay unique and point at the source row.
    assert ds.splits["train"].ids.tolist() == [f"f-train-{i}" for i in range(4)]
    assert ds.splits["test"].ids.tolist() == ["f-test-0"]
    assert [entry["sha256"] for entry in ds.source["files"]["train"]] and ds.source["kind"] == "local"


def test_errors_in_a_later_shard_name_that_file_and_its_row(tmp_path):
    write_csv(tmp_path / "train-00000-of-00002.csv", ROWS[:3])
    second = write_csv(tmp_path / "train-00001-of-00002.csv", [ROWS[3], ("no label here", "")])
    with pytest.raises(InputError, match=rf"^{re.escape(str(second))}, row 1: empty value in label column"):
        load_dataset({"path": str(tmp_path)})
    write_csv(second, [ROWS[3], ("", "pos")])
    with pytest.raises(InputError, match=rf"^{re.escape(str(second))}, row 1: empty text"):
        load_dataset({"path": str(tmp_path)})
    write_csv(second, [ROWS[3], ("odd one", "odd")])
    with pytest.raises(InputError, match=rf"^{re.escape(str(second))}, row 1: label 'odd' is not one of"):
        load_dataset({"path": str(tmp_path), "label_list": ["neg", "pos"]})


def test_folder_without_split_files_says_how_to_name_them(tmp_path):
    write_csv(tmp_path / "reviews.csv", ROWS)
    with pytest.raises(InputError, match="files: {train: FILE, test: FILE}"):
        load_dataset({"path": str(tmp_path)})


def test_merge_map_skips_underscore_keys_and_min_count_filters(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS)
    write_csv(tmp_path / "test.csv", [("so so", "odd"), ("nice", "positive"), ("meh", "neg")])
    merge = tmp_path / "merge.json"
    merge.write_text(json.dumps({"_comment": "pos", "positive": "pos"}))
    ds = load_dataset({"path": str(tmp_path), "name": "m", "merge_map": str(merge), "min_class_count": 2})
    assert ds.classes == ["neg", "pos"]  # "odd" has 1 train row < 2
    assert train_counts(ds).tolist() == [3, 3]  # "positive" merged into "pos"
    assert ds.splits["test"].labels.tolist() == [1, 0]
    assert ds.splits["test"].ids.tolist() == ["m-test-1", "m-test-2"]
    assert ds.source["dropped"]["min_class_count"] == {"train": {"odd": 1}, "test": {"odd": 1}}
    assert ds.source["merge_map"]["entries"] == 1


def test_label_list_fixes_order_and_unknown_labels_are_an_error_or_dropped(tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS)
    spec = {"path": str(path), "merge_map": {"positive": "pos"}, "label_list": ["pos", "neg"]}
    with pytest.raises(InputError, match=r"d\.csv, row 6: label 'odd' is not one of the 2 classes"):
        load_dataset(spec)
    ds = load_dataset({**spec, "unknown_labels": "drop"})
    assert ds.classes == ["pos", "neg"]
    assert ds.splits["train"].labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert ds.source["dropped"]["unknown_label"] == {"train": {"odd": 1}}


def test_label_in_test_but_not_train_is_an_error(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS[:4])
    write_csv(tmp_path / "test.csv", [("x", "pos"), ("y", "new")])
    with pytest.raises(InputError, match=r"test\.csv, row 1: label 'new'"):
        load_dataset({"path": str(tmp_path)})


def test_integer_labels_sort_numerically(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", [("a", 10), ("b", 2), ("c", 1)])
    ds = load_dataset({"path": str(path)})
    assert ds.classes == ["1", "2", "10"]


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [
        (ROWS, {"text_column": "body"}, r"no column 'body' \(columns: 'text', 'label'\); set text_column"),
        (ROWS, {"label_column": "y"}, r"no column 'y'.*set label_column"),
        ([("ok", "pos"), ("  ", "neg")], {}, r"d\.csv, row 1: empty text"),
        ([("ok", "pos"), ("fine", "")], {}, r"d\.csv, row 1: empty value in label column 'label'"),
    ],
)
def test_bad_input_names_file_column_and_row(tmp_path, rows, options, message):
    path = write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(InputError, match=message):
        load_dataset({"path": str(path), **options})


def test_empty_text_can_be_dropped_and_is_counted(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("ok", "pos"), ("", "neg"), ("fine", "neg")])
    ds = load_dataset({"path": str(path), "empty_text": "drop", "name": "d"})
    assert ds.splits["train"].ids.tolist() == ["d-train-0", "d-train-2"]  # ids keep the raw row number
    assert ds.source["dropped"]["empty_text"] == {"train": 1}


def test_id_column_and_duplicate_ids(tmp_path):
    write_csv(tmp_path / "train.csv", [("a", "x", "r1"), ("b", "y", "r2")], header=("text", "label", "uid"))
    write_csv(tmp_path / "test.csv", [("c", "x", "r3"), ("d", "y", "r1")], header=("text", "label", "uid"))
    with pytest.raises(InputError, match=r"test\.csv, row 1: duplicate row id 'r1' \(first at .*train\.csv, row 0\)"):
        load_dataset({"path": str(tmp_path), "id_column": "uid"})
    write_csv(tmp_path / "test.csv", [("c", "x", "r3"), ("d", "y", "r4")], header=("text", "label", "uid"))
    ds = load_dataset({"path": str(tmp_path), "id_column": "uid"})
    assert ds.splits["test"].ids.tolist() == ["r3", "r4"]


def test_split_indices_select_raw_rows_before_filtering(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS)
    write_csv(tmp_path / "test.csv", ROWS[:2])
    (tmp_path / "tr.json").write_text("[0, 1, 2, 3, 6]")
    spec = {"path": str(tmp_path), "name": "s", "label_list": ["neg", "pos"], "unknown_labels": "drop",
            "split_indices": {"train": {"split": "train", "indices": str(tmp_path / "tr.json")},
                              "val": {"split": "train", "indices": [5, 4]}}}
    ds = load_dataset(spec)
    assert list(ds.splits) == ["train", "val", "test"]
    assert ds.splits["train"].ids.tolist() == ["s-train-0", "s-train-1", "s-train-2", "s-train-3"]  # row 6 'odd' dropped
    assert ds.splits["val"].ids.tolist() == ["s-train-5"]  # row 4 'positive' has no merge map here: dropped
    assert ds.splits["test"].ids.tolist() == ["s-test-0", "s-test-1"]
    assert ds.source["split_indices"]["train"]["rows"] == 5


@pytest.mark.parametrize(
    ("val_indices", "message"),
    [([1, 5], r"position 0: raw row 1 of 'train' is already in split 'train'"),
     ([5, 70], r"position 1: index 70 is outside raw split 'train' \(0\.\.6\)"),
     ("[1.5]", "integer row indices")],
)
def test_bad_index_files(tmp_path, val_indices, message):
    path = write_csv(tmp_path / "d.csv", ROWS)
    val = tmp_path / "val.json"
    val.write_text(val_indices if isinstance(val_indices, str) else json.dumps(val_indices))
    spec = {"path": str(path), "unknown_labels": "drop", "label_list": ["neg", "pos"],
            "split_indices": {"train": {"split": "train", "indices": [0, 1, 2]},
                              "val": {"split": "train", "indices": str(val)}}}
    with pytest.raises(InputError, match=message):
        load_dataset(spec)


def test_stratified_split_is_seeded_disjoint_and_proportional(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.choice(["a", "b", "c"], size=300, p=[0.6, 0.3, 0.1])
    path = write_csv(tmp_path / "d.csv", [(f"text {i}", label) for i, label in enumerate(labels)])
    spec = {"path": str(path), "stratified_split": {"split": "train", "into": {"train": 0.8, "val": 0.2}, "seed": 7}}
    first, again = load_dataset(spec), load_dataset(spec)
    assert first.content_hash() == again.content_hash()
    other = load_dataset({**spec, "stratified_split": {**spec["stratified_split"], "seed": 8}})
    assert other.content_hash() != first.content_hash()
    train, val = first.splits["train"], first.splits["val"]
    assert not set(train.ids) & set(val.ids) and len(train) + len(val) == 300
    total = Counter(labels.tolist())
    for k, name in enumerate(first.classes):
        assert int((val.labels == k).sum()) == round(0.2 * total[name])  # per-class proportions, exactly
    assert list(train.ids) == sorted(train.ids, key=lambda s: int(s.rsplit("-", 1)[1]))  # source order kept


def test_spec_errors():
    with pytest.raises(InputError, match="exactly one of lab, hub or path"):
        load_dataset({"text_column": "t"})
    with pytest.raises(InputError, match="unknown key.*labels"):
        load_dataset({"path": "x", "labels": []})
    with pytest.raises(InputError, match="label_list or min_class_count, not both"):
        load_dataset({"path": "x", "label_list": ["a"], "min_class_count": 2})
    with pytest.raises(InputError, match="a lab dataset takes only data_dir"):
        load_dataset({"lab": "r52", "text_column": "t"})


def test_more_bad_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["ok", None], "label": ["a", "b"]}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match=r"p\.parquet, row 1: empty text"):
        load_dataset({"path": str(tmp_path / "p.parquet")})
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.csv, line 2: not UTF-8 text \(invalid continuation byte at byte 14\)"):
        load_dataset({"path": str(tmp_path / "latin.csv")})
    (tmp_path / "ragged.csv").write_text("text,label\nok,a\nextra,b,c\n")
    with pytest.raises(InputError, match=r"ragged\.csv, row 1: 3 fields but the header has 2"):
        load_dataset({"path": str(tmp_path / "ragged.csv")})
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", \n')
    with pytest.raises(InputError, match=r"bad\.jsonl, line 2: not valid JSON"):
        load_dataset({"path": str(tmp_path / "bad.jsonl")})
    (tmp_path / "d.tsv").write_text("text\tlabel\n")
    with pytest.raises(InputError, match=r"unsupported file type '\.tsv'"):
        load_dataset({"path": str(tmp_path / "d.tsv")})
    write_csv(tmp_path / "ok.csv", ROWS)
    with pytest.raises(InputError, match="unknown_labels must be one of error, drop"):
        load_dataset({"path": str(tmp_path / "ok.csv"), "unknown_labels": "ignore"})
    with pytest.raises(InputError, match="a merge map must be a JSON object"):
        load_dataset({"path": str(tmp_path / "ok.csv"), "merge_map": ["a"]})
    with pytest.raises(InputError, match="label 'pos' is listed more than once"):
        load_dataset({"path": str(tmp_path / "ok.csv"), "label_list": ["pos", "neg", "pos"]})


def test_source_is_plain_json(tmp_path):
    """The provenance goes into manifests and reports: it must serialise without custom encoders."""
    write_csv(tmp_path / "train.csv", ROWS)
    merge = tmp_path / "m.json"
    merge.write_text('{"positive": "pos"}')
    ds = load_dataset({"path": str(tmp_path), "merge_map": str(merge), "min_class_count": 2,
                       "stratified_split": {"into": {"train": 0.5, "val": 0.5}, "seed": 3}})
    assert json.loads(json.dumps(ds.source)) == ds.source
    assert ds.source["stratified_split"] == {"split": "train", "into": {"train": 0.5, "val": 0.5}, "seed": 3}


def test_combine_splits_concatenates_in_order_and_keeps_ids(tmp_path):
    from distillab.data.load import load_dataset as load

    (tmp_path / "train.csv").write_text("text,label\na,x\nb,y\n")
    (tmp_path / "test.csv").write_text("text,label\nc,x\n")
    (tmp_path / "val.csv").write_text("text,label\nd,y\n")
    dataset = load({"path": str(tmp_path), "combine_splits": {"train_all": ["train", "test"]}})
    assert sorted(dataset.splits) == ["train_all", "val"]
    combined = dataset.splits["train_all"]
    assert combined.texts == ["a", "b", "c"]
    assert combined.labels.tolist() == [0, 1, 0]
    assert len(set(combined.ids.tolist())) == 3
    with pytest.raises(InputError, match="does not have"):
        load({"path": str(tmp_path), "combine_splits": {"all": ["train", "nope"]}})
