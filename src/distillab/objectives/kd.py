"""``kd``: Hinton KD, ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE`` (course: T=4, α=0.7).

Reads the cache's dense logits, or its top-k rows (``tail`` says how the mass outside the top k
is treated: renormalised away, or kept as one extra bucket).
"""

from __future__ import annotations

from distillab.objectives.base import Objective, Reads, Setting, one_of, positive, unit_interval

TAILS = ("renormalize", "bucket")  # distillab.losses.kd.TAIL_MODES, kept here so parsing needs no torch


class KD(Objective):
    name = "kd"
    family = "logits"
    settings = {
        "T": Setting(4.0, positive, "softening temperature of both distributions"),
        "alpha": Setting(0.7, unit_interval, "weight of the KL term; 1 - alpha weighs the CE term"),
        "tail": Setting("renormalize", one_of(*TAILS), "top-k caches: the mass outside the top k"),
    }
    quiet_defaults = ("tail",)

    def reads(self) -> Reads:
        return Reads(teacher_logits=True)

    def loss(self, step, bound):
        from distillab import losses

        v, teacher = self.values, step.teacher
        if "logits" in teacher:
            return losses.kd_loss(step.logits, teacher["logits"], step.labels, T=v["T"], alpha=v["alpha"])
        return losses.topk_kd_loss(step.logits, teacher["topk_ids"], teacher["topk_logprobs"],
                                   teacher["tail_logmass"], step.labels, T=v["T"], alpha=v["alpha"], tail=v["tail"])


OBJECTIVE = KD
