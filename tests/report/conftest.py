"""Fixtures for the report tests; the helpers they use live in report_helpers.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from report_helpers import FIXTURES  # noqa: E402


@pytest.fixture
def write_audit(tmp_path):
    """Write an audit dict to ``tmp_path/name/audit.json`` and return the directory."""

    def write(audit: dict, name: str = "audit") -> Path:
        out = tmp_path / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "audit.json").write_text(json.dumps(audit))
        return out

    return write


@pytest.fixture
def small_audit() -> dict:
    return json.loads((FIXTURES / "audit_small.json").read_text())
