"""``hidden_mse`` (FitNets; TinyBERT's hidden-state loss): a learned linear projection of each mapped
student layer to the teacher's width, then the MSE to the teacher's cached pooled feature.
``normalize: true`` L2-normalises both first (the cosine objective). The projections are the
objective's extras: trained with the student, never exported with it.
"""

from __future__ import annotations

from distillab.objectives.base import Bound, Dims, Setting, boolean
from distillab.objectives.pooled import LAYERS, PooledObjective, feature_name


class HiddenMSE(PooledObjective):
    name = "hidden_mse"
    family = "hidden"
    settings = {
        "layers": LAYERS,
        "normalize": Setting(False, boolean, "L2-normalise student and teacher states first (cosine)"),
    }

    def bind(self, dims: Dims) -> Bound:
        from torch import nn

        pairs = self.pairs(dims)
        projections = nn.ModuleList(nn.Linear(dims.student_width, dims.teacher_pooled[t]) for _, t in pairs)
        return Bound(pairs=pairs, extras=projections)

    def loss(self, step, bound):
        from distillab.losses.features import hidden_mse

        terms = [hidden_mse(projection(step.pooled(s)), step.teacher[feature_name(t)],
                            normalize=self.values["normalize"])
                 for (s, t), projection in zip(bound.pairs, bound.extras)]
        return sum(terms) / len(terms)


OBJECTIVE = HiddenMSE
