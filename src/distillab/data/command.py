"""``distillab data list|fetch|inspect``: see the lab datasets, fetch them once, check a spec before a run.

Nothing heavy at module level (``distillab --help`` must stay instant); handlers import what they need.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="lab datasets: list, fetch into the cache, inspect a dataset spec")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    listing = commands.add_parser("list", help="the lab datasets and where their files were found")
    listing.add_argument("--data-dir", help="extra folder(s) to search first (colon-separated), before DISTILLAB_DATA_DIR")
    listing.set_defaults(func=list_command)

    fetch = commands.add_parser(
        "fetch", help="make a lab dataset's files local: found on the search path, or downloaded once into the cache"
    )
    fetch.add_argument("names", nargs="+", metavar="NAME", help="lab dataset name(s)")
    fetch.add_argument("--data-dir", help="extra folder(s) to search first (colon-separated)")
    fetch.set_defaults(func=fetch_command)

    inspect = commands.add_parser("inspect", help="load a dataset and print splits, classes, drops and its content hash")
    inspect.add_argument("spec", help="a lab name, a YAML/JSON spec file, inline JSON, a local file/folder, or a Hub id")
    inspect.add_argument("--data-dir", help="extra folder(s) to search first for lab datasets")
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    inspect.set_defaults(func=inspect_command)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def list_command(args) -> int:
    from distillab.data.lab import LAB_DATASETS, cache_dir, find_local

    for lab in LAB_DATASETS.values():
        found = [find_local(lab, f, args.data_dir) for f in lab.files]
        where = "not local (fetch downloads it)" if None in found else f"local: {common_parent(found)}"
        print(f"{lab.name:16s} {lab.description}\n{'':16s} license: {lab.license}\n{'':16s} {where}")
    print(f"cache: {cache_dir()}")
    return 0


def fetch_command(args) -> int:
    from distillab.data.lab import get_lab, locate

    for name in args.names:
        lab = get_lab(name)
        paths = [locate(lab, f, args.data_dir) for f in lab.files]
        print(f"{name}: {len(paths)} file(s) verified in {common_parent(paths)}")
    return 0


def inspect_command(args) -> int:
    from distillab.data import train_counts
    from distillab.data.load import load_dataset, spec_from_argument

    dataset = load_dataset(spec_from_argument(args.spec, data_dir=args.data_dir))
    count_split = "train" if "train" in dataset.splits else next(iter(dataset.splits))
    counts = train_counts(dataset, count_split)
    summary = {
        "name": dataset.name,
        "content_hash": dataset.content_hash(),
        "num_classes": dataset.num_classes,
        "splits": {name: len(split) for name, split in dataset.splits.items()},
        "class_counts_split": count_split,
        "class_counts": dict(zip(dataset.classes, counts.tolist())),
        "dropped": dataset.source.get("dropped", {}),
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
        return 0
    print(dataset.summary())
    print(f"content hash: {summary['content_hash']}")
    order = sorted(range(dataset.num_classes), key=lambda k: (-counts[k], k))
    nonzero = counts[counts > 0]
    print(f"{count_split} rows per class: max {counts.max()}, median {int(sorted(counts)[len(counts) // 2])}, "
          f"min {counts.min()}; imbalance {counts.max() / max(nonzero.min(), 1):.1f}:1")
    shown = order if dataset.num_classes <= 12 else order[:6] + order[-6:]
    for rank, k in enumerate(shown):
        if dataset.num_classes > 12 and rank == 6:
            print("  ...")
        print(f"  {counts[k]:>7,}  {dataset.classes[k]}")
    for kind, per_split in summary["dropped"].items():
        print(f"dropped ({kind}): {json.dumps(per_split)}")
    return 0


def common_parent(paths: list[Path]) -> Path:
    parts = [Path(p).resolve().parent.parts for p in paths]
    prefix = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        prefix.append(level[0])
    return Path(*prefix) if prefix else Path("/")
