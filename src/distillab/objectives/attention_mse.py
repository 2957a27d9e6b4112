"""``attention_mse``: mean squared difference between mapped layers' attention maps (TinyBERT's
variant on probabilities), over real query/key positions; heads grouped as in ``attention_kl``.
"""

from __future__ import annotations

from distillab.objectives.attention_kl import head_problems
from distillab.objectives.base import Reads, Setting
from distillab.objectives.pooled import layer_spec
from distillab.objectives.tokens import TokenObjective


class AttentionMSE(TokenObjective):
    name = "attention_mse"
    family = "attention"
    settings = {"layers": Setting("uniform", layer_spec, "which student blocks match which teacher blocks")}

    def reads(self) -> Reads:
        return Reads(student_attentions=True, live_attentions=True)

    def shape_problems(self, dims) -> list[str]:
        return head_problems(self.name, dims)

    def loss(self, step, bound):
        from distillab.losses.features import attention_mse

        terms = [attention_mse(step.attentions[s].float(), step.live.attentions[t].float(), mask=step.mask)
                 for s, t in bound.pairs]
        return sum(terms) / len(terms)


OBJECTIVE = AttentionMSE
