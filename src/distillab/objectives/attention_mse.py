"""``attention_mse``: mean squared difference between mapped layers' attention maps (TinyBERT's
variant on probabilities), over real query/key positions; heads grouped as in ``attention_kl``.
"""

from __future__ import annotations

from distillab.objectives.attention_kl import AttentionKL


class AttentionMSE(AttentionKL):
    name = "attention_mse"


OBJECTIVE = AttentionMSE
