"""``dml`` (deep mutual learning, Zhang et al. 2018): two students of the same architecture, from
different initial weights, trained together on the same rows; each minimises its own CE on the gold
labels plus the KL to the other's detached, softened prediction. The peer is this objective's extra:
optimised with the student, checkpointed, and saved and audited beside it (``arms/NAME/peer``,
arm ``NAME-peer``), so the report shows each peer. Replications find DML's gain often within seed
noise; run it on several seeds (``training.seeds``).
"""

from __future__ import annotations

from distillab.objectives.base import Bound, Dims, Objective, Reads, Setting, positive, unit_interval


class DML(Objective):
    name = "dml"
    family = "peer"
    settings = {
        "T": Setting(1.0, positive, "softening temperature of both peers' distributions"),
        "alpha": Setting(0.5, unit_interval, "weight of each peer's KL to the other; 1 - alpha weighs its CE"),
    }

    def reads(self) -> Reads:
        return Reads(peer=True)

    def bind(self, dims: Dims) -> Bound:
        return Bound(extras=dims.new_student())  # built right after the student: another draw of the seeded RNG

    def loss(self, step, bound):
        from distillab import losses
        from distillab.train.predict import model_logits

        v = self.values
        student, peer = step.logits, model_logits(bound.extras(**step.inputs)).float()
        return (losses.kd_loss(student, peer.detach(), step.labels, T=v["T"], alpha=v["alpha"])
                + losses.kd_loss(peer, student.detach(), step.labels, T=v["T"], alpha=v["alpha"]))


OBJECTIVE = DML
