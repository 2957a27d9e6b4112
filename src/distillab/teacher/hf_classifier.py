"""Run any ``AutoModelForSequenceClassification`` over a dataset once and cache its logits.

Single process or data-parallel under ``accelerate launch`` (each rank writes its own shards),
CPU or GPU (autocast on CUDA). Rows inside a shard are batched longest-first to cut padding;
the batching depends only on the shard, so a resumed run recomputes identical bytes. ``features``
adds pooled hidden states per row (see :mod:`distillab.teacher.features`) to the same shards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from distillab.errors import InputError
from distillab.teacher.cache import DEFAULT_SHARD_ROWS, CacheWriter
from distillab.teacher.capture import (
    check_tokenizer,
    run_shards,
    select_rows,
    start_capture,
    topk_outputs,
)
from distillab.teacher.features import model_layers, parse_feature_specs, pooled_features, resolve_features, tensor_name


def load_classifier(name_or_path: str, tokenizer_name=None):
    """(model, tokenizer) from a local folder or Hub id; a clear error when either cannot be loaded.

    ``tokenizer_name`` is a path / Hub id, or an already loaded tokenizer, which is used as given.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a sequence-classification model from {name_or_path!r}: "
                         f"{str(exc).splitlines()[0]}") from None
    if tokenizer_name is not None and not isinstance(tokenizer_name, (str, os.PathLike)):
        return model, tokenizer_name
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or name_or_path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a tokenizer from {tokenizer_name or name_or_path!r}: "
                         f"{str(exc).splitlines()[0]}; pass --tokenizer PATH_OR_ID") from None
    return model, tokenizer


def check_label_space(model, classes: list[str], name: str, check_names: bool = True) -> None:
    """The teacher's output must line up with the dataset's class ids, else every cached row is wrong."""
    config = model.config
    if config.num_labels != len(classes):
        raise InputError(
            f"teacher {name!r} has {config.num_labels} output labels but the dataset has {len(classes)} classes; "
            "use a teacher fine-tuned on this label set"
        )
    id2label = {int(i): str(label) for i, label in (getattr(config, "id2label", None) or {}).items()}
    names = [id2label.get(i) for i in range(len(classes))]
    generic = all(label is None or re.fullmatch(r"LABEL_\d+", label) for label in names)
    if not check_names or generic or names == list(classes):
        return
    first = next(i for i, (a, b) in enumerate(zip(names, classes)) if a != b)
    how = "the same names in a different order" if set(names) == set(classes) else "different names"
    raise InputError(
        f"teacher {name!r} id2label has {how} than the dataset's classes (class {first}: model {names[first]!r}, "
        f"dataset {classes[first]!r}); fix the label order, or pass --ignore-label-names if ids already line up"
    )


def cache_classifier(
    model,
    dataset,
    out: str | os.PathLike,
    *,
    tokenizer=None,
    splits: list[str] | None = None,
    temperature: float | None = None,
    dtype: str = "fp16",
    topk: int | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    overwrite: bool = False,
    check_label_names: bool = True,
    progress: bool = True,
    features=None,
    quantize: str | None = None,
    quantize_backend: str = "auto",
) -> Path:
    """Cache a classifier teacher's logits (``/ temperature`` when given) for ``splits`` of ``dataset``.

    ``model`` is a Hub id / local path, or an already loaded model (then pass ``tokenizer``);
    ``tokenizer`` may also be a path / Hub id when the model folder has no tokenizer files.
    Dense logits by default; ``topk=k`` stores the sparse top-k form instead. ``features`` (e.g.
    ``"pooled.6,pooled.last"`` or ``["pooled.12"]``) also stores, per row, the mean over its non-padding
    tokens of ``hidden_states[L]`` (0 = embedding output, ``num_hidden_layers`` = last layer) in the
    cache dtype; read them back with ``TeacherCache.features(name, ids)``. ``quantize="int8"`` (or ``"int4"``
    where torchao and a CUDA device allow) caches the logits of a quantized copy of the teacher instead, by
    :func:`distillab.quantize.backends.quantize_teacher` (``quantize_backend``: auto / torchao / torch.ao);
    the scheme, backend and a digest of the quantized weights go into the fingerprint
    (``teacher.quantization``), so such a cache is never taken for the full-precision one. Returns ``out``.
    """
    import torch

    if batch_size < 1 or max_length < 1:
        raise InputError(f"batch_size and max_length must be >= 1, got {batch_size} and {max_length}")
    name = model if isinstance(model, str) else getattr(model.config, "name_or_path", "") or type(model).__name__
    wanted = parse_feature_specs(features)
    check_features(model, wanted, dtype)  # before the weights load: a bad layer costs nothing
    plan = None
    if quantize is not None:  # a scheme this machine cannot run is refused before anything loads
        from distillab.quantize.backends import resolve_teacher_quantization

        plan = resolve_teacher_quantization(quantize, quantize_backend)
    if isinstance(model, str):
        model, tokenizer = load_classifier(model, tokenizer)  # a loaded tokenizer is kept as given
    elif tokenizer is None:
        raise InputError("pass tokenizer= along with an already loaded model")
    check_tokenizer(model, tokenizer, name)
    classes = list(dataset.classes)
    check_label_space(model, classes, name, check_names=check_label_names)
    splits, ids, texts, labels = select_rows(dataset, splits)
    entries = check_features(model, wanted, dtype)
    layers, width = model_layers(model.config, name) if entries else (None, None)

    settings = {"runner": "hf_classifier", "splits": splits, "temperature": temperature, "dtype": dtype, "k": topk,
                "max_length": max_length, "batch_size": batch_size}
    if entries:  # only then: a cache without features keeps the fingerprint it always had
        settings["features"] = [entry["name"] for entry in entries]
    device, precision_ctx, fingerprint = start_capture(model, tokenizer, name, dataset, splits, ids, labels, settings)
    if plan is not None:  # the fingerprint's weights hash is the float teacher's; what ran is recorded beside it
        import contextlib

        from distillab.quantize.backends import quantize_teacher

        model, device, record = quantize_teacher(model, plan, device)
        fingerprint["teacher"]["quantization"] = record
        precision_ctx = contextlib.nullcontext()  # int8 kernels (CPU) or a bf16 int4 model: no autocast
        fingerprint["capture"]["precision"] = "int4-bf16" if plan.scheme == "int4" else "int8-dynamic"
    writer = CacheWriter(out, ids=ids, labels=labels, texts=texts, classes=classes, fingerprint=fingerprint,
                         kind="topk" if topk else "dense", width=len(classes), dtype=dtype, k=topk,
                         temperature=temperature, shard_rows=shard_rows, features=entries, teacher_layers=layers)

    def compute(start: int, stop: int, advance) -> dict[str, np.ndarray]:
        shard_texts = texts[start:stop]
        lengths = [len(x) for x in tokenizer(shard_texts, truncation=True, max_length=max_length)["input_ids"]]
        order = np.argsort(-np.asarray(lengths), kind="stable")  # longest first: less padding, OOM shows early
        logits = np.empty((stop - start, len(classes)), dtype=np.float32)
        pooled = {tensor_name(entry["name"]): np.empty((stop - start, width), dtype=np.float32) for entry in entries}
        for begin in range(0, len(order), batch_size):
            rows = order[begin:begin + batch_size]
            batch = tokenizer([shard_texts[i] for i in rows], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            with torch.inference_mode(), precision_ctx:
                if entries:
                    output = model(**batch, output_hidden_states=True)
                    _check_hidden_states(output, layers, width, name)
                    for key, value in pooled_features(output.hidden_states, batch["attention_mask"], entries).items():
                        pooled[key][rows] = value
                else:
                    output = model(**batch)
                scores = output.logits.float()
            if temperature is not None:
                scores = scores / temperature  # post-hoc temperature, applied once here and recorded
            logits[rows] = scores.cpu().numpy()
            advance(len(rows))
        return {**(topk_outputs(logits, topk) if topk else {"logits": logits}), **pooled}

    return run_shards(writer, compute, overwrite=overwrite, progress=progress, desc=f"teacher {Path(str(name)).name}")


def check_features(model, features, dtype: str = "fp16") -> list[dict] | None:
    """The manifest entries ``features`` resolve to for ``model`` (a loaded model, or a path / Hub id of which
    only the config is read), raising on a bad name or a layer outside 0..num_hidden_layers.

    None when the config cannot be read (loading the model then says why); [] for no features.
    """
    wanted = parse_feature_specs(features)
    if not wanted:
        return []
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoConfig

        name = str(model)
        try:
            config = AutoConfig.from_pretrained(name)
        except (OSError, ValueError):
            return None
    else:
        config = model.config
        name = getattr(config, "name_or_path", "") or type(model).__name__
    layers, width = model_layers(config, name)
    return resolve_features(wanted, num_hidden_layers=layers, width=width, dtype=dtype, teacher=name)


def _check_hidden_states(output, layers: int, width: int, name: str) -> None:
    """The model must return num_hidden_layers + 1 hidden states of the config's width, or names mean nothing."""
    states = getattr(output, "hidden_states", None)
    if states is None or len(states) != layers + 1 or states[0].shape[-1] != width:
        found = "none" if states is None else f"{len(states)} of width {states[0].shape[-1]}"
        raise InputError(f"--features: teacher {name!r} returned {found} hidden states, but its config implies "
                         f"{layers + 1} (num_hidden_layers {layers} + the embedding output) of width {width}")
