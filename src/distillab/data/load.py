"""Load a text-classification dataset from a spec: Hub id, local CSV/JSONL/JSON/Parquet, or a lab name.

The steps run top to bottom in one fixed order, because each one changes what the next sees:

1. read the raw splits (Hub via ``datasets.load_dataset``; local files with the standard library /
   pyarrow) and give every row a stable id: ``<id_prefix>-<raw split>-<raw row>``, or the
   ``id_column`` value. The row number is the position in the *raw* split, so ids survive filtering
   and index selection and always point back to the source row;
2. ``split_indices``: new splits as explicit rows of a raw split (the course ships train/val index
   files into the Hub's train split); raw splits not used as a source are kept (e.g. ``test``);
3. empty texts: an error naming the row, or dropped with ``empty_text: drop``;
4. labels: ``merge_map`` (``label = map.get(label, label)``, one step, keys starting with ``_``
   ignored), then the class list: ``label_list`` in its order, or the labels of ``class_split``
   (default ``train``; all splits if there is none) with at least ``min_class_count`` rows, sorted
   (numerically when every name is an integer);
5. rows whose label is not a class: dropped when the class was removed by ``min_class_count``;
   otherwise an error naming file, row and label, unless ``unknown_labels: drop`` (the course's
   rule for its label list, which bakes in its min-count filter). Every drop is counted in
   ``source["dropped"]``;
6. ``stratified_split``: split one split into several by per-class fractions, seeded.

Spec keys (all optional except one source)::

    lab: r52 | banking77 | cfpb-issue-113       data_dir: search path for lab files
    hub: owner/name   config: subset   revision: git revision
    path: file or folder   files: {split: file or [files]}   (relative to path)
    name, id_prefix, text_column="text", label_column="label", id_column
    merge_map: JSON file or dict      label_list: JSON file or list      min_class_count: int
    class_split="train"   unknown_labels="error"|"drop"   empty_text="error"|"drop"
    split_indices: {split: {split: raw_split, indices: JSON file or list}}
    stratified_split: {split: train, into: {train: 0.9, val: 0.1}, seed: 42}
    combine_splits: {new_split: [split, split, ...]}   (last step; also for lab datasets: the course
                    trains on train ∪ test and evaluates on val)
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distillab.data.dataset import TextDataset, TextSplit
from distillab.errors import InputError
from distillab.io import load_yaml, read_json, sha256_file

SOURCE_KEYS = ("lab", "hub", "path")
SPEC_KEYS = frozenset(
    SOURCE_KEYS
    + (
        "data_dir", "config", "revision", "files", "name", "id_prefix", "text_column", "label_column",
        "id_column", "merge_map", "label_list", "min_class_count", "class_split", "unknown_labels",
        "empty_text", "split_indices", "stratified_split", "combine_splits",
    )
)
EXTENSIONS = (".csv", ".jsonl", ".ndjson", ".json", ".parquet")
# Folder discovery only takes files named like a split, so side files (categories.json, README)
# are never mistaken for data. "train-00000-of-00002.parquet" is a shard of "train".
SPLIT_NAMES = ("train", "training", "validation", "valid", "val", "dev", "test", "testing")  # also their order
_SPLIT_FILE = re.compile(rf"^(?P<split>{'|'.join(SPLIT_NAMES)})(?:-\d+-of-\d+)?$")


@dataclass
class RawSplit:
    """Rows of one split before labels are resolved. ``rows`` are raw row numbers, for messages."""

    where: str  # file or Hub id + split, named in every error
    texts: list[Any]
    labels: list[str]
    ids: list[str]
    rows: list[int]
    shards: tuple[tuple[int, str], ...] = ()  # (first raw row, file) per file when a split spans several

    def take(self, positions: list[int] | np.ndarray) -> "RawSplit":
        return RawSplit(
            where=self.where,
            texts=[self.texts[i] for i in positions],
            labels=[self.labels[i] for i in positions],
            ids=[self.ids[i] for i in positions],
            rows=[self.rows[i] for i in positions],
            shards=self.shards,
        )

    def at(self, position: int) -> str:
        """"FILE, row R" for the row at ``position``, for error messages."""
        return locate_row(self.where, self.shards, self.rows[position])


def locate_row(where: str, shards: tuple[tuple[int, str], ...], raw_row: int) -> str:
    """The file holding ``raw_row`` and its row inside that file (raw rows run on across shards)."""
    for first, path in reversed(shards):
        if raw_row >= first:
            return f"{path}, row {raw_row - first}"
    return f"{where}, row {raw_row}"


def load_dataset(spec: dict) -> TextDataset:
    """Build a :class:`TextDataset` from ``spec`` (see the module docstring for the keys)."""
    spec = dict(spec)
    check_spec(spec)
    sources = [key for key in SOURCE_KEYS if spec.get(key)]
    if len(sources) != 1:
        raise InputError(f"dataset spec: give exactly one of lab, hub or path (got {', '.join(sources) or 'none'})")
    if spec.get("lab"):
        from distillab.data.lab import load_lab_dataset

        extra = sorted(set(spec) - {"lab", "data_dir", "combine_splits"})
        if extra:
            raise InputError(f"dataset spec: a lab dataset takes only data_dir and combine_splits, not {', '.join(extra)}")
        dataset = load_lab_dataset(spec["lab"], data_dir=spec.get("data_dir"))
        return combine_splits(dataset, spec["combine_splits"]) if spec.get("combine_splits") else dataset

    for key, allowed in (("unknown_labels", ("error", "drop")), ("empty_text", ("error", "drop"))):
        if spec.get(key, "error") not in allowed:
            raise InputError(f"dataset spec: {key} must be one of {', '.join(allowed)}, got {spec[key]!r}")
    if spec.get("label_list") is not None and spec.get("min_class_count") is not None:
        raise InputError("dataset spec: give label_list or min_class_count, not both (a label list fixes the classes)")

    text_column = spec.get("text_column", "text")
    label_column = spec.get("label_column", "label")
    id_column = spec.get("id_column")
    if spec.get("hub"):
        name = spec.get("name") or spec["hub"].rstrip("/").split("/")[-1]
        prefix = spec.get("id_prefix", name)
        raw, source = read_hub(spec["hub"], spec.get("config"), spec.get("revision"),
                               text_column, label_column, id_column, prefix)
    else:
        root = Path(spec["path"])
        name = spec.get("name") or (root.name if root.is_dir() else root.stem)
        prefix = spec.get("id_prefix", name)
        files = resolve_files(root, spec.get("files"))
        raw = {split: read_files(paths, split, text_column, label_column, id_column, prefix)
               for split, paths in files.items()}
        source = {"kind": "local", "path": str(root),
                  "files": {split: [{"path": str(p), "sha256": sha256_file(p)} for p in paths]
                            for split, paths in files.items()}}

    dropped: dict[str, dict] = {}
    if spec.get("split_indices"):
        raw, index_sources = select_indices(raw, spec["split_indices"])
        source["split_indices"] = index_sources
    raw = handle_empty_texts(raw, spec.get("empty_text", "error"), dropped)

    merge_map, merge_source = read_merge_map(spec.get("merge_map"))
    for split in raw.values():
        split.labels = [merge_map.get(label, label) for label in split.labels]

    class_split = spec.get("class_split", "train")
    if spec.get("label_list") is not None:
        classes, classes_source = read_label_list(spec["label_list"])
        filtered: set[str] = set()
    else:
        classes, filtered = classes_from_counts(raw, class_split, spec.get("min_class_count"))
        classes_source = {"from": class_split if class_split in raw else "all splits",
                          "min_class_count": spec.get("min_class_count")}
    splits = resolve_labels(raw, classes, filtered, spec.get("unknown_labels", "error"), dropped)

    if spec.get("stratified_split"):
        splits, source["stratified_split"] = stratified_split(splits, spec["stratified_split"])
    check_unique_ids(splits)

    source.update(
        name=name,
        text_column=text_column,
        label_column=label_column,
        id_column=id_column,
        merge_map=merge_source,
        classes=classes_source,
        unknown_labels=spec.get("unknown_labels", "error"),
        empty_text=spec.get("empty_text", "error"),
        dropped=dropped,
    )
    dataset_splits = {split: TextSplit(ids=np.array(r.ids, dtype=str), texts=r.texts,
                                       labels=np.array(labels, dtype=np.int64))
                      for split, (r, labels) in splits.items()}
    dataset = TextDataset(name=name, classes=classes, splits=dataset_splits, source=source)
    return combine_splits(dataset, spec["combine_splits"]) if spec.get("combine_splits") else dataset


STRING_KEYS = ("lab", "hub", "path", "data_dir", "config", "revision", "name", "id_prefix", "text_column",
               "label_column", "id_column", "class_split")


def check_spec(spec: dict, where: str = "dataset spec") -> None:
    """Unknown keys, then every value of the wrong type, listed at once (not a TypeError deep in the loader).

    ``where`` names a spec file when the spec came from one.
    """
    unknown = sorted(map(str, set(spec) - SPEC_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(SPEC_KEYS))})")
    problems = [f"{key} must be a string, got {type(spec[key]).__name__}"
                for key in STRING_KEYS if spec.get(key) is not None and not isinstance(spec[key], str)]
    files = spec.get("files")
    if files is not None and not (isinstance(files, dict) and all(
            isinstance(entry, str) or (isinstance(entry, list) and entry and all(isinstance(f, str) for f in entry))
            for entry in files.values())):
        problems.append("files must map a split name to a file name or a non-empty list of file names")
    for key in ("split_indices", "stratified_split"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            problems.append(f"{key} must be a mapping, got {type(spec[key]).__name__}")
    if problems:
        raise InputError(f"{where}: {'; '.join(problems)}")


def combine_splits(dataset: TextDataset, mapping: dict) -> TextDataset:
    """Concatenate splits into new ones, in the order listed (each source split is used once and removed)."""
    if not isinstance(mapping, dict) or not all(isinstance(v, list) and v for v in mapping.values()):
        raise InputError("dataset spec: combine_splits must map a new split name to a non-empty list of splits")
    used = [split for parts in mapping.values() for split in parts]
    missing = [split for split in used if split not in dataset.splits]
    if missing:
        raise InputError(f"dataset spec: combine_splits names split {missing[0]!r}, which the dataset does not have "
                         f"(splits: {', '.join(dataset.splits)})")
    if len(set(used)) != len(used):
        raise InputError("dataset spec: combine_splits uses a split twice")
    splits = {name: split for name, split in dataset.splits.items() if name not in used}
    for name, parts in mapping.items():
        if name in splits:
            raise InputError(f"dataset spec: combine_splits would overwrite the split {name!r}")
        members = [dataset.splits[p] for p in parts]
        splits[name] = TextSplit(ids=np.concatenate([m.ids for m in members]),
                                 texts=[t for m in members for t in m.texts],
                                 labels=np.concatenate([m.labels for m in members]))
    source = {**dataset.source, "combine_splits": mapping}
    return TextDataset(name=dataset.name, classes=dataset.classes, splits=splits, source=source)


def spec_from_argument(text: str, data_dir: str | None = None) -> dict:
    """A command-line ``--data`` value as a spec: lab name, spec file (YAML/JSON mapping), inline JSON, path or Hub id."""
    from distillab.data.lab import LAB_DATASETS

    if text in LAB_DATASETS:
        return {"lab": text, "data_dir": data_dir} if data_dir else {"lab": text}
    if text.lstrip().startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"inline JSON dataset spec is not valid JSON ({exc.msg})") from None
        return spec_mapping(spec, "inline JSON dataset spec")
    path = Path(text)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return spec_mapping(load_yaml(path), str(path))  # plain data only: a spec file never runs code
    if path.is_file() and path.suffix.lower() == ".json":
        loaded = read_json(path)
        if isinstance(loaded, dict):  # a spec; a JSON *list* is a data file of records
            return spec_mapping(loaded, str(path))
    if path.exists():
        return {"path": str(path)}
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        return {"hub": text}
    raise InputError(
        f"{text!r}: not a lab dataset ({', '.join(LAB_DATASETS)}), a spec file, inline JSON, an existing path "
        "or a Hub id (owner/name)"
    )


def spec_mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{where}: a dataset spec must be a mapping (lab / hub / path plus options)")
    check_spec(value, where)
    return value


# --------------------------------------------------------------------------- reading


def read_hub(hub_id: str, config: str | None, revision: str | None, text_column: str, label_column: str,
             id_column: str | None, prefix: str) -> tuple[dict[str, RawSplit], dict]:
    """Every split of a Hub dataset. Integer ``ClassLabel`` columns are turned back into their names."""
    import datasets  # heavy: only when a Hub dataset is asked for

    try:
        dataset_dict = datasets.load_dataset(hub_id, name=config, revision=revision)
    except Exception as exc:  # the Hub client raises many kinds (ConnectionError, OfflineModeIsEnabled, ...)
        raise InputError(
            f"cannot load {hub_id!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            "On a machine that is online, run the same command once: the dataset is then kept in the Hugging Face "
            "cache (HF_HOME / HF_DATASETS_CACHE). Offline, copy that cache here and set HF_DATASETS_OFFLINE=1 "
            "(or HF_HUB_OFFLINE=1), or export the splits to CSV/JSONL/Parquet and load them with 'path'."
        ) from None
    raw = {}
    for split, table in dataset_dict.items():
        where = f"Hub dataset {hub_id!r} split {split!r}"
        check_columns(where, list(table.column_names), text_column, label_column, id_column)
        # Whole columns through Arrow: iterating a datasets Column row by row is ~1000x slower.
        arrow = table.with_format("arrow")
        labels = arrow[label_column].to_pylist()
        feature = table.features[label_column]
        if isinstance(feature, datasets.ClassLabel):
            labels = [feature.int2str(int(v)) if v is not None else None for v in labels]
        ids = arrow[id_column].to_pylist() if id_column else None
        raw[split] = make_raw(where, arrow[text_column].to_pylist(), labels, ids, split, prefix, text_column,
                              label_column, id_column)
    source = {"kind": "hub", "hub": hub_id, "config": config, "revision": revision,
              "splits": {split: len(r.texts) for split, r in raw.items()}}
    return raw, source


def resolve_files(root: Path, files: dict | None) -> dict[str, list[Path]]:
    """Split name → data files: the ``files`` mapping, a single file (→ ``train``), or split-named files in a folder."""
    if files:
        resolved = {}
        for split, entry in files.items():
            entries = entry if isinstance(entry, list) else [entry]
            resolved[split] = [p if p.is_absolute() else root / p for p in map(Path, entries)]
        for paths in resolved.values():
            for path in paths:
                if not path.is_file():
                    raise InputError(f"{path}: data file not found (from 'files')")
        return resolved
    if root.is_file():
        return {"train": [root]}
    if not root.is_dir():
        raise InputError(f"{root}: no such file or folder")
    found: dict[str, list[Path]] = {}
    for path in sorted(root.iterdir()):
        stem = path.name[: -len(path.suffix)] if path.suffix else path.name
        match = _SPLIT_FILE.match(stem)
        if path.is_file() and path.suffix.lower() in EXTENSIONS and match:
            found.setdefault(match.group("split"), []).append(path)
    if not found:
        raise InputError(
            f"{root}: no data files named like a split (train/validation/val/dev/test with extension "
            f"{', '.join(EXTENSIONS)}); name the files per split with 'files: {{train: FILE, test: FILE}}'"
        )
    return {split: found[split] for split in SPLIT_NAMES if split in found}


def read_files(paths: list[Path], split: str, text_column: str, label_column: str, id_column: str | None,
               prefix: str) -> RawSplit:
    """Concatenate the split's files (shards in name order); raw row numbers run on across shards."""
    texts: list[Any] = []
    labels: list[Any] = []
    ids: list[Any] = []
    shards = []
    for path in paths:
        shards.append((len(texts), str(path)))
        columns, records = read_table(path)
        if not columns:  # an empty JSON-lines or JSON file: no rows, no keys to check
            continue
        check_columns(str(path), columns, text_column, label_column, id_column)
        texts += records[text_column]
        labels += records[label_column]
        if id_column:
            ids += records[id_column]
    where = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} shards)"
    if not texts:
        raise InputError(f"{where}: no data rows (split {split!r} is empty)")
    return make_raw(where, texts, labels, ids if id_column else None, split, prefix, text_column, label_column,
                    id_column, shards=tuple(shards) if len(paths) > 1 else ())


def read_table(path: Path) -> tuple[list[str], dict[str, list[Any]]]:
    """(column names, column → values) of one CSV / JSON-lines / JSON-records / Parquet file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return read_csv(path)
        if suffix in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8-sig") as handle:  # -sig: a BOM is accepted, as in CSV
                records = [parse_json(line, f"{path}, line {line_no}")
                           for line_no, line in enumerate(handle, start=1) if line.strip()]
            return columns_of(path, records)
        if suffix == ".json":
            records = parse_json(path.read_text(encoding="utf-8-sig"), str(path))
            if not isinstance(records, list):
                raise InputError(f"{path}: expected a JSON list of records (one object per row), got {type(records).__name__}")
            return columns_of(path, records)
        if suffix == ".parquet":
            import pyarrow
            import pyarrow.parquet as pq  # installed with datasets; only needed for Parquet

            try:
                table = pq.read_table(path)
            except pyarrow.ArrowException as exc:
                raise InputError(f"{path}: cannot read as Parquet ({' '.join(str(exc).split())})") from None
            return list(table.column_names), table.to_pydict()
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    raise InputError(f"{path}: unsupported file type {suffix!r} (use {', '.join(EXTENSIONS)})")


def not_utf8(path: Path) -> InputError:
    """The error for a file that is not UTF-8, with the line and byte offset of the first bad byte.

    A text-mode reader reports offsets inside its read buffer, so the file's bytes are decoded again here.
    """
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return InputError(f"{path}, line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8")
    return InputError(f"{path}: not UTF-8 text; re-save it as UTF-8")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        repeated = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise ValueError(f"key {repeated!r} appears twice in one object; json keeps only the last")
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(text: str, where: str) -> Any:
    """Strict JSON: a repeated key (silently the last wins), NaN/Infinity or a 4300+ digit number is an error."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # our hooks, and Python's limit on integer digits
        raise InputError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{where}: not valid JSON (nested too deeply)") from None


def read_csv(path: Path) -> tuple[list[str], dict[str, list[Any]]]:
    """A real CSV parser (narratives hold quoted newlines); ``utf-8-sig`` drops an Excel BOM."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long complaint narratives exceed the 128 KiB default
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: empty file (no header row)")
            check_header(path, header)
            columns: dict[str, list[Any]] = {name: [] for name in header}
            for row_no, row in enumerate(reader):
                if len(row) != len(header):
                    if not row:
                        continue  # a blank line
                    raise InputError(f"{path}, row {row_no}: {len(row)} fields but the header has {len(header)}")
                for name, value in zip(header, row):
                    columns[name].append(value)
        except csv.Error as exc:
            raise InputError(f"{path}, line {reader.line_num}: not valid CSV ({exc})") from None
    return header, columns


def check_header(path: Path, header: list[str]) -> None:
    """Refuse a repeated column name: both columns would fill one list, misaligning texts and labels.

    One unnamed column is allowed (pandas writes its index that way); two are a repeated name.
    """
    repeated = [name for name, count in Counter(header).items() if count > 1]
    if repeated:
        positions = [str(i + 1) for i, name in enumerate(header) if name == repeated[0]]
        raise InputError(f"{path}: column {repeated[0]!r} appears {len(positions)} times in the header "
                         f"(columns {', '.join(positions)}); rename or delete the extra one")


def columns_of(path: Path, records: list) -> tuple[list[str], dict[str, list[Any]]]:
    """Column-wise view of JSON records; a key missing from a row reads as None (caught as empty later)."""
    names: dict[str, None] = {}
    for row_no, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputError(f"{path}, row {row_no}: expected a JSON object, got {type(record).__name__}")
        names.update(dict.fromkeys(record))
    return list(names), {name: [record.get(name) for record in records] for name in names}


def check_columns(where: str, columns: list[str], text_column: str, label_column: str, id_column: str | None) -> None:
    for role, column in (("text_column", text_column), ("label_column", label_column), ("id_column", id_column)):
        if column is not None and column not in columns:
            near = [c for c in columns if isinstance(c, str) and c.strip().lstrip("\ufeff") == column]
            hint = f" ({near[0]!r} has extra spaces or a byte-order mark)" if near else ""
            raise InputError(
                f"{where}: no column {column!r} (columns: {', '.join(map(repr, columns))}){hint}; "
                f"set {role} to the right name"
            )


def make_raw(where: str, texts: list, labels: list, ids: list | None, split: str, prefix: str, text_column: str,
             label_column: str, id_column: str | None, shards: tuple = ()) -> RawSplit:
    """Check and stringify every cell; a missing label is an error here, before merge maps can hide it.

    Labels and ids must be strings or integers and texts strings: anything else (a float, a list,
    ``true``) would be turned into a string that silently becomes a class or a text of its own.
    """
    str_labels = []
    for row, label in enumerate(labels):
        if label is None or (isinstance(label, str) and not label.strip()) or (isinstance(label, float) and label != label):
            raise InputError(f"{locate_row(where, shards, row)}: empty value in label column {label_column!r}")
        if not is_key(label):
            raise InputError(f"{locate_row(where, shards, row)}: label column {label_column!r} holds {describe(label)}; "
                             "a label must be a string or an integer")
        str_labels.append(str(label))
    if ids is None:
        str_ids = [f"{prefix}-{split}-{row}" for row in range(len(texts))]
    else:
        str_ids = []
        for row, value in enumerate(ids):
            if value is None or str(value).strip() == "":
                raise InputError(f"{locate_row(where, shards, row)}: empty value in id column {id_column!r}")
            if not is_key(value):
                raise InputError(f"{locate_row(where, shards, row)}: id column {id_column!r} holds {describe(value)}; "
                                 "an id must be a string or an integer")
            str_ids.append(str(value))
    str_texts = []
    for row, value in enumerate(texts):
        if not (isinstance(value, str) or is_missing(value)):
            raise InputError(f"{locate_row(where, shards, row)}: text column {text_column!r} holds {describe(value)}, "
                             "not a string; check text_column")
        str_texts.append(value if isinstance(value, str) else None)  # missing → None, caught as empty next
    for column, values in ((text_column, str_texts), (label_column, str_labels), (id_column, str_ids)):
        bad = first_unencodable(values)
        if bad is not None:
            raise InputError(f"{locate_row(where, shards, bad)}: column {column!r} holds a lone surrogate "
                             f"(e.g. an escaped '\\ud800'), which is not text; fix the file")
    return RawSplit(where=where, texts=str_texts, labels=str_labels, ids=str_ids,
                    rows=list(range(len(texts))), shards=shards)


def is_key(value: Any) -> bool:
    """A label or id cell: a string or an integer (``True`` is not an integer here)."""
    return isinstance(value, (str, int, np.integer)) and not isinstance(value, bool)


def is_missing(value: Any) -> bool:
    """None, or NaN (how Parquet/pandas exports write a missing cell)."""
    return value is None or (isinstance(value, float) and value != value)


def describe(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def first_unencodable(values: list[str | None]) -> int | None:
    """Position of the first string UTF-8 cannot encode (a lone surrogate from a JSON escape), or None.

    One encode of the joined column is fast; the row is searched only when it fails.
    """
    if encodable("".join(v for v in values if v is not None)):
        return None
    return next(i for i, v in enumerate(values) if v is not None and not encodable(v))


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# --------------------------------------------------------------------------- splits and labels


def select_indices(raw: dict[str, RawSplit], split_indices: dict) -> tuple[dict[str, RawSplit], dict]:
    """New splits from explicit row indices into raw splits; raw splits used as a source are replaced."""
    selected: dict[str, RawSplit] = {}
    sources: dict[str, dict] = {}
    used: dict[str, dict[int, str]] = {}  # raw split → row → the new split that took it
    for new_split, entry in split_indices.items():
        if not isinstance(entry, dict) or "indices" not in entry:
            raise InputError(f"split_indices.{new_split}: expected {{split: RAW_SPLIT, indices: FILE_OR_LIST}}")
        from_split = entry.get("split", "train")
        if not isinstance(from_split, str) or from_split not in raw:
            raise InputError(f"split_indices.{new_split}: no raw split {from_split!r} (have: {', '.join(raw)})")
        where, indices, index_source = read_indices(entry["indices"], f"split_indices.{new_split}")
        n = len(raw[from_split].texts)
        taken = used.setdefault(from_split, {})
        for position, index in enumerate(indices):
            if not 0 <= index < n:
                raise InputError(f"{where}, position {position}: index {index} is outside raw split {from_split!r} (0..{n - 1})")
            if index in taken:
                raise InputError(
                    f"{where}, position {position}: raw row {index} of {from_split!r} is already in split {taken[index]!r}; "
                    "index lists must not overlap"
                )
            taken[index] = new_split
        selected[new_split] = raw[from_split].take(indices)
        sources[new_split] = {"split": from_split, **index_source, "rows": len(indices)}
    for split, rows in raw.items():
        if split not in used and split not in selected:
            selected[split] = rows
    return selected, sources


def read_indices(value: Any, what: str) -> tuple[str, list[int], dict]:
    if isinstance(value, (str, os.PathLike)):
        data, where = read_json(value), str(value)
        source = {"indices": where, "sha256": sha256_file(value)}
    else:
        data, where, source = value, what, {"indices": "inline"}
    if not isinstance(data, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in data):
        raise InputError(f"{where}: expected a JSON list of integer row indices")
    return where, data, source


def handle_empty_texts(raw: dict[str, RawSplit], policy: str, dropped: dict) -> dict[str, RawSplit]:
    out = {}
    for split, rows in raw.items():
        empty = [i for i, text in enumerate(rows.texts) if text is None or not text.strip()]
        if empty and policy == "error":
            raise InputError(
                f"{rows.at(empty[0])}: empty text ({len(empty)} such rows in split {split!r}); "
                "fix the data or set empty_text: drop"
            )
        if empty:
            dropped.setdefault("empty_text", {})[split] = len(empty)
            keep = sorted(set(range(len(rows.texts))) - set(empty))
            rows = rows.take(keep)
        out[split] = rows
    return out


def read_merge_map(value: Any) -> tuple[dict[str, str], dict | None]:
    """Raw label → canonical label; keys starting with ``_`` are comments (the course's ``_comment``)."""
    if value is None:
        return {}, None
    if isinstance(value, (str, os.PathLike)):
        data, where, source = read_json(value), str(value), {"path": str(value), "sha256": sha256_file(value)}
    else:
        data, where, source = value, "merge_map", {"inline": True}
    if not isinstance(data, dict):
        raise InputError(f"{where}: a merge map must be a JSON object {{raw label: canonical label}}")
    merge = {}
    for key, target in data.items():
        if str(key).startswith("_"):
            continue
        if not isinstance(target, str) or not target:
            raise InputError(f"{where}: merge map entry {key!r} must map to a non-empty label string, got {target!r}")
        if not encodable(str(key) + target):
            raise InputError(f"{where}: merge map entry {key!r} holds a lone surrogate (an escaped '\\ud800'), which is not text")
        merge[str(key)] = target
    source["entries"] = len(merge)
    return merge, source


def read_label_list(value: Any) -> tuple[list[str], dict]:
    if isinstance(value, (str, os.PathLike)):
        data, where, source = read_json(value), str(value), {"label_list": str(value), "sha256": sha256_file(value)}
    else:
        data, where, source = value, "label_list", {"label_list": "inline"}
    if not isinstance(data, list) or not data or not all(isinstance(c, str) and c for c in data):
        raise InputError(f"{where}: a label list must be a non-empty JSON list of label strings (class id = position)")
    duplicates = [label for label, count in Counter(data).items() if count > 1]
    if duplicates:
        raise InputError(f"{where}: label {duplicates[0]!r} is listed more than once")
    bad = first_unencodable(data)
    if bad is not None:
        raise InputError(f"{where}: label {bad} holds a lone surrogate (an escaped '\\ud800'), which is not text")
    return list(data), source


def classes_from_counts(raw: dict[str, RawSplit], class_split: str, min_count: int | None) -> tuple[list[str], set[str]]:
    """Classes = labels of ``class_split`` with ≥ ``min_count`` rows; also the labels the filter removed."""
    if min_count is not None and (not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1):
        raise InputError(f"dataset spec: min_class_count must be an integer >= 1, got {min_count!r}")
    pool = [raw[class_split]] if class_split in raw else list(raw.values())
    counts = Counter(label for rows in pool for label in rows.labels)
    kept = [label for label, count in counts.items() if count >= (min_count or 1)]
    if not kept and min_count is None:
        raise InputError(f"split {class_split!r} has no rows left to take classes from")
    if not kept:
        raise InputError(f"no class has at least {min_count} rows in split {class_split!r}; lower min_class_count")
    numeric = all(re.fullmatch(r"-?\d+", label) for label in kept)
    classes = sorted(kept, key=(lambda s: (int(s), s)) if numeric else None)
    return classes, set(counts) - set(kept)


def resolve_labels(raw: dict[str, RawSplit], classes: list[str], filtered: set[str], unknown_policy: str,
                   dropped: dict) -> dict[str, tuple[RawSplit, list[int]]]:
    """Label strings → class ids; rows outside the classes are dropped (counted) or an error."""
    class_id = {label: i for i, label in enumerate(classes)}
    out = {}
    for split, rows in raw.items():
        keep, ids = [], []
        by_filter: Counter = Counter()
        unknown: Counter = Counter()
        for position, label in enumerate(rows.labels):
            if label in class_id:
                keep.append(position)
                ids.append(class_id[label])
            elif label in filtered:
                by_filter[label] += 1
            elif unknown_policy == "drop":
                unknown[label] += 1
            else:
                raise InputError(
                    f"{rows.at(position)}: label {label!r} is not one of the {len(classes)} classes "
                    "and not covered by the merge map; add it to merge_map or label_list, or set unknown_labels: drop"
                )
        if by_filter:
            dropped.setdefault("min_class_count", {})[split] = dict(sorted(by_filter.items()))
        if unknown:
            dropped.setdefault("unknown_label", {})[split] = dict(sorted(unknown.items()))
        out[split] = (rows.take(keep), ids)
    return out


def stratified_split(splits: dict[str, tuple[RawSplit, list[int]]], options: dict) -> tuple[dict, dict]:
    """Split ``options['split']`` by per-class fractions; same seed → same rows, on any machine.

    Per class (in class-id order) the rows are permuted with one ``numpy.random.default_rng(seed)``
    stream and cut at ``round(cumsum(fractions) * n_class)``, so every split gets each class in
    proportion (a class too small for a split gets no rows there). Rows keep their source order.
    """
    source_split = options.get("split", "train")
    into = options.get("into")
    seed = options.get("seed", 42)
    if source_split not in splits:
        raise InputError(f"stratified_split: no split {source_split!r} (have: {', '.join(splits)})")
    if not isinstance(into, dict) or len(into) < 2:
        raise InputError("stratified_split.into: expected at least two {split: fraction} entries, e.g. {train: 0.9, val: 0.1}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in into.values()):
        raise InputError(f"stratified_split.into: fractions must be numbers, got {dict(into)}")
    fractions = np.array(list(into.values()), dtype=np.float64)
    if (fractions <= 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
        raise InputError(f"stratified_split.into: fractions must be > 0 and sum to 1, got {dict(into)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**128:
        raise InputError(f"stratified_split.seed: must be an integer in [0, 2**128), got {seed!r}")
    clash = sorted((set(into) & set(splits)) - {source_split})
    if clash:
        raise InputError(f"stratified_split.into: split {clash[0]!r} already exists")
    rows, labels = splits[source_split]
    labels_arr = np.asarray(labels, dtype=np.int64)
    assignment = np.empty(labels_arr.size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for label in np.unique(labels_arr):
        members = rng.permutation(np.flatnonzero(labels_arr == label))
        bounds = np.round(np.cumsum(fractions) * members.size).astype(np.int64)
        bounds[-1] = members.size
        for part, (start, stop) in enumerate(zip(np.concatenate([[0], bounds[:-1]]), bounds)):
            assignment[members[start:stop]] = part
    out = {}
    for split, value in splits.items():
        if split != source_split:
            out[split] = value
            continue
        for part, new_split in enumerate(into):
            positions = np.flatnonzero(assignment == part)
            out[new_split] = (rows.take(positions), [labels[i] for i in positions])
    return out, {"split": source_split, "into": dict(into), "seed": seed}


def check_unique_ids(splits: dict[str, tuple[RawSplit, list[int]]]) -> None:
    seen: dict[str, tuple[RawSplit, int]] = {}
    for rows, _ in splits.values():
        for position, row_id in enumerate(rows.ids):
            if row_id in seen:
                first, first_position = seen[row_id]
                raise InputError(
                    f"{rows.at(position)}: duplicate row id {row_id!r} (first at {first.at(first_position)}); "
                    "row ids must be unique across all splits"
                )
            seen[row_id] = (rows, position)
