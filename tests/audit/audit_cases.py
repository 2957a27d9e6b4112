"""Long-tail synthetic predictions for the audit tests: K=113, absent classes, tied logits, empty bins."""

import numpy as np


def long_tail_case(seed: int = 0, n: int = 1500, k: int = 113, absent: int = 9):
    """Labels drawn from a Zipf-like prior with ``absent`` classes never occurring; logits with ties."""
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.arange(1, k + 1) ** 1.3
    prior[rng.choice(k, size=absent, replace=False)] = 0.0  # classes absent from y_true
    prior /= prior.sum()
    labels = rng.choice(k, size=n, p=prior)
    # Mostly-right logits with a head bias, rounded to fp16 so that ties occur.
    logits = rng.normal(0.0, 1.0, size=(n, k)) + 2.0 * np.log(prior + 1e-3)
    logits[np.arange(n), labels] += rng.normal(2.0, 1.5, size=n)
    logits = logits.astype(np.float16)
    logits[:5] = 0.0  # fully tied rows: argmax is class 0, confidence 1/K
    return logits, labels

