"""What a teacher cache was made from, as comparable JSON: the data rows, the teacher, the capture settings.

A cache is only trustworthy while the dataset, label list and teacher it was made from are the
ones in use. The fingerprint records each of them by hash so a reader (or a resumed run) can say
exactly which one changed instead of silently serving stale logits.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

import numpy as np

from distillab import __version__


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
        "name": getattr(tokenizer, "name_or_path", None) or None,
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "sha256": hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest() if backend is not None else None,
    }


def teacher_fingerprint(name: str, model, tokenizer) -> dict:
    """The teacher part: the name it was loaded by, its Hub revision when known, and a weights hash."""
    config = model.config
    return {
        "name": str(name),
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
