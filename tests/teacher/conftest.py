"""Fixtures for the teacher tests; the helpers they use live in teacher_helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from teacher_helpers import CLASSES, build_tiny_bert, build_tiny_llama, make_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), id2label=dict(enumerate(CLASSES)))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def dataset():
    return make_dataset()
