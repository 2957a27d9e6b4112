"""Lab datasets by name: each file pinned by source address and sha256, found locally first.

Where a file is looked for, in order (first hit wins, and it must match its sha256):

1. ``data_dir`` (the argument), then every folder on ``DISTILLAB_DATA_DIR`` (colon-separated),
   each as ``DIR/<folder>/<file>`` or ``DIR/<file>``;
2. the user cache ``DISTILLAB_CACHE_DIR`` (default ``~/.cache/distillab/data``) as ``CACHE/<folder>/<file>``;
3. a download from the pinned source address into the cache (skipped when ``DISTILLAB_OFFLINE=1``),
   streamed to a temp file and renamed only after its sha256 matched.

Files published uncompressed are also accepted as ``FILE.gz``; their sha256 is of the uncompressed
bytes, so both forms verify the same way.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from distillab.data.dataset import TextDataset
from distillab.errors import InputError
from distillab.io import atomic_path

DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class LabFile:
    path: str  # relative to the dataset's folder, e.g. "raw/reut2-000.sgm"
    url: str
    sha256: str  # of the (uncompressed) bytes


@dataclass(frozen=True)
class LabDataset:
    name: str
    folder: str  # folder name under a data dir or the cache
    description: str
    license: str
    files: tuple[LabFile, ...]
    build: Callable[[dict[str, Path]], TextDataset]  # file path (as in LabFile.path) → local file → dataset


# --------------------------------------------------------------------------- the registry

_REUTERS_COMMIT = "https://raw.githubusercontent.com/colibri17/TextCategorization/b6c2ca3d46a2540843400890792e5165448b4516/reuters21578"
_REUTERS_SHA256 = (
    "0ec53cda8f6d605a3ba710df14be7f00fc02f0c222a14748101df22326afe0f6",
    "1528e7e82d110d88d0234eb9619eadb7f9fd805711971df05975b92277dfdf4d",
    "99f18068d0518952987dedd78c622e5c2a584e357d264d3754696c815f3e6628",
    "78a3a8d7e04bc9d42c4614d5d5c60a4293dbe3f708df6fb5a71d9ef31f4b3fa3",
    "726342c19a65873330b412378cd6a3f0d512035f5223146ddd60930c62eb6ff0",
    "d09de619b6dd2d047d5124681f6df90550abaf592020d1c1ce338ae9b91522e7",
    "b5535c0d66b01f4976f84621a4a795afbc00d2c4bd0a1b7ae426df6630fb361d",
    "aa706007ec84a03537a3921ca976d60e11b3f99e4b9e9b2d5c81dd384d2c2062",
    "a3994583694a00b7c744097c1d7eabfcf90f2e6650cc21663e46828035a336cb",
    "29995f606dd1a9bdf907eacc9d879846c716860d9d9141676979474aaea39c7d",
    "996df6008089bd09fa5b28a4d2eb0ee5f7b9d4601cde566fed3926ac82960fa3",
    "d3a2782015247d9c2bffb8926267827fdd449c70d619435ef01a25a1c56a53ca",
    "da31035d483851f2aebce5b66d779e5e2c0ac9dcfe098596c6d544e81c5604ab",
    "8f7700bc0455fac3fcc12377ced4807b7df8aba1f21ecad059b9cc2b1cf0b8be",
    "ef936bd3e0f36cf722afa9a6957563549775af32e9e28b4f539c8737ceda83ab",
    "6d3bcec73eff871b8a5403588af814c4e50a0de6bc25707480522ab836f74026",
    "be2f03a185fff70131f3b4fdbd6229b7ee2be077eba9691eaa597c8cfbda8812",
    "f370e610b4b1342e41a98e0c426a08541044bd1d7e539674f32372a6060b73b5",
    "a5f971bf25448e915781962309e669359a35fbcaf3017a806eca0590897f209a",
    "d3b07097fba2633d130b4914aceba671645985248943ce9e39c289315339dffb",
    "f6ad1b724125c202566c63b35ea0b5ee23881f8b7ed47a32829d5af05d8e860d",
    "3f5196d32869723c9042aa5756805b4e90360f1f45ea17f4594fa0e2b3630b18",
)
_BANKING77 = "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/57ec275d8078af65b7731c2a98be812d844a6d6b/banking_data"
_COURSE = "https://raw.githubusercontent.com/earino/applied-deep-learning/a7b7c44d3d9dbab9dae693c6d25a09fcac3efe5e/data"
CFPB_HUB_ID = "determined-ai/consumer_complaints_medium"


def _build_r52(files: dict[str, Path]) -> TextDataset:
    from distillab.data.reuters import load_r52

    return load_r52(list(files.values()), name="r52")


def _build_banking77(files: dict[str, Path]) -> TextDataset:
    from distillab.data.load import load_dataset

    return load_dataset({
        "path": str(files["train.csv"].parent), "name": "banking77",
        "files": {"train": str(files["train.csv"]), "test": str(files["test.csv"])},
        "text_column": "text", "label_column": "category", "label_list": str(files["categories.json"]),
    })


def cfpb_issue_113_spec(files: dict[str, Path], text_source: dict | None = None) -> dict:
    """The course's 113-class task as a load spec; ``text_source`` replaces the Hub source (tests, local copies).

    Course semantics (``utils/data_utils.py``): label = merge_map.get(Issue, Issue); rows whose merged
    label is not in the label list are dropped, in every split; train/val = index files into the
    Hub ``train`` split; test = the whole Hub ``test`` split after that filter.
    """
    source = text_source or {"hub": CFPB_HUB_ID, "text_column": "Consumer Complaint", "label_column": "Issue"}
    return {
        **source,
        "name": "cfpb-issue-113",
        "id_prefix": "cfpb",
        "merge_map": str(files["label_merge_mapping.json"]),
        "label_list": str(files["label_list.json"]),
        "unknown_labels": "drop",
        "split_indices": {
            "train": {"split": "train", "indices": str(files["train_indices.json"])},
            "val": {"split": "train", "indices": str(files["val_indices.json"])},
        },
    }


def _build_cfpb(files: dict[str, Path]) -> TextDataset:
    from distillab.data.load import load_dataset

    return load_dataset(cfpb_issue_113_spec(files))


LAB_DATASETS: dict[str, LabDataset] = {
    "r52": LabDataset(
        name="r52",
        folder="reuters-r52",
        description="Reuters-21578 R52 (ModApte, single topic): 52 classes, 6,532 train / 2,568 test, long tail",
        license="Reuters-21578 Distribution 1.0: research use only",
        files=tuple(
            LabFile(f"raw/reut2-{i:03d}.sgm", f"{_REUTERS_COMMIT}/reut2-{i:03d}.sgm", digest)
            for i, digest in enumerate(_REUTERS_SHA256)
        ),
        build=_build_r52,
    ),
    "banking77": LabDataset(
        name="banking77",
        folder="banking77",
        description="BANKING77 intents: 77 classes, 10,003 train / 3,080 test, mildly imbalanced",
        license="CC BY 4.0 (Casanueva et al. 2020)",
        files=(
            LabFile("train.csv", f"{_BANKING77}/train.csv", "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b"),
            LabFile("test.csv", f"{_BANKING77}/test.csv", "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d"),
            LabFile("categories.json", f"{_BANKING77}/categories.json", "53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63"),
        ),
        build=_build_banking77,
    ),
    "cfpb-issue-113": LabDataset(
        name="cfpb-issue-113",
        folder="cfpb-issue-113",
        description=f"CFPB complaints, 113 merged Issue classes (ECBS5200 week 6); text from the Hub dataset {CFPB_HUB_ID}",
        license="label files CC BY 4.0 (E. Ariño de la Rubia); complaints: US CFPB public data",
        files=(
            LabFile("label_list.json", f"{_COURSE}/label_list.json", "7b300bfc28471fa0a115cd081e11a9ffc983d306e1a9ce9e732f91d74e9a5252"),
            LabFile("label_merge_mapping.json", f"{_COURSE}/label_merge_mapping.json", "c6d0f16ba07708a9e0c5a862c20072e2a6602055b6a0d9f0d5027aefb44e26da"),
            LabFile("train_indices.json", f"{_COURSE}/train_indices.json", "a303f6c0a98d8362cecffdb543a71603e2c2ce34dd56222bac3b3bdfa281f431"),
            LabFile("val_indices.json", f"{_COURSE}/val_indices.json", "5106946e24a1d09b80e7a9dfae50b84e12ffc9161153f353fd07c3896eb85cdf"),
        ),
        build=_build_cfpb,
    ),
}


def lab_dataset_names() -> list[str]:
    return list(LAB_DATASETS)


def load_lab_dataset(name: str, data_dir: str | None = None) -> TextDataset:
    """A lab dataset by name, from local files (or the cache, or a one-time verified download)."""
    lab = get_lab(name)
    files = {f.path: locate(lab, f, data_dir) for f in lab.files}
    dataset = lab.build(files)
    dataset.source.setdefault("lab", lab.name)
    dataset.source["lab_files"] = {f.path: {"path": str(files[f.path]), "sha256": f.sha256, "url": f.url} for f in lab.files}
    return dataset


def get_lab(name: str) -> LabDataset:
    if name not in LAB_DATASETS:
        raise InputError(f"unknown lab dataset {name!r} (available: {', '.join(LAB_DATASETS)})")
    return LAB_DATASETS[name]


# --------------------------------------------------------------------------- finding and fetching files


def search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Local folders searched before the cache: ``data_dir`` (may itself be colon-separated), then ``DISTILLAB_DATA_DIR``."""
    entries = []
    for value in (os.fspath(data_dir) if data_dir else "", os.environ.get("DISTILLAB_DATA_DIR", "")):
        entries += [Path(part).expanduser() for part in value.split(os.pathsep) if part]
    return entries


def cache_dir() -> Path:
    return Path(os.environ.get("DISTILLAB_CACHE_DIR") or Path.home() / ".cache" / "distillab" / "data").expanduser()


def candidates(lab: LabDataset, lab_file: LabFile, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where ``lab_file`` may be, in search order (each also as ``.gz``)."""
    found = []
    for root in search_dirs(data_dir):
        found += [root / lab.folder / lab_file.path, root / lab_file.path]
    found.append(cache_dir() / lab.folder / lab_file.path)
    return found


def find_local(lab: LabDataset, lab_file: LabFile, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first local copy of ``lab_file`` (not yet verified), or None."""
    for candidate in candidates(lab, lab_file, data_dir):
        for path in (candidate, candidate.with_name(candidate.name + ".gz")):
            if path.is_file():
                return path
    return None


def locate(lab: LabDataset, lab_file: LabFile, data_dir: str | os.PathLike | None = None) -> Path:
    """The verified local path of ``lab_file``; downloads it into the cache when no local copy exists."""
    path = find_local(lab, lab_file, data_dir)
    if path is not None:
        verify(path, lab_file.sha256)
        return path
    target = cache_dir() / lab.folder / lab_file.path
    if os.environ.get("DISTILLAB_OFFLINE") == "1":
        searched = ", ".join(map(str, candidates(lab, lab_file, data_dir)))
        raise InputError(
            f"lab dataset {lab.name!r}: {lab_file.path} not found (looked in {searched}) "
            f"and DISTILLAB_OFFLINE=1; copy it from {lab_file.url} into {target.parent} or a DISTILLAB_DATA_DIR folder"
        )
    return download(lab_file.url, target, lab_file.sha256, what=f"lab dataset {lab.name!r}: {lab_file.path}")


def verify(path: Path, expected: str) -> None:
    digest = file_sha256(path)
    if digest != expected:
        raise InputError(
            f"{path}: sha256 is {digest}, expected {expected}; the file differs from the pinned source "
            "(delete it to fetch a fresh copy, or fix DISTILLAB_DATA_DIR)"
        )


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes, uncompressed first when it is ``.gz``."""
    digest = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    return digest.hexdigest()


def download(url: str, target: Path, expected: str, what: str = "") -> Path:
    """Stream ``url`` to ``target``; the file appears only if its sha256 is ``expected`` (atomic rename)."""
    what = what or str(target)
    digest = hashlib.sha256()
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
                while block := response.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != expected:
                raise InputError(
                    f"{what}: download from {url} has sha256 {digest.hexdigest()}, expected {expected}; "
                    "nothing was saved (the source changed or the transfer was corrupted)"
                )
    except (urllib.error.URLError, OSError) as exc:
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        raise InputError(
            f"{what}: not found locally and the download from {url} failed ({reason}). On an offline machine, "
            f"copy the file into {target.parent} or a folder on DISTILLAB_DATA_DIR"
        ) from None
    return target
