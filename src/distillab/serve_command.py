"""``distillab predict MODEL_DIR``: label texts with a trained student (see :mod:`distillab.serve`).

Examples::

    distillab predict runs/r52-bow/arms/vanilla/model --text "Oil prices rose sharply" --text "..."
    distillab predict runs/r52-bow/arms/vanilla/model --file texts.txt --out predictions.csv
    distillab predict runs/r52-bow/arms/vanilla/model --data r52 --split test --out test.jsonl

Every row carries the predicted label and the probability of every class, ``softmax(logits / T)``
with T from the folder's ``temperature.json`` (``--raw``: T = 1). Everything is computed before
anything is printed or written, so bad input leaves no partial output.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

FORMATS = (".jsonl", ".csv")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="label texts with a trained student; temperature-scaled probabilities of every class",
        description="Predict with a student folder (runs/NAME/arms/ARM/model, bag-of-n-grams or Hugging Face). "
        "Prints JSON lines (row, label, probabilities) or writes --out FILE.jsonl / FILE.csv. Probabilities are "
        "softmax(logits / T) with T from the folder's temperature.json, which `distillab run` writes.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a student folder (config.json + weights)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", metavar="TEXT", help="a text to label (repeatable)")
    source.add_argument("--file", metavar="TEXTS.txt", help="UTF-8 text file, one text per line")
    source.add_argument("--data", metavar="NAME_OR_SPEC",
                        help="a dataset (lab name, spec file, inline JSON, path or Hub id): rows of --split, "
                        "with their ids and true labels in the output")
    p.add_argument("--split", default=None, help="split of --data to label (default: test)")
    p.add_argument("--data-dir", default=None, help="where lab dataset files are looked up first")
    p.add_argument("--out", metavar="FILE.jsonl|FILE.csv", help="write here (atomically) instead of printing")
    p.add_argument("--raw", action="store_true", help="ignore temperature.json: plain softmax(logits)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distillab.errors import InputError
    from distillab.io import check_output_file
    from distillab.serve import load_student

    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix.lower() not in FORMATS:
            raise InputError(f"{out}: --out must end in .jsonl or .csv")
        check_output_file(out)
    if args.split is not None and args.data is None:
        raise InputError("--split needs --data")
    texts, ids, truth = _inputs(args)
    # A command's stderr is its summary line: no "Loading weights" bar (read when transformers is imported).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    student = load_student(args.model_dir, raw=args.raw, batch_size=args.batch_size)
    proba = student.predict_proba(texts)
    rows = _records(student.classes_, proba, ids, truth)
    text = _csv(student.classes_, rows) if out is not None and out.suffix.lower() == ".csv" else \
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if args.raw:
        how = "softmax(logits) (--raw)"
    elif student.temperature is None:
        how = f"softmax(logits): {args.model_dir} has no temperature.json (written by `distillab run`)"
    else:
        how = f"softmax(logits / {student.temperature:g}) from temperature.json"
    if out is None:
        sys.stdout.write(text)
    else:
        from distillab.io import write_text_atomic

        write_text_atomic(out, text)
    print(f"distillab predict: {len(rows)} rows, {how}" + (f"; wrote {out}" if out else ""), file=sys.stderr)
    return 0


def _inputs(args) -> tuple[list[str], list[str] | None, list[str] | None]:
    """Texts, plus ids and true label names when they come from a dataset."""
    from distillab.errors import InputError

    if args.text is not None:
        return list(args.text), None, None
    if args.file is not None:
        return read_texts(Path(args.file)), None, None
    from distillab.data.load import load_dataset, spec_from_argument

    dataset = load_dataset(spec_from_argument(args.data, args.data_dir))
    split_name = args.split or "test"
    if split_name not in dataset.splits:
        raise InputError(f"dataset {dataset.name!r} has no split {split_name!r} (it has {', '.join(dataset.splits)})")
    split = dataset.splits[split_name]
    return split.texts, split.ids.tolist(), [dataset.classes[i] for i in split.labels]


def read_texts(path: Path) -> list[str]:
    """One text per line of a UTF-8 file; an empty file or an empty line is an error naming it."""
    from distillab.data.load import not_utf8
    from distillab.errors import InputError

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    lines = content.split("\n")
    if lines[-1] == "":  # the final newline ends the last text; it does not start another
        lines.pop()
    texts = [line.removesuffix("\r") for line in lines]
    if not texts:
        raise InputError(f"{path}: no texts (the file is empty; give one text per line)")
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            raise InputError(f"{path}, line {number}: empty line; give one text per line")
    return texts


def _records(classes, proba, ids, truth) -> list[dict]:
    names = [str(c) for c in classes]
    rows = []
    for i, p in enumerate(proba):
        row: dict = {"row": i}
        if ids is not None:
            row["id"], row["true_label"] = ids[i], truth[i]
        row["label"] = names[int(p.argmax())]
        row["probabilities"] = dict(zip(names, p.tolist()))
        rows.append(row)
    return rows


def _csv(classes, rows: list[dict]) -> str:
    """One column per class, ``p_<class>``, after row[, id, true_label], label."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = [k for k in rows[0] if k != "probabilities"] if rows else ["row", "label"]
    writer.writerow(head + [f"p_{c}" for c in classes])
    for row in rows:
        writer.writerow([row[k] for k in head] + list(row["probabilities"].values()))
    return buffer.getvalue()
