"""``vanilla``: cross-entropy on the gold labels (the paired comparison's usual baseline)."""

from __future__ import annotations

from distillab.objectives.base import Objective


class Vanilla(Objective):
    name = "vanilla"
    family = "logits"

    def loss(self, step, bound):
        from distillab.losses import cross_entropy

        return cross_entropy(step.logits, step.labels)


OBJECTIVE = Vanilla
