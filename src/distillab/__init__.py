"""distillab: cache a teacher once, train students under a controlled comparison, audit what transferred."""

from distillab.lazy import lazy_exports

__version__ = "0.1.0"

# Imported on first use: the CLI imports this package and must not pay for torch.
_LAZY = {"load_student": "distillab.serve"}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
