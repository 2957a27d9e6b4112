"""What a teacher cache was made from, as comparable JSON: the data rows, the teacher, the capture settings.

A cache is only trustworthy while the dataset, label list and teacher it was made from are the
ones in use. The fingerprint records each of them by hash so a reader (or a resumed run) can say
exactly which one changed instead of silently serving stale logits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from distillab import __version__
from distillab.errors import InputError
from distillab.io import read_json, sha256_file

TEACHER_CARD = "teacher_card.json"  # written by scripts/build_r52_teacher.py beside the model
CARD_KEYS = ("package", "package_version", "build_script_sha256", "settings")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
NOT_WEIGHTS = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth")


def sha256_lines(items: Iterable[str]) -> str:
    """Hash a sequence of strings unambiguously (newline-terminated; row ids never contain newlines)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(str(item).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def text_digests(texts: Iterable[str]) -> np.ndarray:
    """8-byte sha256 prefix per text ([n, 8] uint8): lets a reader name the row whose text changed."""
    rows = [hashlib.sha256(text.encode("utf-8")).digest()[:8] for text in texts]
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), 8).copy()


def dataset_fingerprint(dataset, splits: list[str], ids: np.ndarray, labels: np.ndarray) -> dict:
    """The dataset part of the fingerprint: whole-dataset content hash plus the cached rows' ids and labels."""
    return {
        "name": dataset.name,
        "content_sha256": dataset.content_hash(),
        "splits": {split: int(dataset.splits[split].ids.shape[0]) for split in splits},
        "ids_sha256": sha256_lines(ids.tolist()),
        "labels_sha256": sha256_lines(dataset.classes[int(label)] for label in labels),
        "classes_sha256": sha256_lines(dataset.classes),
    }


def state_dict_sha256(model) -> str:
    """Hash a model's weights as loaded (names, dtypes, shapes, bytes), wherever they came from.

    Hashing the state dict rather than files covers Hub ids, local folders, GGUF dequantisation and
    in-memory models alike, and catches a fresh randomly initialised head that a file hash would miss.
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        # view as bytes: works for bf16, which numpy cannot hold.
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> dict:
    """Name, class, vocabulary size and (for fast tokenizers) a hash of the full tokenizer definition."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return {
        "name": portable_name(tokenizer.name_or_path) if getattr(tokenizer, "name_or_path", None) else None,
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "sha256": hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest() if backend is not None else None,
    }


def portable_name(name) -> str:
    """A model name that means the same on every machine: a Hub id as given, a local path cut to its folder name.

    A cache is shared (the builtin one ships in the wheel), so it must never record where a model
    happened to live on the machine that built it.
    """
    text = str(name)
    path = Path(text).expanduser()
    if path.exists() or path.is_absolute() or text.startswith((".", "~")) or "\\" in text or text.count("/") > 1:
        return path.name or text
    return text


def model_identity(name_or_path) -> dict:
    """Portable identity of a teacher from its name or folder alone (nothing loaded, no local paths).

    ``name``: see :func:`portable_name`; for a folder, ``files_sha256`` hashes each weight file
    (by file name) and ``card`` keeps the identity fields of a ``teacher_card.json`` written by the
    script that built the teacher (package, version, build-script hash, settings). Both are None for
    a Hub id. A config and a cache name the same teacher when these three values agree.
    """
    path = Path(str(name_or_path)).expanduser()
    identity = {"name": portable_name(name_or_path), "files_sha256": None, "card": None}
    if path.is_dir():
        identity["files_sha256"] = {
            file.name: sha256_file(file) for file in sorted(path.iterdir())
            if file.is_file() and file.suffix in WEIGHT_SUFFIXES and file.name not in NOT_WEIGHTS
        }
        card = path / TEACHER_CARD
        if card.is_file():
            fields = read_json(card)
            if not isinstance(fields, dict):
                raise InputError(f"{card}: a teacher card must be a JSON object, got {type(fields).__name__}")
            identity["card"] = {key: fields[key] for key in CARD_KEYS if key in fields}
    return identity


def describe_teacher(teacher: dict) -> str:
    """One short line naming a recorded teacher (a fingerprint's ``teacher`` part), for error messages."""
    if teacher.get("source_sha256"):
        return f"imported {teacher.get('source_file')} (sha256 {teacher['source_sha256'][:12]})"
    details = []
    card = teacher.get("card") or {}
    if card.get("package"):
        details.append(f"package {card['package']} {card.get('package_version') or ''}".rstrip())
    if card.get("build_script_sha256"):
        details.append(f"build script sha256 {str(card['build_script_sha256'])[:12]}")
    files = teacher.get("files_sha256") or {}
    if files:
        details.extend(f"{name} sha256 {digest[:12]}" for name, digest in files.items())
    elif teacher.get("weights_sha256"):
        details.append(f"weights sha256 {teacher['weights_sha256'][:12]}")
    quantized = teacher.get("quantization")
    if isinstance(quantized, dict):  # a quantized copy ran: never to be read as the full-precision teacher
        details.append(f"{quantized.get('scheme')}-quantized by {quantized.get('backend')}")
    return f"model {teacher.get('name')}" + (f" ({'; '.join(details)})" if details else "")


def teacher_fingerprint(name: str, model, tokenizer) -> dict:
    """The teacher part: its portable identity, Hub revision when known, and a hash of the weights as loaded."""
    config = model.config
    return {
        **model_identity(name),
        "revision": getattr(config, "_commit_hash", None),
        "architecture": type(model).__name__,
        "weights_sha256": state_dict_sha256(model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
    }


def make_fingerprint(dataset_part: dict, teacher_part: dict, capture: dict) -> dict:
    return {"dataset": dataset_part, "teacher": teacher_part, "capture": capture, "tool_version": __version__}


def diff(expected: Any, found: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON-like values differ, each with both values (short), for error messages."""
    if isinstance(expected, dict) and isinstance(found, dict):
        lines: list[str] = []
        for key in sorted(set(expected) | set(found), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in found:
                lines.append(f"{path}: missing (expected {short_repr(expected[key])})")
            elif key not in expected:
                lines.append(f"{path}: unexpected {short_repr(found[key])}")
            else:
                lines.extend(diff(expected[key], found[key], path))
        return lines
    if expected != found:
        return [f"{prefix or 'value'}: {short_repr(expected)} != {short_repr(found)}"]
    return []


def short_repr(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
