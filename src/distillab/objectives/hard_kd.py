"""``hard_kd``: cross-entropy on the teacher's argmax (weight ``alpha``) plus cross-entropy on gold."""

from __future__ import annotations

from distillab.objectives.base import Objective, Reads, Setting, unit_interval


class HardKD(Objective):
    name = "hard_kd"
    family = "logits"
    settings = {"alpha": Setting(0.7, unit_interval, "weight of the CE on the teacher's top class")}

    def reads(self) -> Reads:
        return Reads(teacher_logits=True)

    def loss(self, step, bound):
        from distillab import losses

        return losses.hard_kd_loss(step.logits, _teacher_scores(step.teacher, step.logits), step.labels,
                                   alpha=self.values["alpha"])


def _teacher_scores(teacher: dict, student_logits):
    """Dense scores whose argmax is the teacher's top class (top-k caches: their top-1)."""
    if "logits" in teacher:
        return teacher["logits"]
    import torch

    scores = torch.full_like(student_logits, float("-inf"), dtype=torch.float32)
    return scores.scatter(1, teacher["topk_ids"].long(), teacher["topk_logprobs"].float())


OBJECTIVE = HardKD
