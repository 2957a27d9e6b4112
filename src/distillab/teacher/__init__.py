"""Teacher stage: run a teacher once, keep its outputs in a fingerprinted cache, read them by row id.

Attributes load lazily so ``import distillab.teacher`` (and the CLI) stay fast; torch and
transformers are imported only when a runner actually runs.
"""

from __future__ import annotations

from distillab.lazy import lazy_exports

# Rows per shard: small enough that a killed run loses little work, large enough that a 100k-row
# cache stays at ~100 files. Defined here, not in cache.py, so the CLI can show it without numpy.
DEFAULT_SHARD_ROWS = 1024

_LAZY = {
    "TeacherCache": "distillab.teacher.cache",
    "CacheWriter": "distillab.teacher.cache",
    "cache_classifier": "distillab.teacher.hf_classifier",
    "cache_causal_lm": "distillab.teacher.causal_lm",
    "import_logits": "distillab.teacher.importer",
    "summarize": "distillab.teacher.summary",
    "compare_caches": "distillab.teacher.compare",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
