"""Named teacher feature tensors, stored in the cache's shards beside the logits.

A feature is one float vector per row, named by what computed it. The only kind so far:

    pooled.L   mean over the row's non-padding tokens (attention mask) of ``hidden_states[L]``,
               from a forward pass with ``output_hidden_states=True``; Hugging Face's layer
               numbering: 0 = the embedding output, ``num_hidden_layers`` = the last layer.
               ``pooled.last`` is accepted when asking and is written as the number.

The manifest lists each stored feature as ``{name, layer, pooling, width, dtype}``; a shard holds it
as the tensor ``feature.NAME`` [rows, width]. Parsing here is pure Python (the CLI imports it to
build its parser); torch is imported only by :func:`pooled_features`.
"""

from __future__ import annotations

import re

from distillab.errors import InputError

TENSOR_PREFIX = "feature."  # a feature's tensor name in a shard: feature.pooled.12
POOLING = "mean"
ENTRY_KEYS = ("name", "layer", "pooling", "width", "dtype")
_SPEC = re.compile(r"pooled\.(\d+|last)")
_NAME = re.compile(r"pooled\.(0|[1-9]\d*)")


def tensor_name(feature: str) -> str:
    return TENSOR_PREFIX + feature


def parse_feature_specs(features) -> list[str]:
    """``"pooled.6,pooled.last"`` or a list of such names → the names, syntax checked (layers not yet known).

    ``None`` or an empty value means no features.
    """
    if features is None:
        return []
    items = [features] if isinstance(features, str) else list(features)
    names = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    for name in names:
        if not _SPEC.fullmatch(name):
            raise InputError(f"--features {name!r}: a feature is pooled.LAYER (LAYER a hidden-state index such as "
                             "0 for the embedding output, or 'last'), e.g. --features pooled.6,pooled.last")
    return names


def resolve_features(features, *, num_hidden_layers: int, width: int, dtype: str, teacher: str) -> list[dict]:
    """Manifest entries for the requested features: ``last`` resolved, each layer in range, sorted by layer.

    Sorting makes ``pooled.12,pooled.6`` and ``pooled.6,pooled.12`` the same cache.
    """
    entries: dict[int, dict] = {}
    for spec in parse_feature_specs(features):
        token = spec.split(".", 1)[1]
        layer = num_hidden_layers if token == "last" else int(token)
        if not 0 <= layer <= num_hidden_layers:
            raise InputError(f"--features {spec}: layer {layer} is outside the valid range 0..{num_hidden_layers} "
                             f"for teacher {teacher!r} (0 = embedding output, {num_hidden_layers} = last layer)")
        if layer in entries:
            raise InputError(f"--features: layer {layer} is asked for twice ({entries[layer]['asked']} and {spec})")
        entries[layer] = {"asked": spec, "name": f"pooled.{layer}", "layer": layer, "pooling": POOLING,
                          "width": int(width), "dtype": dtype}
    return [{key: entries[layer][key] for key in ENTRY_KEYS} for layer in sorted(entries)]


def entry_problem(entry, dtypes) -> str | None:
    """What is wrong with one manifest feature entry (None when it is well formed)."""
    if not isinstance(entry, dict) or sorted(entry) != sorted(ENTRY_KEYS):
        return f"must have exactly the keys {', '.join(ENTRY_KEYS)}"
    name, layer, width = entry["name"], entry["layer"], entry["width"]
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        return f"name must be pooled.LAYER, got {name!r}"
    if not (type(layer) is int and name == f"pooled.{layer}"):
        return f"layer must be the integer in its name {name!r}, got {layer!r}"
    if entry["pooling"] != POOLING:
        return f"pooling must be {POOLING!r}, got {entry['pooling']!r}"
    if not (type(width) is int and width >= 1):
        return f"width must be a positive integer, got {width!r}"
    if entry["dtype"] not in dtypes:
        return f"dtype must be one of {', '.join(dtypes)}, got {entry['dtype']!r}"
    return None


def model_layers(config, teacher: str) -> tuple[int, int]:
    """(num_hidden_layers, hidden_size) of a transformers config, or an error saying features need them."""
    layers, width = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    if not (isinstance(layers, int) and isinstance(width, int)):
        raise InputError(f"--features: teacher {teacher!r} ({type(config).__name__}) does not state num_hidden_layers "
                         "and hidden_size in its config, so its hidden states cannot be named")
    return layers, width


def pooled_features(hidden_states, attention_mask, entries: list[dict]) -> dict:
    """Tensor name → float32 numpy [batch, width]: each entry's layer averaged over the unmasked tokens.

    Computed in float32 whatever the forward pass ran in; padded positions are excluded by
    selection, not by multiplying (a padded position's NaN cannot leak in).
    """
    import torch

    mask = attention_mask.bool().unsqueeze(-1)
    count = mask.sum(dim=1).clamp_min(1).to(torch.float32)
    out = {}
    for entry in entries:
        hidden = hidden_states[entry["layer"]].float()
        total = torch.where(mask, hidden, torch.zeros((), dtype=torch.float32, device=hidden.device)).sum(dim=1)
        out[tensor_name(entry["name"])] = (total / count).cpu().numpy()
    return out
