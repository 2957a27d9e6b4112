"""``quantize_arm``: an int8 copy of a trained student, and what it costs and changes, in ``ARM/quantized/``.

Written (into a temporary folder beside the output, renamed into place only when everything is done):

```
ARM/quantized/model/                 the int8 student (see distillab.quantize.model), loadable with
                                     distillab.quantize.load_quantized_student
ARM/quantized/predictions/SPLIT.npz  its logits in the predictions format (+ SPLIT.json sidecar: role
                                     "quantized", recipe.quantized "int8", recipe.backend)
ARM/quantized/quantization.json      sizes, serving cost, agreement, flips by confidence, paired-bootstrap
                                     ΔECE/ΔNLL, temperatures float vs int8
```

The int8 predictions are those of the saved-and-reloaded model (the round trip is checked against the
in-memory one). The float predictions are the arm's own ``ARM/predictions/SPLIT.npz`` (what its audit read)
when the float model gives the same logits on its first rows; otherwise every row is predicted again from
``ARM/model``. Either way ``quantization.json`` says which.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distillab.errors import InputError
from distillab.io import load_predictions, read_json, save_predictions, sidecar_path, write_json_atomic
from distillab.train.students import weight_files

QUANTIZED_DIR = "quantized"
RECORD_FILE = "quantization.json"
SCHEMA_VERSION = 1
MAX_RESAMPLES = 100_000  # the audit's bound
# Rows (rounded up to whole batches) on which the reloaded int8 model must give the in-memory model's logits
# exactly, and on which the arm's saved float predictions must match the float model's (else all are predicted).
CHECK_ROWS = 128
SAVED_TOLERANCE = 1e-4  # rtol and atol: float sums in another batch composition (or on a GPU) differ in low bits


def quantize_arm(arm_dir, data, split: str = "test", out=None, n_resamples: int = 1000, seed: int = 42,
                 backend: str = "auto", batch_size: int = 64, cal_split=None, data_dir: str | None = None,
                 round_trip: bool = True, reuse_float_serving: bool = False, extra: dict | None = None,
                 features_cache: dict | None = None) -> dict:
    """Quantize ``arm_dir/model`` to int8, evaluate it against the float student on ``split``, write ``out``.

    ``data``: a :class:`~distillab.data.TextDataset` or anything ``--data`` accepts. ``out`` defaults to
    ``arm_dir/quantized`` (replaced as a whole). ``cal_split``: a JSON file ``{"cal": [...], "eval": [...]}``
    as the audit takes; by default an arm with ``model/temperature.json`` is calibrated on the audit's
    halves (``RandomState(1041).permutation(n)``), one without on all rows. Returns the record written to
    ``quantization.json``. Every bad input is an :class:`InputError` raised before anything is written.

    For a caller that already has the arm's numbers (the pipeline's :func:`distillab.quantize.stage.quantize_stage`):
    ``round_trip=False`` predicts with the in-memory int8 model instead of saving, reloading and comparing the
    first rows (the saved weights' digest is still checked whenever the folder is loaded);
    ``reuse_float_serving=True`` takes the float student's serving cost from its predictions sidecar
    (``measurements.serving``, same protocol) when it was measured on the CPU, instead of timing it again.
    ``extra``: keys added to the record (e.g. the stage's inputs digest). ``features_cache``: a dict shared by
    calls on the same dataset (e.g. one stage's arms), so students with equal featurisers featurise the split once.
    """
    from distillab.calibrate.temperature import MIN_CAL_ROWS, SPLIT_SEED, cal_eval_split, split_from_json
    from distillab.quantize import evaluate as E
    from distillab.quantize.backends import resolve_backend
    from distillab.serve import load_student, read_temperature

    clock = _Clock()
    arm_dir = Path(arm_dir)
    model_dir = arm_dir / "model"
    _check_arm(arm_dir, model_dir)
    _check_settings(n_resamples, seed, batch_size)
    out = Path(out) if out is not None else arm_dir / QUANTIZED_DIR
    _check_out(out, model_dir)
    chosen = resolve_backend(backend)

    with clock("load"):
        dataset = data if hasattr(data, "splits") else _load_dataset(data, data_dir)
        if split not in dataset.splits:
            raise InputError(f"--split {split!r}: dataset {dataset.name!r} has no such split "
                             f"(it has {', '.join(dataset.splits)})")
        rows = dataset.splits[split]
        n = len(rows)
        if n == 0:
            raise InputError(f"--split {split!r}: dataset {dataset.name!r} has no rows there")
        fp32 = load_student(model_dir, raw=True, batch_size=batch_size)
        _check_classes(model_dir, list(fp32.classes_), list(dataset.classes))
        saved_temperature = read_temperature(model_dir)
        if cal_split is not None:
            cal_rows, eval_rows = split_from_json(read_json(cal_split), rows.ids, n, str(cal_split))
            split_source = f"file {cal_split}"
        elif saved_temperature is not None:
            cal_rows, eval_rows = cal_eval_split(n, SPLIT_SEED)
            split_source = (f"RandomState({SPLIT_SEED}).permutation({n}): first half cal, second half eval "
                            "(the audit's halves)")
        else:
            cal_rows = eval_rows = np.arange(n)
            split_source = (f"all {n} rows ({model_dir} has no temperature.json, so the arm was never calibrated: "
                            "both temperatures are fitted and judged on the same rows)")
        if cal_rows.size < MIN_CAL_ROWS:
            raise InputError(f"--split {split!r}: the cal rows number {cal_rows.size}; fitting a temperature needs "
                             f"at least {MIN_CAL_ROWS}")

    texts = rows.texts
    with clock("predict_float32"):
        key = (fp32.student.featurizer, dataset.name, split, n)
        if features_cache is not None and key in features_cache:
            features = features_cache[key]
        else:
            features = fp32.student.featurize(texts)
            if features_cache is not None:
                features_cache[key] = features
        # Whole batches, as the full pass cuts them: torch.ao's int8 logits depend on the other rows of a batch.
        head_rows = min(n, batch_size * -(-CHECK_ROWS // batch_size))
        head = _first_rows(features, head_rows, fp32.student, texts)
        float_logits, float_source = _float_logits(arm_dir / "predictions" / f"{split}.npz", fp32, features, head,
                                                    rows.ids, batch_size)
    from distillab.train.students import count_parameters

    params = count_parameters(fp32.model)
    table = fp32.model.embedding.weight.detach() if fp32.student.kind == "bow" else None
    saved_serving = _saved_serving(arm_dir / "predictions" / f"{split}.npz") if reuse_float_serving else None
    with clock("quantize"):
        # The float model is needed afterwards only to time it; when its saved cost is used, quantize it in place.
        qmodel, description = quantize_model_of(fp32, chosen, copy=saved_serving is None)

    tmp, made = _temporary_dir(out)
    try:
        with clock("save_and_reload"):
            from distillab.quantize.model import load_quantized_model, save_quantized

            save_quantized(tmp / "model", qmodel, fp32.student, chosen, model_dir, description, fp32_table=table)
            if round_trip:
                q_student, q_model, _, _ = load_quantized_model(tmp / "model")
                in_memory = _predict(fp32.student, qmodel, head, batch_size)
            else:
                q_student, q_model = fp32.student, qmodel
        with clock("predict_int8"):
            int8_logits = _predict(q_student, q_model, features, batch_size)
        if round_trip:
            round_trip_diff = float(np.abs(int8_logits[:head_rows] - in_memory).max())
            if round_trip_diff != 0.0:
                raise RuntimeError(f"the reloaded int8 model differs from the in-memory one by {round_trip_diff} "
                                   "(a distillab bug: please report it)")
            round_trip_record = {"rows": head_rows, "max_abs_diff": round_trip_diff}
        else:
            round_trip_record = {"rows": 0, "max_abs_diff": None,
                                 "note": "not checked here (predicted with the in-memory int8 model); loading the "
                                         "saved folder checks its weights' digest"}
        if not np.isfinite(int8_logits).all():
            raise InputError(f"{model_dir}: the int8 model gives NaN or infinite logits on split {split!r}")

        with clock("evaluate"):
            labels = rows.labels
            probs = {"float32": _softmax(float_logits), "int8": _softmax(int8_logits)}
            deltas = E.paired_deltas(probs, labels, "float32", n_resamples=n_resamples, seed=seed)["int8"]
            values = {name: E.metric_values(p, labels) for name, p in probs.items()}
            calibration = E.calibration(float_logits, int8_logits, labels, cal_rows, eval_rows,
                                        n_resamples=n_resamples, seed=seed)
            calibration.update({"split": split_source, "temperature_float32_saved": saved_temperature})
            if saved_temperature is not None:
                gap = abs(calibration["temperature_float32"] / saved_temperature - 1.0)
                calibration["temperature_float32_saved_gap"] = gap
                if gap > 0.01:
                    calibration["warnings"].append(
                        f"the float32 temperature refitted here ({calibration['temperature_float32']:.4f}) differs from "
                        f"{model_dir / 'temperature.json'} ({saved_temperature:.4f}) by {gap:.1%}: the cal rows are "
                        "probably not the audit's (pass the audit's --cal-split FILE)")

        with clock("serving"):
            serving = {"float32": saved_serving or measure_serving(fp32.model, fp32.student, texts),
                       "int8": measure_serving(q_model, q_student, texts)}
            float_serving_source = ("the float arm's predictions sidecar (measurements.serving)" if saved_serving
                                    else "measured here")

        sizes = {"float32": _folder_sizes(model_dir), "int8": _folder_sizes(tmp / "model")}
        sizes["ratio_weights"] = sizes["int8"]["weights_bytes"] / max(sizes["float32"]["weights_bytes"], 1)
        sizes["memory_bytes"] = description["memory_bytes"]
        if calibration["n_cal"] < n:  # fitted on the audit's cal half: the temperature to serve the int8 model with
            write_json_atomic(tmp / "model" / "temperature.json", {
                "temperature": calibration["temperature_int8"], "fit_split": "cal",
                "how": "post-hoc temperature refitted on the int8 logits (distillab quantize); "
                       "apply as softmax(logits / temperature)"})

        record = {
            "schema_version": SCHEMA_VERSION,
            "arm": _arm_name(arm_dir),
            "arm_dir": str(arm_dir),
            "model_dir": str(model_dir),
            "dataset": dataset.name,
            "split": split,
            "n": n,
            "num_classes": len(dataset.classes),
            "backend": chosen.record(),
            "quantized": description["quantized"],
            "kept_float32": description["kept_float32"],
            "notes": description["notes"],
            "size": sizes,
            "round_trip": round_trip_record,
            "float32_predictions": float_source,
            "agreement": E.agreement(float_logits, int8_logits),
            "flips_by_confidence": E.flips_by_confidence(float_logits, int8_logits),
            "metrics": values,
            "delta": deltas,
            "bootstrap": {"n_resamples": n_resamples, "seed": seed, "rows": f"all {n} rows of {split!r}",
                          "procedure": "the audit's paired bootstrap (distillab.audit.bootstrap.pairwise_bootstrap, "
                                       "group overall): one RandomState(seed) stream, both models scored on the "
                                       "same resampled rows; median and quantiles 0.025/0.975 of int8 - float32"},
            "calibration": calibration,
            "batch_size": batch_size,
            "measurements": {"serving": serving},
            "float32_serving_source": float_serving_source,
        }
        if chosen.name == "torch.ao" and description["quantized"]["linear"]:
            record["notes"].append(
                "torch.ao quantizes a Linear layer's activations with one scale per batch, so an int8 logit depends "
                f"slightly on the other rows of its batch (batch size {batch_size} here); torchao uses one per row")
        meta = _sidecar(arm_dir / "predictions" / f"{split}.npz", fp32, chosen, dataset, split, serving["int8"], params)
        meta["model_bytes"] = sizes["int8"]["weights_bytes"]  # what a deployment size budget reads
        with clock("write"):
            save_predictions(tmp / "predictions" / f"{split}.npz", logits=int8_logits, labels=rows.labels,
                             ids=rows.ids, meta=meta)
        record.update(extra or {})
        record["measurements"]["seconds"] = clock.seconds | {"total": clock.total()}
        write_json_atomic(tmp / RECORD_FILE, record)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return record


def quantize_model_of(student, backend, copy: bool = True):
    """:func:`distillab.quantize.backends.quantize_model` of a loaded :class:`distillab.serve.Student`
    (``copy=False``: its float model is quantized in place and is gone)."""
    from distillab.quantize.backends import quantize_model

    return quantize_model(student.model, backend, copy=copy)


def _first_rows(features, k: int, student, texts: list[str]):
    """The first ``k`` rows of featurised rows, without featurising them again (bow arrays, HF lists)."""
    from dataclasses import replace

    from distillab.train.students import BowFeatures

    if isinstance(features, list):
        return features[:k]
    if isinstance(features, BowFeatures):
        return replace(features, flat=features.flat[: features.offsets[k]], offsets=features.offsets[: k + 1])
    return student.featurize(texts[:k])


# --------------------------------------------------------------------------- pieces


class _Clock:
    """Wall seconds per phase, for the record (a measurement: it differs between identical runs)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        return time.perf_counter() - self.start


def _check_arm(arm_dir: Path, model_dir: Path) -> None:
    if not arm_dir.is_dir():
        raise InputError(f"{arm_dir}: no such folder; give an arm folder such as runs/NAME/arms/ARM")
    if not model_dir.is_dir():
        hint = (" (this looks like the model folder itself: give its parent)" if (arm_dir / "config.json").is_file()
                else "")
        raise InputError(f"{arm_dir}: no trained student (no model/ folder){hint}; give an arm folder such as "
                         "runs/NAME/arms/ARM, which training writes")
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: not a student folder (no config.json); the arm's training did not finish")


def _arm_name(arm_dir: Path) -> str:
    """The arm's name as training recorded it (its folder's name unless moved), else the folder's name."""
    path = arm_dir / "resolved_config.json"
    with contextlib.suppress(InputError, OSError):
        recorded = read_json(path) if path.is_file() else None
        if isinstance(recorded, dict) and isinstance(recorded.get("arm"), str) and recorded["arm"]:
            return recorded["arm"]
    return arm_dir.resolve().name


def _check_settings(n_resamples, seed, batch_size) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or not 1 <= n_resamples <= MAX_RESAMPLES:
        raise InputError(f"--n-resamples must be an integer in [1, {MAX_RESAMPLES}], got {n_resamples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InputError(f"--seed must be an integer in [0, 2**32), got {seed!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer, got {batch_size!r}")


def _check_out(out: Path, model_dir: Path) -> None:
    """``out`` is replaced as a whole: never the student's folder or above it, never someone else's folder."""
    from distillab.io import check_output_dir

    check_output_dir(out)
    resolved, model = out.resolve(), model_dir.resolve()
    if resolved == model or resolved in model.parents or model in resolved.parents:
        raise InputError(f"{out}: --out would replace or sit inside the student folder {model_dir}; "
                         "give another folder (default: ARM/quantized)")
    if out.is_dir() and any(out.iterdir()) and not (out / RECORD_FILE).is_file():
        raise InputError(f"{out}: exists and holds files that distillab quantize did not write (no {RECORD_FILE}); "
                         "give an empty or new folder")


def _load_dataset(spec, data_dir):
    from distillab.data.load import load_dataset, spec_from_argument

    return load_dataset(spec_from_argument(str(spec), data_dir))


def _check_classes(model_dir: Path, model_classes: list, data_classes: list) -> None:
    if len(model_classes) != len(data_classes):
        raise InputError(f"{model_dir}: the student has {len(model_classes)} classes but the dataset has "
                         f"{len(data_classes)}; give the dataset it was trained on")
    names = [str(c) for c in model_classes]
    if all(isinstance(c, str) for c in model_classes) and names != [str(c) for c in data_classes]:
        first = next(i for i, (a, b) in enumerate(zip(names, data_classes)) if a != str(b))
        raise InputError(f"{model_dir}: class {first} is {names[first]!r} in the student but {data_classes[first]!r} "
                         "in the dataset; give the dataset it was trained on")


def _predict(student, model, features, batch_size: int) -> np.ndarray:
    """Float32 logits as :meth:`distillab.serve.Student.logits` computes them, on already featurised rows."""
    from distillab.train.predict import fixed_threads, predict_logits

    threads = student.num_threads
    with contextlib.nullcontext() if threads is None else fixed_threads(threads):
        return predict_logits(_OneProcess(), model, student, features, batch_size)


class _OneProcess:
    """What :func:`predict_logits` asks of an Accelerator in one serving process: nothing to shard or gather."""

    def prepare_data_loader(self, loader):
        return loader

    def gather_for_metrics(self, tensors):
        return tensors


def _softmax(logits: np.ndarray) -> np.ndarray:
    from distillab.audit.metrics import softmax

    return softmax(logits)


@torch.no_grad()
def measure_serving(model, student, texts: list[str]) -> dict:
    """Serving cost by the protocol every report number uses (:func:`distillab.measurements.time_serving`).

    As :func:`distillab.train.predict.serving_cost` times a student (raw texts → logits, batch 32, one
    thread, featurising and the forward pass timed apart), on the CPU, without its per-architecture cache:
    an int8 copy shares the float model's parameter names and shapes, so that cache would hand it the
    float model's number.
    """
    from distillab.measurements import SERVING_BATCH, SERVING_THREADS, time_serving
    from distillab.train.predict import fixed_threads, model_logits

    batch_texts = [texts[i % len(texts)] for i in range(SERVING_BATCH)]
    model.eval()

    def run() -> tuple[float, float]:
        start = time.perf_counter()
        batch = student.collate(student.featurize(batch_texts), np.arange(SERVING_BATCH))
        featurised = time.perf_counter()
        model_logits(model(**batch))
        return featurised - start, time.perf_counter() - featurised

    with fixed_threads(SERVING_THREADS):
        return {**time_serving(run), "device": "cpu"}


def _float_logits(path: Path, fp32, features, head, ids: np.ndarray, batch_size: int) -> tuple[np.ndarray, dict]:
    """The float student's logits on every row, and where they come from.

    The arm's saved predictions for the split (what its audit read) when they hold these rows and the float
    model gives their logits again on the first rows; otherwise every row is predicted from ``ARM/model``.
    """
    head_logits = _predict(fp32.student, fp32.model, head, batch_size)
    note = None
    if not path.is_file():
        note = f"{path} does not exist"
    else:
        try:
            saved = load_predictions(path)
        except InputError as exc:
            saved, note = None, f"unreadable ({exc})"
        if saved is not None:
            same_rows = saved.logits.shape == (len(ids), head_logits.shape[1]) and (
                saved.ids is None or [str(i) for i in saved.ids] == [str(i) for i in ids])
            if not same_rows:
                note = "it holds other rows than this split"
            else:
                logits = saved.logits.astype(np.float32)
                k = head_logits.shape[0]
                diff = float(np.abs(logits[:k].astype(np.float64) - head_logits).max()) if k else 0.0
                if np.allclose(logits[:k], head_logits, rtol=SAVED_TOLERANCE, atol=SAVED_TOLERANCE):
                    return logits, {"source": "saved", "file": str(path), "checked_rows": k, "max_abs_diff": diff}
                note = (f"its first {k} rows differ from the float model's logits by up to {diff:.3g} "
                        f"(more than {SAVED_TOLERANCE:g})")
    logits = _predict(fp32.student, fp32.model, features, batch_size)
    return logits, {"source": "recomputed", "file": str(path) if path.is_file() else None,
                    "note": f"predicted again from the model: {note}"}


def _saved_serving(path: Path) -> dict | None:
    """The float arm's serving cost as its trainer recorded it, when measured on the CPU by the same protocol."""
    from distillab.measurements import SERVING_BATCH, SERVING_THREADS

    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    with contextlib.suppress(InputError, OSError):
        meta = read_json(sidecar)
        serving = ((meta.get("measurements") or {}).get("serving") or {}) if isinstance(meta, dict) else {}
        if (serving.get("device") == "cpu" and serving.get("batch_size") == SERVING_BATCH
                and serving.get("threads") == SERVING_THREADS
                and isinstance(serving.get("ms_per_example"), dict)):
            return dict(serving)
    return None


def _folder_sizes(folder: Path) -> dict:
    files = [p for p in folder.iterdir() if p.is_file()]
    weights = weight_files(folder)
    return {"weights_bytes": int(sum(p.stat().st_size for p in weights)),
            "weights_files": [p.name for p in weights],
            "folder_bytes": int(sum(p.stat().st_size for p in files if p.name != "temperature.json"))}


def _sidecar(float_predictions: Path, fp32, backend, dataset, split: str, serving: dict, params: int) -> dict:
    """The int8 predictions' sidecar: the float arm's, marked quantized, with the int8 serving cost."""
    base = {}
    sidecar = sidecar_path(float_predictions)
    if sidecar.is_file():
        loaded = read_json(sidecar)
        base = loaded if isinstance(loaded, dict) else {}
    recipe = dict(base.get("recipe") or {})
    recipe.update({"quantized": "int8", "backend": backend.name})
    meta = {key: value for key, value in base.items() if key not in ("measurements", "calibration")}
    meta.update({
        "model": f"{base.get('model') or fp32.student.name}-int8",
        "role": "quantized",
        "recipe": recipe,
        "params": params,
        "measurements": {"serving": serving},
        "temperature": None,
        "classes": [str(c) for c in dataset.classes],
        "dataset": dataset.name,
        "split": split,
        "quantization": {"backend": backend.name, "version": backend.version,
                         "scheme": backend.record()["scheme"], "record": RECORD_FILE},
    })
    return meta


def _temporary_dir(out: Path) -> tuple[Path, list[Path]]:
    """An empty folder beside ``out`` (and the parent folders made for it, to remove on failure)."""
    made = []
    parent = out.parent
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    for folder in reversed(made):
        try:
            folder.mkdir()
        except OSError as exc:
            raise InputError(f"{out}: cannot make {folder} ({exc.strerror or exc})") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    return tmp, made


def _replace(tmp: Path, out: Path) -> None:
    """Put the finished folder at ``out``; a previous output there is removed only once the new one is in place."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def summary_line(record: dict) -> str:
    """One line for the terminal: size, speed, agreement, ΔECE/ΔNLL with CIs, temperatures."""
    size, serving = record["size"], record["measurements"]["serving"]
    ece, nll = record["delta"]["ece"], record["delta"]["nll"]
    cal = record["calibration"]

    def ms(k):
        return serving[k]["ms_per_example"]["median"]

    def ci(d):
        return f"{d['value']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"

    agreement = record["agreement"]
    return (f"{record['arm']} int8 ({record['backend']['used']}): weights {_mb(size['float32']['weights_bytes'])} -> "
            f"{_mb(size['int8']['weights_bytes'])}, {ms('float32'):.3f} -> {ms('int8'):.3f} ms/example, "
            f"top-1 agreement {agreement['top1']:.4f} ({agreement['flips']} of {agreement['n']} flipped), "
            f"dECE {ci(ece)}, dNLL {ci(nll)}, T {cal['temperature_float32']:.3f} -> {cal['temperature_int8']:.3f}")


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"
