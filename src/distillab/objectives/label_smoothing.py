"""``label_smoothing``: cross-entropy against gold labels smoothed by ``epsilon`` (blog 08: 0.1)."""

from __future__ import annotations

from distillab.objectives.base import Objective, Setting, below_one


class LabelSmoothing(Objective):
    name = "label_smoothing"
    family = "logits"
    settings = {"epsilon": Setting(0.1, below_one, "mass spread uniformly over all classes")}

    def loss(self, step, bound):
        from distillab.losses import cross_entropy

        return cross_entropy(step.logits, step.labels, label_smoothing=self.values["epsilon"])


OBJECTIVE = LabelSmoothing
