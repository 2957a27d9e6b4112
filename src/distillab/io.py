"""Files that stages hand to each other: atomic writes, predictions files and their JSON sidecars.

Every writer goes through :func:`atomic_path`, so a crash never leaves a half-written file that a
later stage would trust. Readers validate and fail with one line naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from distillab.errors import InputError


# Errors of the disk, not of the data: a full disk, a quota, the file-size limit, a read-only mount.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temp file lives in the same directory so the final ``os.replace`` is atomic on POSIX.
    ``suffix`` keeps libraries that insist on an extension (``np.savez`` adds ``.npz``) happy.
    A folder that cannot be made, a full disk or a file-size limit is an :class:`InputError`
    naming ``path``; nothing is left behind.
    """
    path = Path(path)
    made = _make_parents(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        _remove_empty(made)
        _check_ancestor(path.parent, path)  # names the file in the way, when that is the cause
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _disk_errors(path):
            yield tmp_path
        try:
            os.replace(tmp_path, path)
        except OSError as exc:
            what = "is a folder, not a file" if path.is_dir() else f"cannot write ({exc.strerror or exc})"
            raise InputError(f"{path}: {what}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        if made and not path.exists():  # failed: the folders made for it go too
            _remove_empty(made)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; its files land in ``path`` only if the block succeeds.

    A new ``path`` is the temporary folder renamed; an existing one (a stage folder holding other
    files) receives each file by ``os.replace``. On failure nothing new remains: no temporary
    folder, no empty ``path`` and no parent folders made for it.
    """
    path = Path(path)
    check_output_dir(path)
    made = _make_parents(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the output folder follows the user's umask
    except OSError as exc:
        _remove_empty(made)
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with _disk_errors(path):
            yield tmp
        try:
            if not path.exists():
                os.rename(tmp, path)
            else:
                for item in sorted(tmp.iterdir()):
                    os.replace(item, path / item.name)
        except OSError as exc:
            raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made and not path.exists():  # failed: the folders made for it go too
            _remove_empty(made)


def check_output_dir(path: str | os.PathLike) -> None:
    """Refuse, naming it, an output folder that is a file, lies under a file, or cannot be written.

    Called before long work, so that a bad ``--out`` costs nothing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder; give a folder to write into")
    _check_ancestor(path, path)


def check_output_file(path: str | os.PathLike) -> None:
    """Refuse, naming it, an output file path that is a folder, lies under a file, or cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name (e.g. {path / 'calibration.json'})")
    _check_ancestor(path.parent, path)


def _check_ancestor(folder: Path, path: Path) -> None:
    """``folder`` (where ``path`` will be written) exists as a writable folder or can be made."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{path}: cannot be made: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write in {existing} (permission denied)")


def _make_parents(path: Path) -> list[Path]:
    """Make ``path``'s missing parent folders; return those made (deepest first), for cleanup on failure."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent.parent != parent:
        missing.append(parent)
        parent = parent.parent
    try:
        for folder in reversed(missing):
            folder.mkdir()
    except OSError as exc:
        made = [folder for folder in missing if folder.is_dir()]
        _remove_empty(made)
        _check_ancestor(path.parent, path)  # names the file in the way, when that is the cause
        raise InputError(f"{path}: cannot make the folder {folder} ({exc.strerror or exc})") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def _disk_errors(path: Path) -> Iterator[None]:
    """A full disk or a file-size limit while writing ``path``: one line naming it, not a traceback."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _DISK_ERRNOS:
            raise
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json_text(obj))


def json_text(obj: Any) -> str:
    """JSON with sorted-free, human-diffable layout; NaN is written as null (strict JSON)."""
    return json.dumps(_nan_to_none(obj), indent=2, allow_nan=False) + "\n"


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _nan_to_none(obj.item())
    if isinstance(obj, np.ndarray):
        return _nan_to_none(obj.tolist())
    return obj


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; every problem is one :class:`InputError` line naming the file.

    Strings must be text: a ``"\\ud800"`` escape (a lone surrogate) would otherwise fail only when
    a later stage prints or writes the value.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        bad = _unencodable(data)
    except RecursionError:
        raise InputError(f"{path}: not valid JSON (nested too deeply)") from None
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit conversion limit
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:  # a directory, no permission, ...
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if bad is not None:
        raise InputError(f"{path}: {bad} holds a lone surrogate (e.g. '\\ud800'), which is not text")
    return data


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- predictions files

TIERS = ("head", "mid", "tail")  # per-row tier names; an integer tier code i in a file means TIERS[i]


@dataclass
class Predictions:
    """One model's outputs on one split: the audit's only input.

    ``logits`` are raw scores before softmax, kept in the file's dtype (the audit casts to
    float64 itself). ``meta`` is the optional ``FILE.json`` sidecar describing the model.
    """

    path: Path | None
    logits: np.ndarray  # [n, K]
    labels: np.ndarray  # [n] int64 in [0, K)
    ids: np.ndarray | None = None  # [n] row identity, aligns arms and the teacher
    tiers: np.ndarray | None = None  # [n] str "head" | "mid" | "tail" (files may hold codes 0 | 1 | 2)
    meta: dict = field(default_factory=dict)
    # Rows whose stored ``preds`` name another class tied at the top logit (fp16 ties); None: no ``preds``.
    preds_ties: int | None = None

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def take(self, rows: np.ndarray) -> "Predictions":
        """The same predictions restricted to (or reordered by) ``rows``."""
        return Predictions(
            path=self.path,
            logits=self.logits[rows],
            labels=self.labels[rows],
            ids=None if self.ids is None else self.ids[rows],
            tiers=None if self.tiers is None else self.tiers[rows],
            meta=self.meta,
            preds_ties=self.preds_ties,
        )


def sidecar_path(path: str | os.PathLike) -> Path:
    """``preds.npz`` → ``preds.json``: where the description of the model that made the file lives.

    A predictions file named ``*.json`` would be its own sidecar (and be overwritten by it): refused.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise InputError(f"{path}: a predictions file must not be named *.json (that name is its sidecar's); "
                         "rename it to .npz")
    return path.with_suffix(".json")


def save_predictions(
    path: str | os.PathLike,
    logits: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray | None = None,
    tiers: np.ndarray | None = None,
    meta: dict | None = None,
) -> Path:
    """Write a predictions ``.npz`` (and its sidecar when ``meta`` is given), atomically."""
    path = Path(path)
    sidecar = sidecar_path(path)
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {"logits": logits, "labels": labels}
    if ids is not None:
        arrays["ids"] = np.asarray(ids)
    if tiers is not None:
        arrays["tiers"] = tier_names(np.asarray(tiers), path)
    validate_predictions(Predictions(path, logits, labels, arrays.get("ids"), arrays.get("tiers")))
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    if meta is not None:
        write_json_atomic(sidecar, meta)
    return path


def load_predictions(path: str | os.PathLike) -> Predictions:
    """Read our layout (``logits, labels[, ids, tiers]``) or the course's (``logits, preds, labels, val_tiers``)."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if not path.exists():
        raise InputError(f"{path}: predictions file not found")
    try:
        # allow_pickle=False: never unpickle a user's file.
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as exc:
        raise InputError(f"{path}: cannot read as a plain .npz ({exc}); object arrays are not accepted") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, ...
        raise InputError(f"{path}: cannot read as .npz ({type(exc).__name__}: {exc})") from None

    for key in ("logits", "labels"):
        if key not in arrays:
            raise InputError(f"{path}: missing array '{key}' (found: {', '.join(sorted(arrays)) or 'none'})")
    tiers = arrays.get("tiers", arrays.get("val_tiers"))
    labels = arrays["labels"]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: 'labels' must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    meta = read_json(sidecar) if sidecar.exists() else {}
    if not isinstance(meta, dict):  # every reader does meta.get(...): a list here would crash far from the cause
        raise InputError(f"{sidecar}: a predictions sidecar must be a JSON object, got {type(meta).__name__}")
    if not isinstance(meta.get("recipe", {}), dict):  # the audit's grid and the report read recipe.get(...)
        raise InputError(f"{sidecar}: 'recipe' must be a JSON object, got {type(meta['recipe']).__name__}")
    preds = Predictions(
        path=path,
        logits=arrays["logits"],
        labels=labels.astype(np.int64),
        ids=arrays.get("ids"),
        tiers=None if tiers is None else tier_names(tiers, path),
        meta=meta,
    )
    validate_predictions(preds)
    if "preds" in arrays:
        preds.preds_ties = _count_preds_ties(path, arrays["preds"], preds.logits)
    return preds


def validate_predictions(pred: Predictions) -> None:
    """Raise :class:`InputError` naming the file and the first problem found."""
    where = str(pred.path) if pred.path is not None else "predictions"
    logits, labels = pred.logits, pred.labels
    if logits.ndim != 2:
        raise InputError(f"{where}: 'logits' must be 2-D [rows, classes], got shape {logits.shape}")
    if not np.issubdtype(logits.dtype, np.floating):
        raise InputError(f"{where}: 'logits' must be floating point, got dtype {logits.dtype}")
    n, k = logits.shape
    if n == 0:
        raise InputError(f"{where}: no rows")
    if k < 2:
        raise InputError(f"{where}: need at least 2 classes, got {k}")
    if labels.shape != (n,):
        raise InputError(f"{where}: 'labels' has {labels.shape[0]} rows but 'logits' has {n}")
    bad = np.flatnonzero((labels < 0) | (labels >= k))
    if bad.size:
        raise InputError(
            f"{where}: label {int(labels[bad[0]])} at row {int(bad[0])} is outside [0, {k}) "
            f"({bad.size} such rows)"
        )
    finite = np.isfinite(logits).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InputError(f"{where}: NaN or inf in 'logits' at row {row} ({int((~finite).sum())} such rows)")
    if _are_probabilities(logits):
        raise InputError(
            f"{where}: 'logits' hold probabilities (every row is non-negative and sums to 1); the audit applies "
            "softmax, which would flatten them and give a wrong temperature. Save their logs as 'logits': "
            "np.log(np.clip(p, 1e-12, None)) (softmax of log p is p)"
        )
    for name, arr in (("ids", pred.ids), ("tiers", pred.tiers)):
        if arr is not None and arr.shape != (n,):
            raise InputError(f"{where}: '{name}' has shape {arr.shape}, expected ({n},)")
    if pred.ids is not None:
        unique, counts = np.unique(pred.ids, return_counts=True)
        if unique.size != n:
            raise InputError(f"{where}: duplicate row id {unique[counts > 1][0]!r} in 'ids'")
    if pred.tiers is not None:
        unknown = sorted(set(np.unique(pred.tiers).tolist()) - set(TIERS))  # plain str: '0', not np.str_('0')
        if unknown:
            raise InputError(f"{where}: unknown tier value {unknown[0]!r} in 'tiers' "
                             "(expected the strings head, mid, tail or the integer codes 0, 1, 2)")


def tier_names(tiers: np.ndarray, where: str | os.PathLike) -> np.ndarray:
    """Per-row tiers as names: strings pass through, integer codes 0, 1, 2 become head, mid, tail."""
    if np.issubdtype(tiers.dtype, np.integer):
        bad = np.flatnonzero((tiers < 0) | (tiers >= len(TIERS)))
        if bad.size:
            raise InputError(f"{where}: tier code {int(tiers.flat[bad[0]])} in 'tiers' is not 0 (head), 1 (mid) "
                             f"or 2 (tail) ({bad.size} such rows)")
        return np.asarray(TIERS)[tiers]
    if tiers.dtype.kind not in "US":
        raise InputError(f"{where}: 'tiers' must hold the strings head, mid, tail or the integer codes 0, 1, 2, "
                         f"got dtype {tiers.dtype}")
    return tiers.astype(str)


def _are_probabilities(logits: np.ndarray) -> bool:
    """Every row non-negative and summing to 1: probabilities saved where logits belong.

    Real logits (any real numbers) essentially never do this on every row. The tolerance is 1e-4,
    or the rounding of the file's float type (float16 stores each value to 1 part in 2**11).
    """
    if (logits < 0).any():
        return False
    tolerance = max(1e-4, 4 * float(np.finfo(logits.dtype).eps))
    return bool(np.all(np.abs(logits.sum(axis=1, dtype=np.float64) - 1.0) <= tolerance))


def _count_preds_ties(path: Path, preds: np.ndarray, logits: np.ndarray) -> int:
    """The course files carry ``preds``; each must be a class attaining the row's maximum logit.

    Returns how many rows name a tied class other than argmax's first index (fp16 logits tie);
    distillab scores argmax, so the audit reports that count rather than hiding it.
    """
    n, k = logits.shape
    if preds.shape != (n,):
        raise InputError(f"{path}: 'preds' has shape {preds.shape}, expected ({n},)")
    if not (np.issubdtype(preds.dtype, np.integer) or np.issubdtype(preds.dtype, np.floating)):
        raise InputError(f"{path}: 'preds' must hold class ids, got dtype {preds.dtype}")
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~((preds >= 0) & (preds < k) & (preds == np.floor(preds))))
    if bad.size:
        row = int(bad[0])
        raise InputError(f"{path}: 'preds' row {row} is {preds[row].item()}, not a class id in [0, {k}) ({bad.size} such rows)")
    preds = preds.astype(np.int64)
    argmax = logits.argmax(axis=1)
    differ = np.flatnonzero(preds != argmax)
    # A row whose stored prediction also attains the maximum logit is a tie, not a mismatch.
    tied = logits[differ, preds[differ]] == logits[differ].max(axis=1)
    if not tied.all():
        row = int(differ[~tied][0])
        raise InputError(
            f"{path}: 'preds' row {row} is {int(preds[row])} but argmax of 'logits' is {int(argmax[row])}"
        )
    return int(differ.size)


# --------------------------------------------------------------------------- YAML


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader (never constructs Python objects) that refuses aliases (``*name``).

    A few lines of nested aliases expand to billions of nodes (the "billion laughs" bomb) and
    nothing distillab reads needs them.
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} is not accepted (aliases can expand without bound; "
                "write the value out)", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(path: str | os.PathLike, error: type[Exception] = InputError) -> Any:
    """Parse a YAML file as plain data; every problem raises ``error`` with one line naming the file.

    Text must be UTF-8, and every string encodable as UTF-8: a ``"\\ud800"`` escape would
    otherwise fail only when a later stage writes the value out.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a YAML file") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(filter(None, (getattr(exc, "context", None), getattr(exc, "problem", None)))) or str(exc)
        raise error(f"{path}: not valid YAML{where}: {what}") from None
    bad = _unencodable(data)
    if bad is not None:
        raise error(f"{path}: {bad} holds a lone surrogate (e.g. '\\ud800'), which is not text")
    return data


def _unencodable(data: Any, where: str = "") -> str | None:
    """The key path of the first string that UTF-8 cannot encode, or None."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return where or "the document"
    elif isinstance(data, dict):
        for key, value in data.items():
            at = f"{where}.{key}" if where else str(key)
            found = _unencodable(key, at) or _unencodable(value, at)
            if found:
                return found
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found = _unencodable(value, f"{where}[{i}]")
            if found:
                return found
    return None
