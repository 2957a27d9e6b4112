"""``attention_transfer`` (Zagoruyko & Komodakis): match the normalised activation-based attention
map (mean over the width of |h|^p per token) of mapped blocks; widths may differ, nothing is trained.
"""

from __future__ import annotations

from distillab.objectives.base import Reads, Setting, positive
from distillab.objectives.pooled import layer_spec
from distillab.objectives.tokens import TokenObjective


class AttentionTransfer(TokenObjective):
    name = "attention_transfer"
    family = "attention"
    settings = {
        "layers": Setting("uniform", layer_spec, "which student blocks match which teacher blocks"),
        "p": Setting(2.0, positive, "the power of |h| averaged over the width"),
    }

    def reads(self) -> Reads:
        return Reads(student_hidden=True, live_hidden=True)

    def loss(self, step, bound):
        from distillab.losses.features import attention_transfer

        terms = [attention_transfer(step.hidden[s + 1].float(), step.live.hidden[t + 1].float(), mask=step.mask,
                                    p=self.values["p"]) for s, t in bound.pairs]
        return sum(terms) / len(terms)


OBJECTIVE = AttentionTransfer
