"""The audit: metrics, tiers, paired bootstrap, temperature scaling, coverage and transfer tests.

``distillab.audit.audit(...)`` is the Python API behind ``distillab audit``. It is imported lazily
so that the CLI (which imports this package to register the command) stays fast.
"""

from __future__ import annotations

from distillab.lazy import lazy_exports

__all__ = ["audit", "make_example"]

__getattr__, __dir__ = lazy_exports(
    __name__, {"audit": "distillab.audit.core", "make_example": "distillab.audit.example"}
)
