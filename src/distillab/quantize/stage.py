"""``quantize_stage``: int8 copies of trained students, as audit arms ``NAME-int8``, for the pipeline.

The pipeline already holds the dataset and each arm's saved predictions, so the stage passes them in:
nothing is loaded or featurised twice beyond what the int8 model itself needs (its own forward pass over
the evaluation split), the float student's serving cost is read from its sidecar (same protocol, on the
CPU) instead of being timed again, and the save → reload round trip is left to the folder's digest check.
Each arm's int8 folder is ``ARM/quantized/`` (what ``distillab quantize ARM`` writes), so retraining an
arm (which removes its folder) removes its int8 copy with it. An arm whose int8 copy was made from the same
inputs (its float predictions and model files, the split, the dataset, the settings) is not redone.

The predictions sidecar of each int8 arm carries what the report's deployment scenarios read from any
student: ``measurements.serving`` (the int8 model's *measured* cost, in the trainer's format) and
``params``; ``recipe`` is the float arm's with ``quantized: int8`` added.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from distillab.errors import InputError
from distillab.io import read_json, sha256_file
from distillab.quantize.run import QUANTIZED_DIR, RECORD_FILE, quantize_arm

SUFFIX = "-int8"
STAGE_KEY = "stage_inputs_sha256"


def quantize_stage(arm_dirs: dict[str, Path], dataset, split: str, backend: str = "auto", n_resamples: int = 1000,
                   seed: int = 42, batch_size: int = 64, redo: bool = False, log=None) -> dict[str, Path]:
    """Quantize each arm of ``arm_dirs`` (``{name: ARM_DIR}``) to int8 and return ``{f"{name}-int8": predictions}``.

    ``dataset``: the loaded :class:`~distillab.data.TextDataset` the arms were trained on; ``split``: the
    evaluation split (the audit's). Every arm is checked before any is quantized (one :class:`InputError`
    naming the arm). ``redo`` quantizes again even when the recorded inputs match. ``log(message)``, when
    given, is told which arms are quantized and which are up to date.
    """
    arm_dirs = {str(name): Path(path) for name, path in arm_dirs.items()}
    for name, arm_dir in arm_dirs.items():
        if not (arm_dir / "model" / "config.json").is_file():
            raise InputError(f"quantize.arms: {name!r} has no trained student at {arm_dir / 'model'} (list arms "
                             "that this run trains)")
        if not (arm_dir / "predictions" / f"{split}.npz").is_file():
            raise InputError(f"quantize.arms: {name!r} has no predictions for split {split!r} "
                             f"({arm_dir / 'predictions' / f'{split}.npz'})")
    if split not in dataset.splits:
        raise InputError(f"quantize: dataset {dataset.name!r} has no split {split!r}")
    settings = {"split": split, "backend": backend, "n_resamples": n_resamples, "seed": seed, "batch_size": batch_size,
                "dataset": dataset.content_hash()}
    out, features = {}, {}  # featurised rows, shared by arms whose students featurise alike
    for name, arm_dir in arm_dirs.items():
        target = arm_dir / QUANTIZED_DIR
        predictions = target / "predictions" / f"{split}.npz"
        digest = inputs_digest(arm_dir, settings)
        if not redo and predictions.is_file() and _recorded(target) == digest:
            if log:
                log(f"{name}{SUFFIX}: {target} is up to date")
        else:
            record = quantize_arm(arm_dir, dataset, split=split, out=target, n_resamples=n_resamples, seed=seed,
                                  backend=backend, batch_size=batch_size, round_trip=False, reuse_float_serving=True,
                                  extra={STAGE_KEY: digest}, features_cache=features)
            if log:
                seconds = record["measurements"]["seconds"]["total"]
                log(f"{name}{SUFFIX}: {record['backend']['used']}, top-1 agreement {record['agreement']['top1']:.4f}, "
                    f"{seconds:.1f} s")
        out[f"{name}{SUFFIX}"] = predictions
    return out


def inputs_digest(arm_dir: Path, settings: dict) -> str:
    """What an int8 copy is made from: the float predictions (content), the model files (names, sizes, times),
    the settings and the tool version. Hashing the weights themselves would cost more than quantizing a bow
    student; the predictions' content changes whenever the weights do."""
    from distillab import __version__

    model = arm_dir / "model"
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model.iterdir()
                   if p.is_file() and p.name != "temperature.json")
    temperature = model / "temperature.json"
    inputs = {"predictions": sha256_file(arm_dir / "predictions" / f"{settings['split']}.npz"), "model_files": files,
              "temperature": sha256_file(temperature) if temperature.is_file() else None, "settings": settings,
              "tool_version": __version__}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _recorded(target: Path) -> str | None:
    path = target / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (InputError, OSError):
        return None
    return record.get(STAGE_KEY) if isinstance(record, dict) else None
