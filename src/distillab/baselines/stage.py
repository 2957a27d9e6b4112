"""Fit reference baselines and write their eval-split predictions, skipping any already made from the same inputs.

Fit time and serving cost go under the sidecar's ``measurements`` key: they vary run to run, so
anything comparing sidecars for reproducibility must leave that key out.
"""

from __future__ import annotations

import time
from pathlib import Path

from distillab.errors import ConfigError, InputError
from distillab.io import save_predictions

# kind → (module, class): the class has ``fit``/``logits``/``params``/``serving_cost``, the module ``settings()``.
BASELINE_KINDS = {"tfidf_linear": ("distillab.baselines.tfidf_linear", "TfidfLinear")}


def baseline_predictions_stage(names, dataset, train_split: str, eval_split: str, out_dir, seed: int = 0) -> dict[str, Path]:
    """Fit each named baseline on ``train_split``; its ``eval_split`` predictions land in ``out_dir/NAME/predictions/``.

    A baseline whose folder was stamped with the same inputs (data, splits, settings, seed,
    scikit-learn and distillab versions) is not refitted. Returns ``{name: predictions path}``.
    """
    from distillab.pipeline import _fresh, _stamp

    unknown = [name for name in names if name not in BASELINE_KINDS]
    if unknown:
        raise ConfigError(f"baselines: unknown baseline {unknown[0]!r} (available: {', '.join(BASELINE_KINDS)})")
    _check_splits(dataset, train_split, eval_split)
    out_dir = Path(out_dir)
    paths = {}
    for name in names:
        folder = out_dir / name
        path = folder / "predictions" / f"{eval_split}.npz"
        inputs = {"baseline": name, "settings": _module(name).settings(), "dataset": dataset.content_hash(),
                  "train_split": train_split, "eval_split": eval_split, "seed": seed}
        if not (_fresh(folder, inputs) and path.exists()):
            write_baseline_predictions(name, dataset, train_split, eval_split, path, seed=seed)
            _stamp(folder, inputs)
        paths[name] = path
    return paths


def write_baseline_predictions(kind: str, dataset, train_split: str, eval_split: str, path, seed: int = 0,
                               name: str | None = None) -> Path:
    """Fit baseline ``kind`` on ``train_split``, predict ``eval_split``, write ``path`` (+ sidecar) atomically.

    ``name`` is the arm name recorded in the sidecar (default: the kind).
    """
    if kind not in BASELINE_KINDS:
        raise InputError(f"unknown baseline kind {kind!r} (available: {', '.join(BASELINE_KINDS)})")
    _check_splits(dataset, train_split, eval_split)
    module = _module(kind)
    train, evaluation = dataset.splits[train_split], dataset.splits[eval_split]
    wall, cpu = time.perf_counter(), time.process_time()
    model = getattr(module, BASELINE_KINDS[kind][1]).fit(train.texts, train.labels, dataset.num_classes, seed=seed)
    fit_seconds, fit_cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    logits = model.logits(evaluation.texts)
    meta = {
        "model": kind,
        "arm": name or kind,
        "role": "reference",
        "recipe": {"loss": "reference_baseline", "kind": kind, **module.settings(), "C": model.selection["C"]},
        "selection": model.selection,
        "params": model.params,
        "temperature": None,
        "classes": list(dataset.classes),
        "dataset": dataset.name,
        "train_split": train_split,
        "split": eval_split,
        "seed": seed,
        "measurements": {
            "fit_seconds": fit_seconds,
            "fit_cpu_seconds": fit_cpu_seconds,
            "fit_includes": "choosing C on the validation slice, then the refit on the whole train split",
            "serving": model.serving_cost(evaluation.texts),
        },
    }
    return save_predictions(path, logits=logits, labels=evaluation.labels, ids=evaluation.ids, meta=meta)


def _check_splits(dataset, train_split: str, eval_split: str) -> None:
    for role, split in (("train split", train_split), ("eval split", eval_split)):
        if split not in dataset.splits:
            raise InputError(f"dataset {dataset.name!r} has no {role} {split!r} "
                             f"(splits: {', '.join(dataset.splits) or 'none'})")
    if train_split == eval_split:
        raise InputError(f"train split and eval split are both {train_split!r}: a baseline must be scored on rows it "
                         "did not see")


def _module(kind: str):
    import importlib

    return importlib.import_module(BASELINE_KINDS[kind][0])
