"""``rkd`` (Park et al., relational KD): match the distances and angles between a batch's pooled
representations, student vs teacher. Only relations are compared, so widths may differ and no
projection is trained. Weights as in the authors' code (distance 1, angle 2) scaled by the arm.
"""

from __future__ import annotations

from distillab.objectives.base import Bound, Dims, Setting, non_negative
from distillab.objectives.pooled import LAYERS, PooledObjective, feature_name


class RKD(PooledObjective):
    name = "rkd"
    family = "relation"
    settings = {
        "layers": LAYERS,
        "distance_weight": Setting(1.0, non_negative, "weight of the distance-wise term"),
        "angle_weight": Setting(2.0, non_negative, "weight of the angle-wise term"),
    }

    def bind(self, dims: Dims) -> Bound:
        return Bound(pairs=self.pairs(dims))

    def loss(self, step, bound):
        from distillab.losses.features import rkd

        v = self.values
        terms = [rkd(step.pooled(s), step.teacher[feature_name(t)], distance_weight=v["distance_weight"],
                     angle_weight=v["angle_weight"]) for s, t in bound.pairs]
        return sum(terms) / len(terms)


OBJECTIVE = RKD
