"""``crd_lite``: in-batch contrastive representation distillation (InfoNCE). Student and teacher
pooled representations are projected to a shared ``dim`` by two trained heads (CRD's embeddings),
and each student row must pick its own teacher row among the batch's. No memory bank (hence
"lite"): the negatives are the other rows of the micro-batch.
"""

from __future__ import annotations

from distillab.objectives.base import Bound, Dims, Setting, positive, positive_int

MAX_DIM = 65_536  # two Linear heads of this width: a typo like dim=1e9 is refused, not allocated


def at_most(limit: int):
    def check(value) -> str | None:
        return positive_int(value) or (None if value <= limit else f"must be at most {limit:,}")

    return check
from distillab.objectives.pooled import LAYERS, PooledObjective, feature_name


class CRDLite(PooledObjective):
    name = "crd_lite"
    family = "relation"
    settings = {
        "layers": LAYERS,
        "temperature": Setting(0.07, positive, "InfoNCE temperature"),
        "dim": Setting(128, at_most(MAX_DIM), "width of the shared embedding"),
    }

    def bind(self, dims: Dims) -> Bound:
        from torch import nn

        pairs = self.pairs(dims)
        heads = nn.ModuleList(
            nn.ModuleDict({"student": nn.Linear(dims.student_width, self.values["dim"]),
                           "teacher": nn.Linear(dims.teacher_pooled[t], self.values["dim"])})
            for _, t in pairs)
        return Bound(pairs=pairs, extras=heads)

    def loss(self, step, bound):
        from distillab.losses.features import crd_lite

        terms = [crd_lite(head["student"](step.pooled(s)), head["teacher"](step.teacher[feature_name(t)]),
                          temperature=self.values["temperature"])
                 for (s, t), head in zip(bound.pairs, bound.extras)]
        return sum(terms) / len(terms)


OBJECTIVE = CRDLite
