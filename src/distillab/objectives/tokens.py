"""Layer pairs for objectives that match the student's token-level outputs to a live teacher's.

Blocks are numbered from 0; ``layers`` maps student blocks to teacher blocks with
:func:`distillab.losses.features.layer_map` (``uniform``: s -> round(s * L_t / L_s), ``last:K`` or
an explicit list). The teacher is ``training.live_teacher``, run in the loop on the same rows
(:mod:`distillab.train.live_teacher`), whose tokens are checked to align with the student's.
"""

from __future__ import annotations

from distillab.errors import ConfigError
from distillab.objectives.base import Bound, Dims, Objective


class TokenObjective(Objective):
    """Base of objectives on (student block, live teacher block) pairs."""

    def pairs(self, dims: Dims) -> tuple[tuple[int, int], ...]:
        from distillab.losses.features import layer_map

        return tuple(layer_map(self.values["layers"], dims.student_layers, dims.live_layers))

    def resolve(self, dims: Dims) -> list[str]:
        if not dims.student_tokens:
            return [f"{self.name}: reads token-level outputs, which the bow student does not have; "
                    "train a transformer student (training.student)"]
        if not dims.live_layers:
            return [f"{self.name}: needs a live teacher; set training.live_teacher to the teacher model"]
        try:
            self.pairs(dims)
        except ConfigError as exc:
            return [f"{self.name}: layers={self.values['layers']!r}: {exc}"]
        return self.shape_problems(dims)

    def bind(self, dims: Dims) -> Bound:
        return Bound(pairs=self.pairs(dims))
