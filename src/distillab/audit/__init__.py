"""The audit: metrics, tiers, paired bootstrap, temperature scaling, coverage and transfer tests.

``distillab.audit.audit(...)`` is the Python API behind ``distillab audit``. It is imported lazily
so that the CLI (which imports this package to register the command) stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["audit", "make_example"]


def __getattr__(name: str) -> Any:
    if name == "audit":
        from distillab.audit.core import audit

        return audit
    if name == "make_example":
        from distillab.audit.example import make_example

        return make_example
    raise AttributeError(f"module 'distillab.audit' has no attribute {name!r}")
