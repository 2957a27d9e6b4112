"""``hidden_mse`` (FitNets; TinyBERT's hidden-state loss): a learned linear projection of each mapped
student layer to the teacher's width, then the MSE to the teacher's state. Pooled (default): the
student's mean-pooled state vs the cache's ``pooled.L`` feature. ``tokens: true``: every real token's
state vs a live teacher's at the same position (``training.live_teacher``). ``normalize: true``
L2-normalises both first (the cosine objective). The projections are the objective's extras:
trained with the student, never exported with it.
"""

from __future__ import annotations

from distillab.objectives.base import Bound, Dims, Reads, Setting, boolean
from distillab.objectives.pooled import LAYERS, PooledObjective, feature_name
from distillab.objectives.tokens import TokenObjective


class HiddenMSE(PooledObjective):
    name = "hidden_mse"
    family = "hidden"
    settings = {
        "layers": LAYERS,
        "normalize": Setting(False, boolean, "L2-normalise student and teacher states first (cosine)"),
        "tokens": Setting(False, boolean, "every token against a live teacher's, instead of pooled vs the cache"),
    }
    quiet_defaults = ("tokens",)

    def reads(self) -> Reads:
        return Reads(student_hidden=True, live_hidden=True) if self.values["tokens"] else super().reads()

    def resolve(self, dims: Dims) -> list[str]:
        return TokenObjective.resolve(self, dims) if self.values["tokens"] else super().resolve(dims)

    def pairs(self, dims: Dims) -> tuple[tuple[int, int], ...]:
        if self.values["tokens"]:  # hidden_states indices of both models
            return tuple((s + 1, t + 1) for s, t in TokenObjective.pairs(self, dims))
        return super().pairs(dims)

    def features(self, dims: Dims) -> tuple[str, ...]:
        return () if self.values["tokens"] else super().features(dims)

    def bind(self, dims: Dims) -> Bound:
        from torch import nn

        pairs = self.pairs(dims)
        width = (lambda t: dims.live_width) if self.values["tokens"] else (lambda t: dims.teacher_pooled[t])
        projections = nn.ModuleList(nn.Linear(dims.student_width, width(t)) for _, t in pairs)
        return Bound(pairs=pairs, extras=projections)

    def loss(self, step, bound):
        from distillab.losses.features import hidden_mse

        normalize = self.values["normalize"]
        if self.values["tokens"]:
            terms = [hidden_mse(projection(step.hidden[s].float()), step.live.hidden[t].float(), mask=step.mask,
                                normalize=normalize) for (s, t), projection in zip(bound.pairs, bound.extras)]
        else:
            terms = [hidden_mse(projection(step.pooled(s)), step.teacher[feature_name(t)], normalize=normalize)
                     for (s, t), projection in zip(bound.pairs, bound.extras)]
        return sum(terms) / len(terms)


OBJECTIVE = HiddenMSE
