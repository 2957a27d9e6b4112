"""Malformed dataset files and specs: one InputError naming the file and the row, line, column or key.

Each case here was a silent wrong answer or a raw traceback before (issue 9).
"""

from __future__ import annotations

import re

import pytest

from distillab.data import load_dataset
from distillab.data.load import spec_from_argument
from distillab.errors import InputError

GOOD_CSV = b"text,label\ngood film,pos\nbad film,neg\n"


def test_repeated_csv_column_is_refused_not_interleaved(tmp_path):
    """``text,label,text`` used to put both text columns into one list: 4 texts for 2 labels, misaligned."""
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label,text\ngood film,pos,other a\nbad film,neg,other b\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: column 'text' appears 2 times in the header "
                                         r"\(columns 1, 3\)"):
        load_dataset({"path": str(path)})


def test_one_unnamed_csv_column_is_allowed_two_are_a_repeat(tmp_path):
    """pandas writes its index as an unnamed first column; that is harmless. Two unnamed columns are a repeat."""
    path = tmp_path / "reviews.csv"
    path.write_bytes(b",text,label\n0,good film,pos\n1,bad film,neg\n")
    assert load_dataset({"path": str(path)}).splits["train"].texts == ["good film", "bad film"]
    path.write_bytes(b",text,label,\n0,good film,pos,\n1,bad film,neg,\n")
    with pytest.raises(InputError, match=r"reviews\.csv: column '' appears 2 times in the header \(columns 1, 4\)"):
        load_dataset({"path": str(path)})


# (file name, bytes, message after "<tmp>/<file name>")
BAD_FILES = [
    ("header_only.csv", b"text,label\n", r": no data rows \(split 'train' is empty\)"),
    ("empty.jsonl", b"", r": no data rows"),
    ("empty_list.json", b"[]", r": no data rows"),
    ("latin1.jsonl", '{"text": "café", "label": "a"}\n'.encode("latin-1"), r", line 1: not UTF-8 text"),
    ("latin1_line3.csv", b"text,label\na,pos\nb,neg\ncaf\xe9,pos\n", r", line 4: not UTF-8 text"),
    ("surrogate_text.jsonl", b'{"text": "a\\ud800", "label": "pos"}\n{"text": "b", "label": "neg"}\n',
     r", row 0: column 'text' holds a lone surrogate"),
    ("surrogate_label.jsonl", b'{"text": "a", "label": "pos"}\n{"text": "b", "label": "n\\udc00"}\n',
     r", row 1: column 'label' holds a lone surrogate"),
    ("surrogate.json", b'[{"text": "a\\udfff", "label": "pos"}]', r", row 0: column 'text' holds a lone surrogate"),
    ("repeated_key.jsonl", b'{"text": "a", "label": "pos", "text": "b"}\n',
     r", line 1: not valid JSON \(key 'text' appears twice in one object"),
    ("repeated_key.json", b'[{"text": "a", "label": "pos", "label": "neg"}]', r": not valid JSON \(key 'label' appears twice"),
    ("nan_label.jsonl", b'{"text": "a", "label": "pos"}\n{"text": "b", "label": NaN}\n', r", line 2: not valid JSON \(NaN"),
    ("huge_number.jsonl", b'{"text": "a", "label": 1e999}\n', r", row 0: label column 'label' holds float inf"),
    ("huge_int.jsonl", b'{"text": "a", "label": 1' + b"0" * 5000 + b"}\n", r", line 1: not valid JSON \(Exceeds the limit"),
    ("deep.json", b"[" * 100_000, r": not valid JSON \((nested too deeply|.*)\)"),
    ("float_label.jsonl", b'{"text": "a", "label": 1.5}\n', r", row 0: label column 'label' holds float 1\.5; a label must be"),
    ("bool_label.jsonl", b'{"text": "a", "label": "pos"}\n{"text": "b", "label": true}\n',
     r", row 1: label column 'label' holds bool True"),
    ("list_label.jsonl", b'{"text": "a", "label": ["pos"]}\n', r", row 0: label column 'label' holds list \['pos'\]"),
    ("object_text.jsonl", b'{"text": {"a": 1}, "label": "pos"}\n', r", row 0: text column 'text' holds dict"),
    ("number_text.json", b'[{"text": 7, "label": "pos"}]', r", row 0: text column 'text' holds int 7, not a string"),
    ("not_object.jsonl", b'{"text": "a", "label": "pos"}\n[1, 2]\n', r", row 1: expected a JSON object, got list"),
    ("bad_parquet.parquet", b"PAR1 not really", r": cannot read as Parquet \("),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_data_file_is_one_error_naming_it(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}{message}") as caught:
        load_dataset({"path": str(path)})
    assert "\n" not in str(caught.value)


def test_bad_parquet_cells_name_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [1.0, 2.0]}), path)  # float labels from a NaN-holding export
    with pytest.raises(InputError, match=r"p\.parquet, row 0: label column 'label' holds float 1\.0"):
        load_dataset({"path": str(path)})
    pq.write_table(pa.table({"text": [["a"], ["b"]], "label": ["x", "y"]}), path)
    with pytest.raises(InputError, match=r"p\.parquet, row 0: text column 'text' holds list \['a'\]"):
        load_dataset({"path": str(path)})


def test_jsonl_with_a_byte_order_mark_reads_like_csv_does(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\n')
    assert load_dataset({"path": str(path)}).classes == ["neg", "pos"]


def test_second_bom_in_csv_header_is_named(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbf\xef\xbb\xbftext,label\na,pos\n")
    with pytest.raises(InputError, match=r"no column 'text' .*'\\ufefftext' has extra spaces or a byte-order mark"):
        load_dataset({"path": str(path)})


@pytest.mark.parametrize("key, content, message", [
    ("merge_map", b'{"pos": "\xff"}', r": not UTF-8 text \(invalid start byte at byte 9\)"),
    ("merge_map", b'{"pos": "p\\ud800"}', r": (merge map entry )?'?pos'? holds a lone surrogate"),
    ("label_list", b'["pos", "neg"]\xff', r": not UTF-8 text"),
    ("label_list", b'["pos", "n\\udc00"]', r": (label 1|\[1\]) holds a lone surrogate"),
], ids=["merge-latin1", "merge-surrogate", "labels-latin1", "labels-surrogate"])
def test_bad_label_files_are_named(tmp_path, key, content, message):
    data = tmp_path / "a.csv"
    data.write_bytes(GOOD_CSV)
    side = tmp_path / f"{key}.json"
    side.write_bytes(content)
    with pytest.raises(InputError, match=rf"^{re.escape(str(side))}{message}"):
        load_dataset({"path": str(data), key: str(side)})


def test_label_files_that_are_folders_are_named(tmp_path):
    data = tmp_path / "a.csv"
    data.write_bytes(GOOD_CSV)
    for key in ("merge_map", "label_list"):
        with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path))}: cannot read \(Is a directory\)"):
            load_dataset({"path": str(data), key: str(tmp_path)})
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path))}: cannot read"):
        load_dataset({"path": str(data), "split_indices": {"val": {"indices": str(tmp_path)}}})


@pytest.mark.parametrize("extra, message", [
    ({"path": 5}, r"dataset spec: path must be a string, got int"),
    ({"name": ["x"], "class_split": 3}, r"dataset spec: name must be a string, got list; class_split must be a string"),
    ({"files": {"train": 5}}, r"dataset spec: files must map a split name to a file name"),
    ({"files": ["a.csv"]}, r"dataset spec: files must map"),
    ({"split_indices": [1]}, r"dataset spec: split_indices must be a mapping, got list"),
    ({"split_indices": {"val": {"split": ["train"], "indices": [0]}}}, r"split_indices\.val: no raw split \['train'\]"),
    ({"stratified_split": 0.5}, r"dataset spec: stratified_split must be a mapping"),
    ({"stratified_split": {"into": {"a": "half", "b": 0.5}}}, r"stratified_split\.into: fractions must be numbers"),
    ({"stratified_split": {"into": {"a": float("nan"), "b": 0.5}}}, r"stratified_split\.into: fractions must be numbers"),
    ({"stratified_split": {"into": {"a": 0.5, "b": 0.5}, "seed": -1}}, r"stratified_split\.seed: must be an integer"),
    ({"stratified_split": {"into": {"a": 0.5, "b": 0.5}, "seed": 1e30}}, r"stratified_split\.seed: must be an integer"),
    ({"stratified_split": {"into": {"a": 0.5, "b": 0.5}, "seed": "x"}}, r"stratified_split\.seed: must be an integer"),
])
def test_spec_values_of_the_wrong_type_name_the_key(tmp_path, extra, message):
    data = tmp_path / "a.csv"
    data.write_bytes(GOOD_CSV)
    with pytest.raises(InputError, match=message):
        load_dataset({"path": str(data), **extra})


def test_lab_spec_with_a_non_string_data_dir_names_the_key():
    with pytest.raises(InputError, match=r"dataset spec: data_dir must be a string, got int"):
        load_dataset({"lab": "r52", "data_dir": 5})


def test_hub_spec_with_a_non_string_id_names_the_key():
    with pytest.raises(InputError, match=r"dataset spec: hub must be a string, got int"):
        load_dataset({"hub": 5})


def test_every_text_dropped_says_so_not_min_count_none(tmp_path):
    data = tmp_path / "a.csv"
    data.write_bytes(b"text,label\n ,pos\n,neg\n")
    with pytest.raises(InputError, match=r"split 'train' has no rows left to take classes from"):
        load_dataset({"path": str(data), "empty_text": "drop"})


def test_spec_files_that_are_not_utf8_are_named(tmp_path):
    for name in ("spec.json", "spec.yaml"):
        path = tmp_path / name
        path.write_bytes(b'{"path": "caf\xe9.csv"}')
        with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: not (valid )?UTF-8"):
            spec_from_argument(str(path))


def test_cli_prints_one_line_for_a_repeated_column(tmp_path, capsys):
    from distillab.cli import main

    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label,text\na,pos,b\n")
    assert main(["data", "inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "column 'text' appears 2 times" in err and str(path) in err


def test_spec_file_problems_name_the_spec_file(tmp_path):
    """A JSON object is read as a spec; its unknown or wrongly typed keys must name that file, not 'dataset spec'."""
    path = tmp_path / "records.json"
    path.write_text('{"text": "a", "label": "x"}', encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: unknown key\(s\) label, text"):
        spec_from_argument(str(path))
    path.write_text('{"path": 5}', encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: path must be a string, got int"):
        spec_from_argument(str(path))
