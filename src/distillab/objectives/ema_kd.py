"""``ema_kd`` (mean-teacher self-distillation): KD toward an exponential moving average of the student
itself, ``ema ← decay·ema + (1 − decay)·student`` after every optimizer step (Tarvainen & Valpola;
the "EMA teacher" of self-distillation). No teacher cache is read: the target is the student's own
smoothed past. The moving average is saved beside the student (``arms/NAME/ema/``) with its own
predictions, so the audit compares it too (arm ``NAME-ema``).
"""

from __future__ import annotations

from distillab.objectives.base import Objective, Reads, Setting, open_unit_interval, positive, unit_interval


class EMAKD(Objective):
    name = "ema_kd"
    family = "self"
    settings = {
        "decay": Setting(0.99, open_unit_interval, "moving-average decay per optimizer step"),
        "T": Setting(1.0, positive, "softening temperature of both distributions"),
        "alpha": Setting(0.5, unit_interval, "weight of the KL term; 1 - alpha weighs the CE term"),
    }

    def reads(self) -> Reads:
        return Reads(ema_logits=True)

    def loss(self, step, bound):
        from distillab import losses

        v = self.values
        return losses.kd_loss(step.logits, step.ema_logits, step.labels, T=v["T"], alpha=v["alpha"])


OBJECTIVE = EMAKD
