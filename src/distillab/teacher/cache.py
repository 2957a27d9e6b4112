"""The teacher cache: a directory of safetensors shards plus ``manifest.json``, written once, read many times.

Layout (DESIGN.md "Teacher cache")::

    DIR/manifest.json              format, kind, dtype, classes, fingerprint, one sha256 per shard
    DIR/shard-00000.safetensors    rows [0, shard_rows), then [shard_rows, 2*shard_rows), ...

Every shard holds ``labels`` int32 [r] and ``text_sha256_8`` uint8 [r, 8] (so a reader can name the
row whose label or text changed), the row ids in its safetensors metadata, and the teacher's output:
dense ``logits`` [r, K] (fp16/bf16/fp32), or top-k ``topk_ids`` int32 / ``topk_logprobs`` [r(, T), k]
with ``tail_logmass`` and ``tail_kl`` float32 [r(, T)] (per-token caches add ``input_ids`` and
``num_tokens``).

Why it is built this way:

- Shard boundaries are fixed by the plan (row positions only), so any process can write any shard,
  a resumed run computes exactly the missing ones, and the bytes never depend on who wrote them.
- A shard appears only by atomic rename; ``in-progress.json`` (the manifest's head) pins the plan
  while shards accumulate, and is replaced by ``manifest.json`` at the end. Nothing in either file
  depends on time or machine, so a killed-and-resumed run ends byte-identical to an uninterrupted one.
- The reader memory-maps shard payloads straight from the file (safetensors is a JSON header plus
  raw little-endian arrays), so opening a cache is instant and random access by row id is cheap.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np

from distillab.errors import FingerprintMismatch, InputError
from distillab.io import Predictions, atomic_path, read_json, sha256_file, write_json_atomic
from distillab.teacher import DEFAULT_SHARD_ROWS  # re-exported: runners import it from here
from distillab.teacher.fingerprint import diff, text_digests

FORMAT = "distillab.teacher_cache"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "in-progress.json"
DTYPES = ("fp16", "bf16", "fp32")
KINDS = ("dense", "topk")
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


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def _is_cache_file(name: str) -> bool:
    """Files this module writes (including temp files a SIGKILL may strand); nothing else is touched."""
    if name in (MANIFEST, PROGRESS) or (name.startswith("shard-") and name.endswith(".safetensors")):
        return True
    return name.startswith((".shard-", f".{MANIFEST}.", f".{PROGRESS}.")) and ".tmp" in name


# --------------------------------------------------------------------------- writer


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
    ) -> None:
        if kind not in KINDS:
            raise InputError(f"cache kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if dtype not in DTYPES:
            raise InputError(f"cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if kind == "topk" and (k is None or not 1 <= k <= width):
            raise InputError(f"top-k cache needs 1 <= k <= {width} (the teacher's output width), got k={k}")
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
        tensors["labels"] = torch.from_numpy(self.labels[start:stop])
        tensors["text_sha256_8"] = torch.from_numpy(self.text_hash[start:stop])
        path = self.out / shard_name(index)
        _save_safetensors(path, tensors, {"ids": json.dumps(self.ids[start:stop].tolist())})
        return path

    def _expected_shapes(self, rows: int) -> dict[str, tuple]:
        lead = (rows,) if self.tokens is None else (rows, self.tokens)
        if self.kind == "dense":
            return {"logits": (rows, self.width)}
        shapes = {
            "topk_ids": (*lead, self.k),
            "topk_logprobs": (*lead, self.k),
            "tail_logmass": lead,
            "tail_kl": lead,
        }
        if self.tokens is not None:
            shapes.update(input_ids=lead, num_tokens=(rows,))
        return shapes

    def _cast(self, name: str, value: np.ndarray, index: int, start: int):
        import torch

        if name in ("topk_ids", "input_ids", "num_tokens"):
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
        if name in ("logits", "topk_logprobs"):
            if self.dtype == "fp16" and np.abs(value).max(initial=0.0) > FP16_MAX:
                row = start + int(np.argwhere(np.abs(value) > FP16_MAX)[0][0])
                raise InputError(
                    f"teacher {name} reach {np.abs(value).max():.4g} at row {str(self.ids[row])!r}, beyond fp16's "
                    f"range ({FP16_MAX:g}); use --dtype bf16 or fp32"
                )
            if self.dtype == "bf16":  # numpy has no bf16; torch rounds to nearest even
                return torch.from_numpy(value).to(torch.bfloat16)
            return torch.from_numpy(value.astype(np.float16) if self.dtype == "fp16" else value)
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
        if self.kind == "topk":
            manifest["truncation"] = truncation_stats([read_safetensors(self.out / s["file"])[1] for s in shards])
        write_json_atomic(self.out / MANIFEST, manifest)
        (self.out / PROGRESS).unlink(missing_ok=True)
        return manifest


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


def truncation_stats(shards: list[dict[str, np.ndarray]]) -> dict:
    """Probability mass and KL lost to keeping only the top k, averaged over rows (or tokens).

    ``kl_renormalized`` = KL(q‖p) with q the top-k renormalised, which is −log(kept mass);
    ``kl_uniform_tail`` = KL(p‖p̂) with p̂ the top-k plus the tail mass spread evenly over the rest
    (computed at capture, where the full distribution was at hand).
    """
    logmass, tail_kl = [], []
    for arrays in shards:
        lm = np.asarray(arrays["tail_logmass"], dtype=np.float64)
        kl = np.asarray(arrays["tail_kl"], dtype=np.float64)
        if "num_tokens" in arrays:  # only real token positions count
            valid = np.arange(lm.shape[1])[None, :] < np.asarray(arrays["num_tokens"])[:, None]
            lm, kl = lm[valid], kl[valid]
        logmass.append(lm.ravel())
        tail_kl.append(kl.ravel())
    lm = np.concatenate(logmass)
    kl = np.concatenate(tail_kl)
    if lm.size == 0:
        return {"positions": 0, "mass_lost_mean": None, "mass_lost_max": None,
                "kl_renormalized_mean": None, "kl_uniform_tail_mean": None}
    mass = np.exp(lm)
    return {
        "positions": int(lm.size),
        "mass_lost_mean": float(mass.mean()),
        "mass_lost_max": float(mass.max()),
        "kl_renormalized_mean": float((-np.log1p(-np.minimum(mass, 1 - 1e-12))).mean()),
        "kl_uniform_tail_mean": float(kl.mean()),
    }


# --------------------------------------------------------------------------- reader


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Parse a safetensors header and memory-map every tensor (bf16 comes back as raw uint16)."""
    try:
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + header_len
    arrays: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if info["dtype"] not in _ST_DTYPES:
            raise InputError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<")
        shape = tuple(info["shape"])
        begin, end = info["data_offsets"]
        if end - begin != int(np.prod(shape)) * dtype.itemsize:
            raise InputError(f"{path}: tensor {name!r} size does not match its shape {shape}")
        if end == begin:
            array = np.zeros(shape, dtype=dtype)
        else:
            array = np.memmap(path, dtype=dtype, mode="r", offset=base + begin, shape=shape)
        arrays[name] = _BF16View(array) if info["dtype"] == "BF16" else array
    return metadata, arrays


class _BF16View:
    """A memory-mapped bf16 array (stored as raw uint16): indexing it gives float32 (bf16 is fp32's top half)."""

    def __init__(self, raw: np.ndarray) -> None:
        self.raw = raw
        self.shape = raw.shape

    def __getitem__(self, index) -> np.ndarray:
        return (np.asarray(self.raw[index]).astype(np.uint32) << 16).view(np.float32)


class TeacherCache:
    """Read-only view of a finished cache: memory-mapped shards, rows looked up by id."""

    def __init__(self, path: Path, manifest: dict, shards: list[dict[str, np.ndarray]], ids: np.ndarray) -> None:
        self.path = path
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
        self.shard_rows: int = int(manifest["shard_rows"])

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = False) -> "TeacherCache":
        path = Path(path)
        if not (path / MANIFEST).exists():
            partial = (path / PROGRESS).exists()
            raise InputError(
                f"{path}: no {MANIFEST}; "
                + ("the cache is unfinished (re-run the same `distillab teacher` command to complete it)"
                   if partial else "not a teacher cache directory")
            )
        manifest = read_json(path / MANIFEST)
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"{path / MANIFEST}: format {manifest.get('format')!r} v{manifest.get('format_version')} "
                f"is not {FORMAT} v{FORMAT_VERSION}"
            )
        if verify:
            problems = verify_checksums(path, manifest)
            if problems:
                raise InputError(f"{path}: {problems[0]} ({len(problems)} problem(s)); re-create the cache")
        shards, ids = [], []
        for entry in manifest["shards"]:
            shard_path = path / entry["file"]
            if not shard_path.exists():
                raise InputError(f"{shard_path}: shard listed in the manifest is missing")
            if shard_path.stat().st_size != entry["bytes"]:
                raise InputError(f"{shard_path}: size {shard_path.stat().st_size} != {entry['bytes']} in the manifest "
                                 "(truncated or replaced); re-create the cache")
            metadata, arrays = read_safetensors(shard_path)
            shard_ids = json.loads(metadata.get("ids", "[]"))
            if len(shard_ids) != entry["rows"]:
                raise InputError(f"{shard_path}: {len(shard_ids)} row ids but the manifest says {entry['rows']} rows")
            shards.append(arrays)
            ids.extend(shard_ids)
        return cls(path, manifest, shards, np.asarray(ids, dtype=str))

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
            raise InputError(f"{self.path}: a {self.kind} cache has no {name!r}; "
                             + ("use topk()" if self.kind == "topk" else "use logits()"))
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
            raise InputError(f"{self.path}: this is a top-k cache; use topk() (dense logits were not stored)")
        return self._gather("logits", ids).astype(np.float32)

    def topk(self, ids=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(topk_ids int32, topk_logprobs float32, tail_logmass float32), each [len(ids)(, T), ...]."""
        if self.kind != "topk":
            raise InputError(f"{self.path}: this is a dense cache; use logits()")
        return (self._gather("topk_ids", ids).astype(np.int32),
                self._gather("topk_logprobs", ids).astype(np.float32),
                self._gather("tail_logmass", ids).astype(np.float32))

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
        return Predictions(path=None, logits=self.logits(ids), labels=self.labels(ids), ids=ids,
                           meta={"model": self.manifest["fingerprint"]["teacher"].get("name"), "arm": "teacher",
                                 "temperature": self.temperature, "classes": self.classes})

    # ---- trust

    def verify(self) -> list[str]:
        """Re-hash every shard; returns one line per mismatch (empty when all match)."""
        return verify_checksums(self.path, self.manifest)

    def check_matches(self, dataset, splits: list[str] | None = None) -> None:
        """Raise :class:`FingerprintMismatch` unless this cache holds ``dataset``'s rows unchanged.

        Passes at once when the dataset's content hash is the recorded one. Otherwise it compares
        rows: the class list must be identical, and every row of ``splits`` (default: each split
        sharing any row with the cache) must be cached with the same text and label. Rows regrouped
        into other splits (e.g. train ∪ test combined) or a cache holding extra rows still pass,
        because lookups are by row id; anything that would serve a wrong row does not.
        """
        recorded = self.manifest["fingerprint"]["dataset"]
        if list(dataset.classes) != self.classes:
            problems = [_describe_class_diff(self.classes, list(dataset.classes))]
        elif dataset.content_hash() == recorded["content_sha256"]:
            return
        else:
            problems = self._row_differences(dataset, splits)
        if problems:
            raise FingerprintMismatch(
                f"teacher cache {self.path} was made from a different dataset than {dataset.name!r} "
                f"(cache: {recorded['name']!r}, splits {', '.join(self.splits)}): " + "; ".join(problems)
                + ". Re-run `distillab teacher` on this dataset (or load the dataset it was made from)."
            )

    def _row_differences(self, dataset, splits: list[str] | None) -> list[str]:
        unknown = [s for s in splits or [] if s not in dataset.splits]
        if unknown:
            raise InputError(f"dataset {dataset.name!r} has no split {unknown[0]!r} (splits: {', '.join(dataset.splits)})")
        if splits is None:
            splits = [name for name, split in dataset.splits.items() if any(i in self._index for i in split.ids.tolist())]
            if not splits:
                return [f"none of the dataset's rows is in the cache (cache row ids look like {str(self.ids[0])!r})"]
        problems = []
        ids = np.concatenate([dataset.splits[s].ids for s in splits]).astype(str)
        texts = [text for s in splits for text in dataset.splits[s].texts]
        names = [dataset.classes[label] for s in splits for label in dataset.splits[s].labels.tolist()]
        present = np.array([i in self._index for i in ids.tolist()], dtype=bool)
        if not present.all():
            problems.append(f"{int((~present).sum())} row(s) of split(s) {', '.join(splits)} are not in the cache "
                            f"(e.g. {str(ids[~present][0])!r})")
        rows = np.flatnonzero(present)
        if rows.size:
            cached = self.labels(ids[rows])
            differ = [r for r, c in zip(rows.tolist(), cached.tolist()) if self.classes[c] != names[r]]
            if differ:
                r = differ[0]
                problems.append(f"labels differ on {len(differ)} row(s) (e.g. {str(ids[r])!r}: cache "
                                f"{self.classes[cached[np.searchsorted(rows, r)]]!r}, dataset {names[r]!r})")
            changed = (self._gather("text_sha256_8", ids[rows]) != text_digests([texts[r] for r in rows])).any(axis=1)
            if changed.any():
                problems.append(f"texts differ on {int(changed.sum())} row(s) (e.g. {str(ids[rows[changed][0]])!r})")
        return problems


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
    problems = []
    for entry in manifest["shards"]:
        shard_path = Path(path) / entry["file"]
        if not shard_path.exists():
            problems.append(f"{entry['file']}: missing")
        elif sha256_file(shard_path) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 mismatch (file is corrupt or was modified)")
    return problems
