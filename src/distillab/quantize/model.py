"""Save an int8 student to a folder and load it back, ready to predict (no pickle: safetensors + JSON).

A quantized student folder holds the float student's ``config.json`` (and its tokenizer, for a Hugging Face
student), ``int8.safetensors`` (plain tensors: int8/uint8 weights with their scales and offsets, and the
float tensors of the modules left in float32) and ``quantization_config.json`` (the backend and what it
quantized). Loading builds the float architecture, quantizes it with the same backend, and puts the saved
tensors in, bit for bit: a digest of every tensor is recorded when saving and checked when loading.

The bag-of-n-grams student's table is stored as its float save stores it: only the rows training
changed (here: whose int8 row, scale or offset differs from the quantized initial table); the rest are
rebuilt from the initial seed, as :class:`~distillab.train.students.BowStudent` does.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch
from torch import nn

from distillab.errors import InputError
from distillab.io import atomic_path, read_json, write_json_atomic
from distillab.quantize.backends import (
    Backend, load_quantized_tensors, quantize_model, quantized_modules, quantized_tensors, resolve_backend,
    tensors_sha256, torchao_available,
)

WEIGHTS_FILE = "int8.safetensors"
CONFIG_FILE = "quantization_config.json"
FORMAT = "distillab.quantized_student"
FORMAT_VERSION = 1
SPARSE_PREFIX = "embedding."  # the bow student's table (and, under torch.ao, its row scales and offsets)
CHANGED_ROWS = "embedding.changed_rows"
# Files of a float student folder that are weights (not copied) or served state (the int8 model has its own).
_NOT_COPIED = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json", "temperature.json")


def full_tensors(qmodel: nn.Module, backend: str) -> dict[str, torch.Tensor]:
    """Every tensor that defines the int8 model: the quantized modules' plain tensors and the float rest."""
    tensors = quantized_tensors(qmodel, backend)
    tensors.update(_float_tensors(qmodel))
    return tensors


def _float_tensors(qmodel: nn.Module) -> dict[str, torch.Tensor]:
    owners = tuple(quantized_modules(qmodel))
    out = {}
    for key, value in qmodel.state_dict().items():
        owner = key.rpartition(".")[0]
        if any(owner == o or owner.startswith(o + ".") for o in owners) or not torch.is_tensor(value):
            continue
        out[key] = value.detach().contiguous().cpu()
    return out


def float_skeleton(student) -> nn.Module:
    """The student's float architecture: the bow student with its initial table, an HF model from its config."""
    if student.kind == "bow":
        from distillab.train.students import BowClassifier

        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone
            if student.seed is not None:  # as BowStudent.initial_table builds it: the table is the initial one
                torch.manual_seed(student.seed)
            model = BowClassifier(student.num_labels, student.hasher.buckets, student.dim)
        table = model.embedding.weight.detach()
        if student.seed is not None and hashlib.sha256(table.numpy().tobytes()).hexdigest() != student.init_sha256:
            raise InputError(f"torch {torch.__version__} rebuilds another initial table from seed {student.seed} "
                             "than the one this student was saved with; load it with the torch version that made it")
        return model.eval()
    from transformers import AutoModelForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        return AutoModelForSequenceClassification.from_config(student.config).eval()


def save_quantized(directory, qmodel: nn.Module, student, backend: Backend, source_dir,
                   description: dict | None = None, fp32_table: torch.Tensor | None = None) -> dict:
    """Write the int8 student into ``directory`` (made; files written atomically); returns its config record.

    ``fp32_table``: the bow student's trained float table, to find the rows training changed when its saved
    weights do not list them.
    """
    directory, source_dir = Path(directory), Path(source_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for path in sorted(source_dir.iterdir()):
        if path.is_file() and not any(path.match(p) for p in _NOT_COPIED):
            shutil.copy2(path, directory / path.name)
    full = full_tensors(qmodel, backend.name)
    stored = dict(full)
    sparse = None
    if student.kind == "bow" and student.seed is not None:
        # Quantization is row-wise (a row's int8 values, scale and offset depend on that row only), so the rows
        # that differ from the quantized initial table are among those training changed; loading checks the digest.
        keys = sorted(k for k in full if k.startswith(SPARSE_PREFIX))
        rows = _trained_rows(student, fp32_table)
        for key in keys:
            stored[key] = full[key][rows].contiguous()
        stored[CHANGED_ROWS] = rows
        sparse = {"rows": CHANGED_ROWS, "keys": keys, "changed_rows": int(rows.numel()),
                  "total_rows": int(full[keys[0]].shape[0])}
    from safetensors.torch import save_file

    with atomic_path(directory / WEIGHTS_FILE, suffix=".safetensors") as tmp:
        save_file(stored, str(tmp))
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "student_kind": student.kind,
        "backend": backend.name,
        "backend_version": backend.version,
        "torch_version": torch.__version__,
        "scheme": backend.record()["scheme"],
        "quantized": {kind: sorted(n for n, k in quantized_modules(qmodel).items() if k == kind)
                      for kind in ("linear", "embedding_bag")},
        "sparse": sparse,
        "tensors_sha256": tensors_sha256(full),
        "description": description,
    }
    write_json_atomic(directory / CONFIG_FILE, record)
    return record


def _trained_rows(student, fp32_table: torch.Tensor | None) -> torch.Tensor:
    """Rows of the bow table that training changed: as its float save lists them, else by comparison."""
    from safetensors import safe_open

    from distillab.train.students import CHANGED_ROWS as FLOAT_CHANGED_ROWS

    if student.weights is not None and Path(student.weights).is_file():
        with safe_open(str(student.weights), framework="pt") as handle:
            if FLOAT_CHANGED_ROWS in handle.keys():
                return handle.get_tensor(FLOAT_CHANGED_ROWS).to(torch.int64)
    if fp32_table is None:
        raise ValueError("the bow student's float table is needed to find the rows training changed")
    return torch.nonzero((fp32_table != student.initial_table()).any(dim=1)).flatten()


def load_quantized_model(directory) -> tuple[object, nn.Module, list, dict]:
    """(student featuriser, int8 model, class names, quantization config) from a folder :func:`save_quantized` wrote."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise InputError(f"{directory}: not an int8 student folder (no {CONFIG_FILE}); "
                         "give the model folder `distillab quantize` wrote (ARM/quantized/model)")
    config = read_json(config_path)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"{config_path}: not a {FORMAT} config")
    if config.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{config_path}: format_version {config.get('format_version')!r} is not {FORMAT_VERSION}; "
                         "rerun distillab quantize")
    name = config.get("backend")
    if name == "torchao":
        ok, why = torchao_available()
        if not ok:
            raise InputError(f"{directory}: quantized with torchao, which is not usable here ({why})")
        backend = resolve_backend("torchao")
    elif name == "torch.ao":
        backend = resolve_backend("torch.ao")
    else:
        raise InputError(f"{config_path}: unknown backend {name!r}")
    if not (directory / WEIGHTS_FILE).is_file():
        raise InputError(f"{directory}: no int8 weights ({WEIGHTS_FILE})")
    student, classes = _student(directory, config.get("student_kind"))
    qmodel, _ = quantize_model(float_skeleton(student), backend, copy=False)
    from safetensors.torch import load_file

    try:
        stored = load_file(str(directory / WEIGHTS_FILE))
    except Exception as exc:
        raise InputError(f"{directory / WEIGHTS_FILE}: cannot read ({str(exc).strip().splitlines()[0]})") from None
    base = full_tensors(qmodel, backend.name)
    sparse = config.get("sparse") or {}
    sparse_keys = set(sparse.get("keys") or ())
    full = {}
    for key, tensor in base.items():
        if key not in stored:
            raise InputError(f"{directory / WEIGHTS_FILE}: missing tensor {key!r} for this architecture")
        if key in sparse_keys:
            rows = stored[CHANGED_ROWS]
            tensor = tensor.clone()
            tensor[rows] = stored[key]
            full[key] = tensor
        else:
            full[key] = stored[key]
        if full[key].shape != tensor.shape or full[key].dtype != tensor.dtype:
            raise InputError(f"{directory / WEIGHTS_FILE}: tensor {key!r} is {full[key].dtype} {tuple(full[key].shape)}, "
                             f"the architecture needs {tensor.dtype} {tuple(tensor.shape)}")
    unexpected = sorted(set(stored) - set(base) - {CHANGED_ROWS})
    if unexpected:
        raise InputError(f"{directory / WEIGHTS_FILE}: tensor {unexpected[0]!r} does not belong to this architecture")
    if tensors_sha256(full) != config.get("tensors_sha256"):
        raise InputError(f"{directory}: the rebuilt int8 weights differ from those saved (torch {torch.__version__} "
                         f"vs {config.get('torch_version')} at save); rerun distillab quantize with this torch")
    load_quantized_tensors(qmodel, full, backend.name)
    floats = _float_tensors(qmodel)
    state = qmodel.state_dict()
    with torch.no_grad():
        for key in floats:
            state[key].copy_(full[key])
    return student, qmodel.eval(), classes, config


def _student(directory: Path, kind):
    """The featuriser of the saved student, as :mod:`distillab.serve` builds it, and the class names."""
    model_config = read_json(directory / "config.json") if (directory / "config.json").is_file() else None
    if not isinstance(model_config, dict):
        raise InputError(f"{directory}: no model config.json")
    if kind == "bow":
        from distillab.train.students import BowStudent

        student = BowStudent.load(directory)
        classes = model_config.get("classes") or list(range(student.num_labels))
        return student, classes
    if kind == "hf":
        from distillab.train.students import HFStudent

        id2label = model_config.get("id2label") or {}
        classes = [id2label[str(i)] for i in range(len(id2label))]
        return HFStudent(str(directory), len(classes), classes=classes, max_length=None), classes
    raise InputError(f"{directory / CONFIG_FILE}: unknown student_kind {kind!r}")


def load_quantized_student(directory, raw: bool = False, batch_size: int = 64):
    """The int8 student in ``directory`` as a :class:`distillab.serve.Student` (``predict``/``predict_proba``).

    Its ``temperature.json`` (the temperature refitted on the int8 logits, when the float arm had one) is
    applied unless ``raw=True``.
    """
    from distillab.serve import Student, read_temperature

    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be a positive integer, got {batch_size!r}")
    student, model, classes, _ = load_quantized_model(directory)
    temperature = None if raw else read_temperature(Path(directory))
    return Student(student, model, classes, temperature=temperature, batch_size=batch_size)
