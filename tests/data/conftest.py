"""Shared data for the data tests: the real files in ../shared/data, and R52 derived once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """First folder on DISTILLAB_DATA_DIR (CI sets it), else ../shared/data beside the repo."""
    value = os.environ.get("DISTILLAB_DATA_DIR", "")
    first = value.split(os.pathsep)[0] if value else ""
    return Path(first) if first else REPO.parent / "shared" / "data"


SHARED = shared_data_dir()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "reuters-r52" / "raw").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set DISTILLAB_DATA_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def r52(shared):
    """R52 derived from the 22 raw SGML files (a few seconds; done once)."""
    from distillab.data.lab import load_lab_dataset

    return load_lab_dataset("r52", data_dir=str(shared))
