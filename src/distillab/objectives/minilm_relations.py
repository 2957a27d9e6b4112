"""``minilm_relations`` (MiniLM / MiniLMv2): KL between teacher and student self-attention
relations — softmax(X Xᵀ/√d) of the queries, keys and values split into ``relation_heads`` heads —
of mapped blocks (MiniLMv2: one upper teacher block to the student's last). Relation heads let the
widths differ without a projection; ``relation_heads`` must divide both widths.
"""

from __future__ import annotations

from distillab.objectives.base import Reads, Setting, positive_int
from distillab.objectives.pooled import layer_spec
from distillab.objectives.tokens import TokenObjective

RELATIONS = ("qq", "kk", "vv", "qk", "kq", "qv", "vq", "kv", "vk")


def relation_list(value) -> str | None:
    parts = value.split("/") if isinstance(value, str) else None
    if parts and all(p in RELATIONS for p in parts) and len(set(parts)) == len(parts):
        return None
    return f"must be relations joined by '/', each one of {', '.join(RELATIONS)} (e.g. qq/kk/vv)"


class MiniLMRelations(TokenObjective):
    name = "minilm_relations"
    family = "relation"
    settings = {
        "layers": Setting("last:1", layer_spec, "which student blocks match which teacher blocks"),
        "relation_heads": Setting(12, positive_int, "heads the Q/K/V are split into for the relations"),
        "relations": Setting("qq/kk/vv", relation_list, "which relations to match (MiniLMv2: qq/kk/vv)"),
    }

    def reads(self) -> Reads:
        return Reads(student_qkv=True, live_qkv=True)

    def shape_problems(self, dims) -> list[str]:
        heads = self.values["relation_heads"]
        return [f"{self.name}: relation_heads={heads} must divide the {who} width {width}"
                for who, width in (("student", dims.student_width), ("teacher", dims.live_width))
                if isinstance(heads, int) and heads > 0 and width % heads]

    def loss(self, step, bound):
        from distillab.losses.features import minilm_relations

        relations = tuple(self.values["relations"].split("/"))
        terms = [minilm_relations({k: v.float() for k, v in step.qkv[s].items()},
                                  {k: v.float() for k, v in step.live.qkv[t].items()},
                                  relation_heads=self.values["relation_heads"], mask=step.mask, relations=relations)
                 for s, t in bound.pairs]
        return sum(terms) / len(terms)


OBJECTIVE = MiniLMRelations
