"""The teacher cache: a directory of safetensors shards plus ``manifest.json``, written once, read many times.

Layout (DESIGN.md "Teacher cache")::

    DIR/manifest.json              format, kind, dtype, classes, fingerprint, one sha256 per shard
    DIR/shard-00000.safetensors    rows [0, shard_rows), then [shard_rows, 2*shard_rows), ...

Every shard holds ``labels`` int32 [r] and ``text_sha256_8`` uint8 [r, 8] (so a reader can name the
row whose label or text changed), the row ids in its safetensors metadata, and the teacher's output:
dense ``logits`` [r, K] (fp16/bf16/fp32), or top-k ``topk_ids`` int32 / ``topk_logprobs`` [r(, T), k]
with ``tail_logmass`` and ``tail_kl`` float32 [r(, T)], or sampled ``sample_ids`` / ``sample_counts``
int32 / ``sample_logprobs`` [r(, T), k] (k = min(draws, width) slots: the distinct ids drawn, how often,
their log-probabilities; see :mod:`distillab.losses.sampled`) with the same two tail statistics
(per-token caches add ``input_ids`` and ``num_tokens``). A cache captured with features adds one ``feature.NAME`` [r, width] per feature the
manifest's ``features`` lists (see :mod:`distillab.teacher.features`); a cache without them has no
``features`` key at all, so its manifest is byte-identical to one written before features existed.

Why it is built this way:

- Shard boundaries are fixed by the plan (row positions only), so any process can write any shard,
  a resumed run computes exactly the missing ones, and the bytes never depend on who wrote them.
- A shard appears only by atomic rename; ``in-progress.json`` (the manifest's head) pins the plan
  while shards accumulate, and is replaced by ``manifest.json`` at the end. Nothing in either file
  depends on time or machine, so a killed-and-resumed run ends byte-identical to an uninterrupted one.
- The reader memory-maps shard payloads straight from the file (safetensors is a JSON header plus
  raw little-endian arrays), so random access by row id is cheap. Opening re-hashes every shard
  (milliseconds for the builtin cache) and validates the manifest and each header field by field:
  a cache is data from anywhere, so nothing in it may read outside its folder or serve wrong rows.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from distillab.errors import FingerprintMismatch, InputError
from distillab.io import Predictions, atomic_path, check_output_dir, read_json, sha256_file, write_json_atomic
from distillab.safetensors_header import read_header
from distillab.teacher import DEFAULT_SHARD_ROWS  # re-exported: runners import it from here
from distillab.teacher.features import entry_problem, tensor_name
from distillab.teacher.fingerprint import diff, sha256_lines, short_repr, text_digests

FORMAT = "distillab.teacher_cache"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "in-progress.json"
DTYPES = ("fp16", "bf16", "fp32")
KINDS = ("dense", "topk", "sampled")
QUANTILES = (0.5, 0.9, 0.99)  # of the per-token statistics recorded in the manifest's ``truncation``
FP16_MAX = 65504.0

_ST_DTYPES = {  # safetensors dtype → numpy dtype used to map it (bf16 is mapped as raw uint16)
    "F16": np.float16,
    "BF16": np.uint16,
    "F32": np.float32,
    "F64": np.float64,
    "I32": np.int32,
    "I64": np.int64,
    "U8": np.uint8,
}
_NP_TO_ST = {np.dtype(v): k for k, v in _ST_DTYPES.items() if k != "BF16"}
_CACHE_DTYPES = {"fp16": "F16", "bf16": "BF16", "fp32": "F32"}  # manifest dtype → safetensors dtype
MAX_MANIFEST_BYTES = 256 << 20  # ~1.5 million shard entries; anything bigger is not a manifest


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def _is_cache_file(name: str) -> bool:
    """Files this module writes (including temp files a SIGKILL may strand); nothing else is touched."""
    if name in (MANIFEST, PROGRESS) or (name.startswith("shard-") and name.endswith(".safetensors")):
        return True
    return name.startswith((".shard-", f".{MANIFEST}.", f".{PROGRESS}.")) and ".tmp" in name


# --------------------------------------------------------------------------- writer


@contextlib.contextmanager
def removed_on_failure(out: str | os.PathLike) -> Iterator[None]:
    """On any failure, remove the cache files this block added to ``out`` (and ``out`` if it made it).

    For writers whose work is cheap to redo (``cache import``): a failed import must not leave an
    ``in-progress.json`` or some shards behind for a later run to trip over.
    """
    out = Path(out)
    existed = out.exists()
    before = set(os.listdir(out)) if out.is_dir() else set()
    try:
        yield
    except BaseException:
        if out.is_dir():
            for name in set(os.listdir(out)) - before:
                if _is_cache_file(name):
                    (out / name).unlink(missing_ok=True)
            if not existed and not os.listdir(out):
                out.rmdir()
        raise



class CacheWriter:
    """Writes one cache in fixed shards; safe to construct again over a partial directory to resume.

    The caller computes each pending shard's arrays and hands them to :meth:`write_shard`; with
    several processes, each handles the shards ``pending_shards(rank, world)`` gives it and only
    the main process calls :meth:`prepare` (before) and :meth:`finalize` (after all ranks finish).
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        ids: np.ndarray,
        labels: np.ndarray,
        texts: list[str],
        classes: list[str],
        fingerprint: dict,
        kind: str = "dense",
        width: int,
        dtype: str = "fp16",
        k: int | None = None,
        tokens: int | None = None,
        temperature: float | None = None,
        shard_rows: int = DEFAULT_SHARD_ROWS,
        features: list[dict] | None = None,
        teacher_layers: int | None = None,
        sampled: dict | None = None,
    ) -> None:
        """``features``: manifest entries ``{name, layer, pooling, width, dtype}`` (see ``features.py``);
        each shard then also takes ``feature.NAME`` [rows, width] in :meth:`write_shard`. With features,
        ``teacher_layers`` is the teacher's ``num_hidden_layers`` (so readers can resolve ``pooled.last``
        and map layers). ``sampled``: ``{draws, seed}`` of a sampled cache (its ``k`` = min(draws, width))."""
        if kind not in KINDS:
            raise InputError(f"cache kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if dtype not in DTYPES:
            raise InputError(f"cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if kind == "topk" and (k is None or not 1 <= k <= width):
            raise InputError(f"top-k cache needs 1 <= k <= {width} (the teacher's output width), got k={k}")
        if kind == "sampled":
            problem = _sampled_problem(sampled, k, width)
            if problem:
                raise InputError(f"sampled cache: {problem}")
        elif sampled is not None:
            raise InputError(f"sampled= is only for a sampled cache, not a {kind} cache")
        if shard_rows < 1:
            raise InputError(f"shard_rows must be >= 1, got {shard_rows}")
        if temperature is not None and not (temperature > 0 and math.isfinite(temperature)):
            raise InputError(f"temperature must be a positive number, got {temperature}")
        self.out = Path(out)
        self.ids = _check_ids(np.asarray(ids))
        self.labels = np.asarray(labels, dtype=np.int32)
        self.text_hash = text_digests(texts)
        if not (self.labels.shape == (len(self.ids),) == (self.text_hash.shape[0],)):
            raise InputError(f"ids ({len(self.ids)}), labels ({self.labels.shape[0]}) and texts ({len(texts)}) "
                             "differ in length")
        self.kind, self.dtype, self.k, self.tokens, self.width = kind, dtype, k, tokens, int(width)
        self.shard_rows = int(shard_rows)
        self.features = [dict(entry) for entry in features or []]
        for index, entry in enumerate(self.features):
            problem = entry_problem(entry, DTYPES)
            if problem:
                raise InputError(f"features[{index}]: {problem}")
        if len({entry["name"] for entry in self.features}) != len(self.features):
            raise InputError(f"features name one feature twice: {[entry['name'] for entry in self.features]}")
        if self.features and not (_is_int(teacher_layers)
                                  and teacher_layers >= max(entry["layer"] for entry in self.features)):
            raise InputError(f"features need teacher_layers (the teacher's num_hidden_layers, >= every feature's "
                             f"layer), got {teacher_layers!r}")
        self.head = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "rows": int(len(self.ids)),
            "classes": list(classes),
            "num_classes": len(classes),
            "width": self.width,
            "dtype": dtype,
            "k": k,
            "tokens": tokens,
            "temperature": None if temperature is None else float(temperature),
            "shard_rows": self.shard_rows,
            "num_shards": self.num_shards,
            "fingerprint": fingerprint,
        }
        if kind == "sampled":  # absent from other kinds: their manifests stay byte-identical
            self.head["sampled"] = {"draws": int(sampled["draws"]), "seed": int(sampled["seed"])}
        if self.features:  # absent, not empty, without features: old manifests stay byte-identical
            self.head["teacher_layers"] = int(teacher_layers)
            self.head["features"] = self.features

    @property
    def num_shards(self) -> int:
        return max(1, math.ceil(len(self.ids) / self.shard_rows))

    def shard_range(self, index: int) -> tuple[int, int]:
        start = index * self.shard_rows
        return start, min(start + self.shard_rows, len(self.ids))

    @property
    def complete(self) -> bool:
        return (self.out / MANIFEST).exists()

    def prepare(self, overwrite: bool = False) -> None:
        """Claim ``out`` for this plan (main process only): fresh, resumed, or already complete.

        Raises :class:`FingerprintMismatch` when ``out`` holds a cache or partial cache of a
        different plan, listing what differs, unless ``overwrite``.
        """
        check_output_dir(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for name in os.listdir(self.out):
                if _is_cache_file(name):
                    (self.out / name).unlink()
        for name in os.listdir(self.out):  # temp files stranded by a killed run
            if name.startswith(".") and _is_cache_file(name):
                (self.out / name).unlink()
        for existing in (MANIFEST, PROGRESS):
            path = self.out / existing
            if path.exists():
                found = read_json(path)
                found_head = {key: found.get(key) for key in self.head}
                problems = diff(found_head, self.head)
                if problems:
                    raise FingerprintMismatch(
                        f"{self.out} already holds a {'complete' if existing == MANIFEST else 'partial'} cache "
                        f"made differently ({'; '.join(problems[:5])}); use another --out or --overwrite"
                    )
                if existing == MANIFEST:  # complete; a PROGRESS left too means a kill between the two writes
                    (self.out / PROGRESS).unlink(missing_ok=True)
                return
        others = [name for name in os.listdir(self.out) if not _is_cache_file(name)]
        stray = [name for name in os.listdir(self.out) if name.startswith("shard-")]
        if stray:
            raise InputError(f"{self.out} holds shards ({stray[0]}, ...) but no manifest or {PROGRESS}; use --overwrite")
        if others:
            raise InputError(f"{self.out} is not empty ({others[0]}, ...); give an empty or new directory for the cache")
        write_json_atomic(self.out / PROGRESS, self.head)

    def pending_shards(self, rank: int = 0, world: int = 1) -> list[int]:
        """Shards not yet on disk that this rank should compute (round-robin over ranks)."""
        if self.complete:
            return []
        return [i for i in range(rank, self.num_shards, world) if not (self.out / shard_name(i)).exists()]

    def write_shard(self, index: int, arrays: dict[str, np.ndarray]) -> Path:
        """Validate and store one shard's teacher outputs (float32 in; cast to the cache dtype here)."""
        import torch

        start, stop = self.shard_range(index)
        rows = stop - start
        expected = self._expected_shapes(rows)
        if set(arrays) != set(expected):
            raise InputError(f"shard {index}: expected arrays {sorted(expected)}, got {sorted(arrays)}")
        tensors = {}
        for name, shape in expected.items():
            value = np.asarray(arrays[name])
            if value.shape != shape:
                raise InputError(f"shard {index}: array {name!r} has shape {value.shape}, expected {shape}")
            tensors[name] = self._cast(name, value, index, start)
        if self.kind == "sampled":
            self._check_draws(index, start, arrays)
        tensors["labels"] = torch.from_numpy(self.labels[start:stop])
        tensors["text_sha256_8"] = torch.from_numpy(self.text_hash[start:stop])
        path = self.out / shard_name(index)
        _save_safetensors(path, tensors, {"ids": json.dumps(self.ids[start:stop].tolist())})
        return path

    def _check_draws(self, index: int, start: int, arrays: dict[str, np.ndarray]) -> None:
        """Every real position holds exactly ``draws`` draws of ids in range, and padding none."""
        counts = np.asarray(arrays["sample_counts"])
        ids = np.asarray(arrays["sample_ids"])
        draws = self.head["sampled"]["draws"]
        total = counts.sum(-1)  # [r(, T)]
        real = np.ones(total.shape, dtype=bool)
        if self.tokens is not None:
            real = np.arange(self.tokens)[None, :] < np.asarray(arrays["num_tokens"])[:, None]

        def refuse(mask, what):
            where = np.argwhere(mask)[0]
            row = str(self.ids[start + int(where[0])])
            position = f" position {int(where[1])}" if len(where) > 1 else ""
            raise InputError(f"sampled cache row {row!r}{position} (shard {index}) {what}")

        if (counts < 0).any():
            refuse((counts < 0).any(-1), "has a negative draw count")
        if ((ids < 0) | (ids >= self.width)).any():
            refuse(((ids < 0) | (ids >= self.width)).any(-1), f"has a sampled id outside [0, {self.width})")
        if (real & (total == 0)).any():
            refuse(real & (total == 0), f"has zero draws (expected {draws}); the sampled loss would have no "
                                        "target there")
        if (real & (total != draws)).any():
            refuse(real & (total != draws), f"has {int(total[real & (total != draws)][0])} draws, expected {draws}")
        if (~real & (total != 0)).any():
            refuse(~real & (total != 0), "is padding (beyond num_tokens) but holds draws")

    def _expected_shapes(self, rows: int) -> dict[str, tuple]:
        return {name: shape for name, (shape, _) in
                teacher_arrays(self.kind, rows, self.width, self.k, self.tokens, self.dtype, self.features).items()}

    def _cast(self, name: str, value: np.ndarray, index: int, start: int):
        import torch

        dtype = self.dtype
        feature = next((entry for entry in self.features if tensor_name(entry["name"]) == name), None)
        if feature is not None:
            dtype = feature["dtype"]

        if name in ("topk_ids", "input_ids", "num_tokens", "sample_ids", "sample_counts"):
            return torch.from_numpy(np.ascontiguousarray(value, dtype=np.int32))
        value = np.ascontiguousarray(value, dtype=np.float32)
        # -inf tail log-mass is legitimate (k covers the whole vocabulary); anything else must be finite.
        bad = np.isnan(value) | (np.isposinf(value) if name == "tail_logmass" else ~np.isfinite(value))
        if bad.any():
            row = start + int(np.argwhere(bad)[0][0])
            raise InputError(
                f"teacher produced NaN or inf in {name!r} for row {str(self.ids[row])!r} (shard {index}); "
                "check the model and its inputs (under GPU autocast, half-precision overflow inside the model "
                "is a common cause)"
            )
        if name in ("logits", "topk_logprobs", "sample_logprobs") or feature is not None:
            if dtype == "fp16" and np.abs(value).max(initial=0.0) > FP16_MAX:
                row = start + int(np.argwhere(np.abs(value) > FP16_MAX)[0][0])
                raise InputError(
                    f"teacher {name} reach {np.abs(value).max():.4g} at row {str(self.ids[row])!r}, beyond fp16's "
                    f"range ({FP16_MAX:g}); use --dtype bf16 or fp32"
                )
            if dtype == "bf16":  # numpy has no bf16; torch rounds to nearest even
                return torch.from_numpy(value).to(torch.bfloat16)
            return torch.from_numpy(value.astype(np.float16) if dtype == "fp16" else value)
        return torch.from_numpy(value)

    def finalize(self) -> dict:
        """Check every shard is present and belongs to this plan, checksum them, write the manifest."""
        if self.complete:
            return read_json(self.out / MANIFEST)
        shards = []
        for index in range(self.num_shards):
            path = self.out / shard_name(index)
            if not path.exists():
                raise InputError(f"{path}: shard missing; re-run the same command to compute it")
            start, stop = self.shard_range(index)
            meta, _ = read_safetensors(path)
            if json.loads(meta.get("ids", "[]")) != self.ids[start:stop].tolist():
                raise FingerprintMismatch(f"{path}: holds different rows than the plan expects; use --overwrite")
            shards.append({"file": path.name, "first_row": start, "rows": stop - start,
                           "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        manifest = dict(self.head)
        manifest["shards"] = shards
        if self.kind in ("topk", "sampled"):
            manifest["truncation"] = truncation_stats([read_safetensors(self.out / s["file"])[1] for s in shards])
        write_json_atomic(self.out / MANIFEST, manifest)
        (self.out / PROGRESS).unlink(missing_ok=True)
        return manifest


def teacher_arrays(kind: str, rows: int, width: int, k: int | None, tokens: int | None,
                   dtype: str, features: list[dict] = ()) -> dict[str, tuple[tuple, str]]:
    """Name → (shape, safetensors dtype) of the teacher arrays a shard of ``rows`` rows holds."""
    lead = (rows,) if tokens is None else (rows, tokens)
    stored = _CACHE_DTYPES[dtype]
    extra = {tensor_name(f["name"]): ((rows, f["width"]), _CACHE_DTYPES[f["dtype"]]) for f in features}
    if kind == "dense":
        return {"logits": ((rows, width), stored), **extra}
    if kind == "sampled":
        arrays = {"sample_ids": ((*lead, k), "I32"), "sample_counts": ((*lead, k), "I32"),
                  "sample_logprobs": ((*lead, k), stored)}
    else:
        arrays = {"topk_ids": ((*lead, k), "I32"), "topk_logprobs": ((*lead, k), stored)}
    arrays.update(tail_logmass=(lead, "F32"), tail_kl=(lead, "F32"))
    if tokens is not None:
        arrays.update(input_ids=(lead, "I32"), num_tokens=((rows,), "I32"))
    return {**arrays, **extra}


def _sampled_problem(sampled, k, width) -> str | None:
    """What is wrong with a sampled cache's ``{draws, seed}`` and its slot count ``k``, or None."""
    if not (isinstance(sampled, dict) and set(sampled) == {"draws", "seed"}):
        return f"needs sampled={{'draws': S, 'seed': SEED}}, got {short_repr(sampled)}"
    draws, seed = sampled["draws"], sampled["seed"]
    if not (_is_int(draws) and draws >= 1):
        return f"draws must be a positive integer, got {short_repr(draws)}"
    if not (_is_int(seed) and seed >= 0):
        return f"seed must be a non-negative integer, got {short_repr(seed)}"
    if k != min(draws, width):
        return f"k (slots per position) must be min(draws, width) = {min(draws, width)}, got {short_repr(k)}"
    return None


def _check_ids(ids: np.ndarray) -> np.ndarray:
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise InputError(f"row ids must be a 1-D numpy str array, got dtype {ids.dtype} shape {ids.shape}")
    unique, counts = np.unique(ids, return_counts=True)
    if unique.size != ids.size:
        raise InputError(f"duplicate row id {str(unique[counts > 1][0])!r}; row ids must be unique")
    if any("\n" in i for i in ids.tolist()):
        raise InputError("row ids must not contain newlines")
    return ids


def _save_safetensors(path: Path, tensors: dict, metadata: dict[str, str]) -> None:
    from safetensors.torch import save

    payload = save(tensors, metadata=metadata)  # one metadata key: header bytes stay deterministic
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{round(100 * q)}": float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES))}


def truncation_stats(shards: list[dict[str, np.ndarray]]) -> dict:
    """Probability mass and KL lost to keeping only some ids per position, over rows (or real tokens).

    Kept ids are the top k (top-k caches) or the distinct ids drawn (sampled caches).
    ``mass_lost`` = teacher mass outside the kept ids; ``kl_renormalized`` = KL(q‖p) with q the kept
    ids renormalised, which is −log(kept mass) (the bias a renormalised top-k target trains towards;
    a sampled target is unbiased and does not renormalise); ``kl_uniform_tail`` = KL(p‖p̂) with p̂ the
    kept ids plus the rest of the mass spread evenly over the other ids (computed at capture, where
    the full distribution was at hand). Each has a mean (``*_mean``, plus ``mass_lost_max``) and
    ``quantiles`` p50/p90/p99. Sampled caches add ``distinct_ids_mean`` (ids per position) and
    ``kl_sample_mean`` = mean KL(w‖p) of the draw frequencies w = counts/draws from the teacher: the
    noise of one position's target, which averages out over positions and steps (its bias is 0).
    """
    logmass, tail_kl, distinct, kl_sample = [], [], [], []
    for arrays in shards:
        lm = np.asarray(arrays["tail_logmass"], dtype=np.float64)
        kl = np.asarray(arrays["tail_kl"], dtype=np.float64)
        valid = np.ones(lm.shape, dtype=bool)
        if "num_tokens" in arrays:  # only real token positions count
            valid = np.arange(lm.shape[1])[None, :] < np.asarray(arrays["num_tokens"])[:, None]
        logmass.append(lm[valid].ravel())
        tail_kl.append(kl[valid].ravel())
        if "sample_counts" in arrays:
            counts = np.asarray(arrays["sample_counts"], dtype=np.float64)[valid]  # [positions, slots]
            logprobs = np.asarray(arrays["sample_logprobs"][...], dtype=np.float64)[valid]
            weights = counts / np.maximum(counts.sum(-1, keepdims=True), 1)
            safe = np.where(weights > 0, weights, 1.0)
            distinct.append((counts > 0).sum(-1))
            kl_sample.append(np.where(weights > 0, weights * (np.log(safe) - logprobs), 0.0).sum(-1))
    lm = np.concatenate(logmass)
    kl = np.concatenate(tail_kl)
    sampled = bool(distinct)
    if lm.size == 0:
        out = {"positions": 0, "mass_lost_mean": None, "mass_lost_max": None,
               "kl_renormalized_mean": None, "kl_uniform_tail_mean": None, "quantiles": None}
        return {**out, "distinct_ids_mean": None, "kl_sample_mean": None} if sampled else out
    mass = np.exp(lm)
    renormalized = -np.log1p(-np.minimum(mass, 1 - 1e-12))
    out = {
        "positions": int(lm.size),
        "mass_lost_mean": float(mass.mean()),
        "mass_lost_max": float(mass.max()),
        "kl_renormalized_mean": float(renormalized.mean()),
        "kl_uniform_tail_mean": float(kl.mean()),
        "quantiles": {"mass_lost": _quantiles(mass), "kl_renormalized": _quantiles(renormalized),
                      "kl_uniform_tail": _quantiles(kl)},
    }
    if sampled:
        distinct, kl_sample = np.concatenate(distinct), np.concatenate(kl_sample)
        out.update(distinct_ids_mean=float(distinct.mean()), kl_sample_mean=float(kl_sample.mean()))
        out["quantiles"].update(distinct_ids=_quantiles(distinct), kl_sample=_quantiles(kl_sample))
    return out


# --------------------------------------------------------------------------- reader


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Parse a safetensors header and memory-map every tensor (bf16 comes back as raw uint16).

    Everything in the file is untrusted: the header length is bounded before anything is read,
    and every tensor's dtype, shape and byte range must be consistent and lie inside the file.
    """
    header, header_len = read_header(path)
    size = os.path.getsize(path)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InputError(f"{path}: safetensors key '__metadata__' must map names to strings")
    base = 8 + header_len
    arrays: dict[str, np.ndarray] = {}
    for name, info in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict) or info.get("dtype") not in _ST_DTYPES:
            raise InputError(f"{where} has no supported dtype ({short_repr(info)})")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
            raise InputError(f"{where}: 'shape' must be a list of non-negative integers, got {short_repr(shape)}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise InputError(f"{where}: 'data_offsets' must be two integers 0 <= begin <= end, got {short_repr(offsets)}")
        dtype = np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<")
        begin, end = offsets
        if end - begin != math.prod(shape) * dtype.itemsize:
            raise InputError(f"{where}: {end - begin} bytes do not match its shape {tuple(shape)}")
        if base + end > size:
            raise InputError(f"{where}: data ends at byte {base + end}, past the end of the file ({size} bytes)")
        if end == begin:
            array = np.zeros(shape, dtype=dtype)
        else:
            array = np.memmap(path, dtype=dtype, mode="r", offset=base + begin, shape=tuple(shape))
        arrays[name] = _BF16View(array) if info["dtype"] == "BF16" else array
    return metadata, arrays


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_manifest(path: Path) -> dict:
    """``path/manifest.json``, refused unless every field a reader relies on is present and consistent.

    The manifest decides which files are opened and how rows map to shards, so a lying field would
    serve wrong rows or read outside the cache; each check names the key that is wrong.
    """
    file = path / MANIFEST
    if not file.is_file():
        raise InputError(f"{file}: not a regular file")
    if file.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(f"{file}: {file.stat().st_size:,} bytes is too large for a cache manifest")
    try:
        manifest = read_json(file)
    except UnicodeDecodeError as exc:
        raise InputError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise InputError(f"{file}: JSON nested too deeply") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{file}: a cache manifest must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{file}: format {short_repr(manifest.get('format'))} v{short_repr(manifest.get('format_version'))} "
                         f"is not {FORMAT} v{FORMAT_VERSION}")

    def need(key: str, ok: bool, want: str, *, show: bool = True) -> None:
        if not ok:
            got = "" if not show else f", got {short_repr(manifest[key])}" if key in manifest else " (missing)"
            raise InputError(f"{file}: key {key!r} must be {want}{got}")

    get = manifest.get
    need("kind", get("kind") in KINDS, f"one of {', '.join(KINDS)}")
    need("dtype", get("dtype") in DTYPES, f"one of {', '.join(DTYPES)}")
    classes = get("classes")
    need("classes", isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes),
         "a non-empty list of class names")
    need("num_classes", _is_int(get("num_classes")) and get("num_classes") == len(classes),
         f"an integer equal to the number of classes ({len(classes)})")
    need("width", _is_int(get("width")) and get("width") >= 1, "a positive integer")
    if get("kind") == "dense":
        need("width", get("width") == len(classes), f"the number of classes ({len(classes)}) in a dense cache")
        need("k", get("k") is None, "null in a dense cache")
    else:
        need("k", _is_int(get("k")) and 1 <= get("k") <= get("width"), f"an integer in [1, width={get('width')}]")
    if get("kind") == "sampled":
        problem = _sampled_problem(get("sampled"), get("k"), get("width"))
        if problem:
            raise InputError(f"{file}: key 'sampled' (with 'k'): {problem}")
    else:
        need("sampled", "sampled" not in manifest, f"absent in a {get('kind')} cache")
    need("tokens", get("tokens") is None or (_is_int(get("tokens")) and get("tokens") >= 1),
         "null or a positive integer")
    temperature = get("temperature")
    need("temperature", temperature is None or (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                                                and math.isfinite(temperature) and temperature > 0),
         "null or a positive finite number")
    need("rows", _is_int(get("rows")) and get("rows") >= 1, "a positive integer")
    need("shard_rows", _is_int(get("shard_rows")) and get("shard_rows") >= 1, "a positive integer")
    rows, shard_rows = get("rows"), get("shard_rows")
    shards = get("shards")
    need("shards", isinstance(shards, list) and len(shards) == math.ceil(rows / shard_rows),
         f"a list of {math.ceil(rows / shard_rows)} shard entries (rows {rows} / shard_rows {shard_rows})")
    need("num_shards", get("num_shards") == len(shards), f"the number of shard entries ({len(shards)})")
    for index, entry in enumerate(shards):
        first, count = index * shard_rows, min(shard_rows, rows - index * shard_rows)
        key = f"shards[{index}]"
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and entry.get("first_row") == first
                and entry.get("rows") == count and _is_int(entry.get("bytes")) and entry["bytes"] >= 0
                and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64):
            raise InputError(f"{file}: key {key!r} must be {{file, first_row: {first}, rows: {count}, bytes, sha256}}"
                             f", got {short_repr(entry)}")
    fingerprint = get("fingerprint")
    dataset = fingerprint.get("dataset") if isinstance(fingerprint, dict) else None
    splits = dataset.get("splits") if isinstance(dataset, dict) else None
    need("fingerprint.dataset.splits", isinstance(splits, dict) and all(_is_int(n) and n >= 0 for n in splits.values())
         and sum(splits.values()) == rows, f"split sizes adding up to rows ({rows})", show=False)
    need("fingerprint.teacher", isinstance(fingerprint.get("teacher"), dict), "an object", show=False)
    _check_features(file, manifest)
    return manifest


def _check_features(file: Path, manifest: dict) -> None:
    """``features`` (optional) must be well-formed entries, and exactly the names the fingerprint records."""
    capture = manifest["fingerprint"].get("capture")
    recorded = capture.get("features") if isinstance(capture, dict) else None
    if "features" not in manifest:
        if recorded is not None:
            raise InputError(f"{file}: key 'fingerprint.capture.features' lists {short_repr(recorded)} but the "
                             "manifest has no 'features' key")
        if "teacher_layers" in manifest:
            raise InputError(f"{file}: key 'teacher_layers' is only written with 'features', which is missing")
        return
    features = manifest["features"]
    if not (isinstance(features, list) and features):
        raise InputError(f"{file}: key 'features' must be a non-empty list of feature entries, "
                         f"got {short_repr(features)}")
    for index, entry in enumerate(features):
        problem = entry_problem(entry, DTYPES)
        if problem:
            raise InputError(f"{file}: key 'features[{index}]' {problem}")
    names = [entry["name"] for entry in features]
    if len(set(names)) != len(names):
        raise InputError(f"{file}: key 'features' lists a name twice ({', '.join(names)})")
    if recorded != names:
        raise InputError(f"{file}: key 'features' ({', '.join(names)}) differs from 'fingerprint.capture.features' "
                         f"({short_repr(recorded)})")
    layers = manifest.get("teacher_layers")
    deepest = max(entry["layer"] for entry in features)
    if not (_is_int(layers) and layers >= deepest):
        raise InputError(f"{file}: key 'teacher_layers' must be the teacher's num_hidden_layers, an integer >= "
                         f"{deepest} (the deepest feature's layer), got {short_repr(layers)}")


def shard_path(path: Path, index: int, entry: dict) -> Path:
    """The shard file of manifest entry ``index``: a regular file inside the cache folder, or an error.

    A manifest is data, not a license to read anywhere: ``../x``, absolute paths, devices such as
    ``/dev/zero`` and symlinks leading out of the folder are refused.
    """
    name = entry["file"]
    where = f"{path / MANIFEST}: shards[{index}].file {name!r}"
    try:
        root, target = path.resolve(), (path / name).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise InputError(f"{where} cannot be resolved ({exc})") from None
    if target == root or not target.is_relative_to(root):
        raise InputError(f"{where} points outside the cache folder {path}")
    if not target.exists():
        raise InputError(f"{path / name}: shard listed in the manifest (shards[{index}]) is missing")
    if not target.is_file():
        raise InputError(f"{where} is not a regular file")
    return target


def _check_shard(file: Path, manifest: dict, rows: int, arrays: dict) -> None:
    """A shard must hold exactly the arrays, shapes and dtypes the manifest promises, and labels in range."""
    expected = teacher_arrays(manifest["kind"], rows, manifest["width"], manifest["k"], manifest["tokens"],
                              manifest["dtype"], manifest.get("features", ()))
    expected.update(labels=((rows,), "I32"), text_sha256_8=((rows, 8), "U8"))
    if set(arrays) != set(expected):
        raise InputError(f"{file}: holds tensors {sorted(arrays)}, expected {sorted(expected)} for a "
                         f"{manifest['kind']} cache")
    for name, (shape, dtype) in expected.items():
        found = getattr(arrays[name], "raw", arrays[name])  # bf16 views wrap a uint16 map
        stored = "BF16" if isinstance(arrays[name], _BF16View) else _NP_TO_ST[found.dtype]
        if tuple(found.shape) != shape or stored != dtype:
            raise InputError(f"{file}: tensor {name!r} is {stored} {tuple(found.shape)}, the manifest implies "
                             f"{dtype} {shape}")
    labels = np.asarray(arrays["labels"])
    outside = np.flatnonzero((labels < 0) | (labels >= manifest["num_classes"]))
    if outside.size:
        raise InputError(f"{file}: tensor 'labels' row {int(outside[0])} is {int(labels[outside[0]])}, outside "
                         f"[0, {manifest['num_classes']})")


class _BF16View:
    """A memory-mapped bf16 array (stored as raw uint16): indexing it gives float32 (bf16 is fp32's top half)."""

    def __init__(self, raw: np.ndarray) -> None:
        self.raw = raw
        self.shape = raw.shape

    def __getitem__(self, index) -> np.ndarray:
        return (np.asarray(self.raw[index]).astype(np.uint32) << 16).view(np.float32)


_READER = {"dense": "logits()", "topk": "topk()", "sampled": "sampled()"}  # how each kind is read
_KIND_NAME = {"dense": "dense", "topk": "top-k", "sampled": "sampled"}  # in messages


class TeacherCache:
    """Read-only view of a finished cache: memory-mapped shards, rows looked up by id."""

    def __init__(self, path: Path, manifest: dict, shards: list[dict[str, np.ndarray]], ids: np.ndarray,
                 verified: bool = False) -> None:
        self.path = path
        self.verified = verified  # shard checksums were checked when this view was opened
        self.manifest = manifest
        self._shards = shards
        self.ids = ids
        self._index = {row_id: row for row, row_id in enumerate(ids.tolist())}
        self.kind: str = manifest["kind"]
        self.classes: list[str] = list(manifest["classes"])
        self.num_classes: int = int(manifest["num_classes"])
        self.width: int = int(manifest["width"])
        self.temperature: float | None = manifest["temperature"]
        self.dtype: str = manifest["dtype"]
        self.k: int | None = manifest["k"]
        # sampled caches: draws per position and the seed they were drawn with (None otherwise)
        self.draws: int | None = manifest["sampled"]["draws"] if self.kind == "sampled" else None
        self.seed: int | None = manifest["sampled"]["seed"] if self.kind == "sampled" else None
        self.shard_rows: int = int(manifest["shard_rows"])
        self._features: dict[str, dict] = {entry["name"]: entry for entry in manifest.get("features", ())}
        self.feature_names: tuple[str, ...] = tuple(self._features)
        # the teacher's num_hidden_layers, recorded with features (None in a cache without them)
        self.teacher_layers: int | None = manifest.get("teacher_layers")

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = True) -> "TeacherCache":
        """Open a finished cache for use, refusing anything malformed with one line naming the file and key.

        ``verify`` re-hashes every shard against the manifest first (once per open; a few ms for the
        builtin cache), so a corrupt or tampered shard is never served. ``verify=False`` skips that and
        says so on stderr.
        """
        path = Path(path)
        if not (path / MANIFEST).exists():
            partial = (path / PROGRESS).exists()
            raise InputError(
                f"{path}: no {MANIFEST}; "
                + ("the cache is unfinished (re-run the same `distillab teacher` command to complete it)"
                   if partial else "not a teacher cache directory")
            )
        manifest = read_manifest(path)
        files = [shard_path(path, index, entry) for index, entry in enumerate(manifest["shards"])]
        for file, entry in zip(files, manifest["shards"]):
            if file.stat().st_size != entry["bytes"]:
                raise InputError(f"{file}: size {file.stat().st_size} != {entry['bytes']} in the manifest "
                                 "(truncated or replaced); re-create the cache")
        if verify:
            problems = verify_checksums(path, manifest)
            if problems:
                more = f" (and {len(problems) - 1} more shard(s))" if len(problems) > 1 else ""
                raise InputError(f"{path / problems[0]}{more}; re-create the cache")
        else:
            print(f"distillab: warning: shard checksums of teacher cache {path} NOT verified (verification turned "
                  "off); a corrupt or modified shard would go unnoticed", file=sys.stderr)
        shards, ids = [], []
        for file, entry in zip(files, manifest["shards"]):
            metadata, arrays = read_safetensors(file)
            _check_shard(file, manifest, entry["rows"], arrays)
            try:
                shard_ids = json.loads(metadata.get("ids", "null"))
            except (ValueError, RecursionError):
                raise InputError(f"{file}: metadata key 'ids' is not valid JSON") from None
            if not (isinstance(shard_ids, list) and len(shard_ids) == entry["rows"]
                    and all(isinstance(i, str) for i in shard_ids)):
                raise InputError(f"{file}: metadata key 'ids' must be a list of {entry['rows']} row id strings "
                                 "(the manifest's row count)")
            shards.append(arrays)
            ids.extend(shard_ids)
        ids = np.asarray(ids, dtype=str)
        unique, first = np.unique(ids, return_index=True)
        if unique.size != ids.size:
            duplicate = ids[np.setdiff1d(np.arange(ids.size), first)[0]]
            raise InputError(f"{path}: row id {str(duplicate)!r} is stored twice; re-create the cache")
        recorded = manifest["fingerprint"]["dataset"].get("ids_sha256")
        if recorded is not None and sha256_lines(ids.tolist()) != recorded:
            raise InputError(f"{path / MANIFEST}: the row ids stored in the shards do not hash to key "
                             "'fingerprint.dataset.ids_sha256' (a shard's 'ids' metadata was changed); re-create the cache")
        return cls(path, manifest, shards, ids, verified=verify)

    # ---- lookup

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def splits(self) -> dict[str, int]:
        return dict(self.manifest["fingerprint"]["dataset"]["splits"])

    def rows(self, ids) -> np.ndarray:
        """Cache row positions for ``ids`` (an unknown id is an error naming it)."""
        ids = np.atleast_1d(np.asarray(ids))
        try:
            return np.fromiter((self._index[i] for i in ids.tolist()), dtype=np.int64, count=ids.size)
        except KeyError as exc:
            raise InputError(
                f"row id {exc.args[0]!r} is not in the teacher cache {self.path} "
                f"(it covers {len(self)} rows of {self.manifest['fingerprint']['dataset']['name']!r}, "
                f"splits {', '.join(self.splits)})"
            ) from None

    def _gather(self, name: str, ids) -> np.ndarray:
        rows = self.rows(ids) if ids is not None else np.arange(len(self))
        if name not in self._shards[0]:
            raise InputError(f"{self.path}: a {self.kind} cache has no {name!r}; use {_READER[self.kind]}")
        first = self._shards[0][name]
        out = None
        shard_of, local = np.divmod(rows, self.shard_rows)
        for shard in np.unique(shard_of):
            mask = shard_of == shard
            block = np.asarray(self._shards[shard][name][local[mask]])
            if out is None:
                out = np.empty((rows.size, *block.shape[1:]), dtype=block.dtype)
            out[mask] = block
        if out is None:  # no rows requested
            out = np.empty((0, *first.shape[1:]), dtype=np.asarray(first[:0]).dtype)
        return out

    def logits(self, ids=None) -> np.ndarray:
        """Dense teacher logits (temperature already applied if one was recorded), float32 [len(ids), K]."""
        if self.kind != "dense":
            raise InputError(f"{self.path}: this is a {_KIND_NAME[self.kind]} cache; use {_READER[self.kind]} (dense "
                             "logits were not stored)")
        return self._gather("logits", ids).astype(np.float32)

    def topk(self, ids=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(topk_ids int32, topk_logprobs float32, tail_logmass float32), each [len(ids)(, T), ...]."""
        if self.kind != "topk":
            raise InputError(f"{self.path}: this is a {_KIND_NAME[self.kind]} cache; use {_READER[self.kind]}")
        return (self._gather("topk_ids", ids).astype(np.int32),
                self._gather("topk_logprobs", ids).astype(np.float32),
                self._gather("tail_logmass", ids).astype(np.float32))

    def sampled(self, ids=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sampled caches: (sample_ids int32, weights float32 = counts / draws, sample_logprobs float32),
        each [len(ids)(, T), k]: the arguments of :func:`distillab.losses.sampled.sampled_kd_loss`
        (``ids``, ``weights``, ``teacher_logprobs``). Empty slots and padding positions have weight 0."""
        if self.kind != "sampled":
            raise InputError(f"{self.path}: this is a {_KIND_NAME[self.kind]} cache; use {_READER[self.kind]}")
        counts = self._gather("sample_counts", ids)
        return (self._gather("sample_ids", ids).astype(np.int32),
                (counts / np.float32(self.draws)).astype(np.float32),
                self._gather("sample_logprobs", ids).astype(np.float32))

    def sample_counts(self, ids=None) -> np.ndarray:
        """Sampled caches: how often each slot's id was drawn, int32 [len(ids)(, T), k] (sums to ``draws``)."""
        if self.kind != "sampled":
            raise InputError(f"{self.path}: this is a {_KIND_NAME[self.kind]} cache; use {_READER[self.kind]}")
        return self._gather("sample_counts", ids).astype(np.int32)

    def features(self, name: str, ids=None) -> np.ndarray:
        """The teacher feature ``name`` (e.g. ``"pooled.12"``), float32 [len(ids), width], rows aligned with ``ids``
        exactly as :meth:`logits` aligns them (all rows in cache order when ``ids`` is None).

        ``pooled.last`` names the teacher's last layer. Only the requested rows are read from the
        memory-mapped shards.
        """
        entry = self.feature_info(name)
        return self._gather(tensor_name(entry["name"]), ids).astype(np.float32, copy=False)

    def feature_info(self, name: str) -> dict:
        """The manifest entry of feature ``name``: ``{name, layer, pooling, width, dtype}``."""
        if name == "pooled.last" and self.teacher_layers is not None:
            name = f"pooled.{self.teacher_layers}"
        if name not in self._features:
            raise InputError(f"teacher cache {self.path} has no feature {name!r} (it has: "
                             f"{', '.join(self.feature_names) or 'none'})")
        return dict(self._features[name])

    def feature_width(self, name: str) -> int:
        return int(self.feature_info(name)["width"])

    def labels(self, ids=None) -> np.ndarray:
        """The dataset labels stored with each row (int64 class ids into :attr:`classes`)."""
        return self._gather("labels", ids).astype(np.int64)

    def input_ids(self, ids=None) -> np.ndarray:
        """Per-token caches: the token ids each top-k row belongs to, int32 [len(ids), T] (padded)."""
        return self._gather("input_ids", ids)

    def num_tokens(self, ids=None) -> np.ndarray:
        return self._gather("num_tokens", ids).astype(np.int64)

    def split_ids(self, split: str) -> np.ndarray:
        """Row ids of one cached split, in cache order (splits are stored one after another)."""
        if split not in self.splits:
            raise InputError(f"{self.path}: split {split!r} is not in the cache (it has {', '.join(self.splits)})")
        names = list(self.splits)
        start = sum(self.splits[name] for name in names[: names.index(split)])
        return self.ids[start:start + self.splits[split]]

    def predictions(self, split: str | None = None) -> Predictions:
        """The teacher as a predictions arm (logits, labels, ids) for the audit, for one split or all rows."""
        ids = self.ids if split is None else self.split_ids(split)
        meta = {"model": self.manifest["fingerprint"]["teacher"].get("name"), "arm": "teacher",
                "temperature": self.temperature, "classes": self.classes}
        if self.quantization:  # a quantized teacher's rows say so wherever they are exported
            meta["model"] = f"{meta['model']}-{self.quantization.get('scheme')}"
            meta["quantization"] = self.quantization
        return Predictions(path=None, logits=self.logits(ids), labels=self.labels(ids), ids=ids, meta=meta)

    @property
    def quantization(self) -> dict | None:
        """How the teacher was quantized before capture (``distillab teacher --quantize``), None for full precision."""
        record = (self.manifest["fingerprint"].get("teacher") or {}).get("quantization")
        return record if isinstance(record, dict) else None

    # ---- trust

    def verify(self) -> list[str]:
        """Re-hash every shard; returns one line per mismatch (empty when all match)."""
        return verify_checksums(self.path, self.manifest)

    def check_matches(self, dataset, splits: list[str] | None = None) -> None:
        """Raise :class:`FingerprintMismatch` unless this cache holds ``dataset``'s rows unchanged.

        Always compares rows, never just the recorded dataset hash (a shard whose ``ids`` were
        permuted keeps that hash but serves wrong rows): the class list must be identical, and every
        row of ``splits`` (default: each split sharing any row with the cache) must be cached with
        the same text and label. Rows regrouped into other splits (e.g. train ∪ test combined) or a
        cache holding extra rows still pass, because lookups are by row id.
        """
        recorded = self.manifest["fingerprint"]["dataset"]
        if list(dataset.classes) != self.classes:
            problems = [_describe_class_diff(self.classes, list(dataset.classes))]
        else:
            problems = self._row_differences(dataset, splits)
        if problems:
            raise FingerprintMismatch(
                f"teacher cache {self.path} was made from a different dataset than {dataset.name!r} "
                f"(cache: {recorded.get('name')!r}, splits {', '.join(self.splits)}): " + "; ".join(problems)
                + ". Re-run `distillab teacher` on this dataset (or load the dataset it was made from)."
            )

    def _row_differences(self, dataset, splits: list[str] | None) -> list[str]:
        """Vectorised row comparison (same class list assumed): ids present, labels and text hashes equal."""
        unknown = [s for s in splits or [] if s not in dataset.splits]
        if unknown:
            raise InputError(f"dataset {dataset.name!r} has no split {unknown[0]!r} (splits: {', '.join(dataset.splits)})")
        if splits is None:
            splits = [name for name, split in dataset.splits.items() if np.isin(split.ids.astype(str), self.ids).any()]
            if not splits:
                return [f"none of the dataset's rows is in the cache (cache row ids look like {str(self.ids[0])!r})"]
        problems = []
        ids = np.concatenate([dataset.splits[s].ids for s in splits]).astype(str)
        labels = np.concatenate([np.asarray(dataset.splits[s].labels, dtype=np.int64) for s in splits])
        present = np.isin(ids, self.ids)
        if not present.all():
            problems.append(f"{int((~present).sum())} row(s) of split(s) {', '.join(splits)} are not in the cache "
                            f"(e.g. {str(ids[~present][0])!r})")
        rows = np.flatnonzero(present)
        if rows.size:
            cached = self.labels(ids[rows])
            differ = np.flatnonzero(cached != labels[rows])
            if differ.size:
                first = int(differ[0])
                row_id = str(ids[rows[first]])
                problems.append(f"labels differ on {differ.size} row(s) (e.g. {row_id!r} in {self._shard_of(row_id)}: "
                                f"cache {self.classes[cached[first]]!r}, dataset {self.classes[labels[rows[first]]]!r})")
            texts = [text for s in splits for text in dataset.splits[s].texts]
            digests = text_digests([texts[r] for r in rows.tolist()])
            changed = np.flatnonzero((self._gather("text_sha256_8", ids[rows]) != digests).any(axis=1))
            if changed.size:
                row_id = str(ids[rows[changed[0]]])
                problems.append(f"texts differ on {changed.size} row(s) (e.g. {row_id!r} in {self._shard_of(row_id)})")
        return problems

    def _shard_of(self, row_id: str) -> str:
        """The shard file holding ``row_id``, for error messages."""
        return self.manifest["shards"][int(self.rows([row_id])[0]) // self.shard_rows]["file"]


def _describe_class_diff(cache: list[str], data: list[str]) -> str:
    if set(cache) == set(data):
        first = next(i for i, (a, b) in enumerate(zip(cache, data)) if a != b)
        return (f"label list has the same {len(cache)} classes in a different order (first difference at class "
                f"{first}: cache {cache[first]!r}, dataset {data[first]!r})")
    gone, new = sorted(set(cache) - set(data)), sorted(set(data) - set(cache))
    parts = [f"label list differs ({len(cache)} classes in the cache, {len(data)} in the dataset"]
    if gone:
        parts.append(f"; only in cache: {', '.join(map(repr, gone[:3]))}")
    if new:
        parts.append(f"; only in dataset: {', '.join(map(repr, new[:3]))}")
    return "".join(parts) + ")"


def verify_checksums(path: Path, manifest: dict) -> list[str]:
    """One line per shard whose sha256 differs from the manifest's (empty when all match)."""
    problems = []
    for index, entry in enumerate(manifest["shards"]):
        if sha256_file(shard_path(Path(path), index, entry)) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 mismatch (file is corrupt or was modified)")
    return problems
