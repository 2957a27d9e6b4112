"""Language-model distillation (issue 14): causal-LM students, token- and sequence-level KD, on-policy GKD,
and the held-out audit and report of the students they train.

Each module is imported by name (``distillab.lm.models``, ``distillab.lm.pipeline``, ...); this package
exports nothing, so two engineers can add modules to it without touching a shared file.
"""
