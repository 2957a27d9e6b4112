"""``attention_kl`` (TinyBERT attention transfer): KL(teacher ‖ student) between the attention
distributions of mapped layers, padded queries and keys left out; when head counts differ the
larger side's heads are averaged in groups (refused when neither count divides the other).
"""

from __future__ import annotations

from distillab.objectives.base import Reads, Setting
from distillab.objectives.pooled import layer_spec
from distillab.objectives.tokens import TokenObjective


def head_problems(name: str, dims) -> list[str]:
    s, t = dims.student_heads, dims.live_heads
    if s and t and s % t and t % s:
        return [f"{name}: the student has {s} attention heads and the teacher {t}; one count must divide the other"]
    return []


class AttentionKL(TokenObjective):
    name = "attention_kl"
    family = "attention"
    settings = {"layers": Setting("uniform", layer_spec, "which student blocks match which teacher blocks")}

    def reads(self) -> Reads:
        return Reads(student_attentions=True, live_attentions=True)

    def shape_problems(self, dims) -> list[str]:
        return head_problems(self.name, dims)

    def loss(self, step, bound):
        from distillab.losses import features

        compare = getattr(features, self.name)  # attention_kl, or attention_mse for the subclass
        terms = [compare(step.attentions[s].float(), step.live.attentions[t].float(), mask=step.mask)
                 for s, t in bound.pairs]
        return sum(terms) / len(terms)


OBJECTIVE = AttentionKL
