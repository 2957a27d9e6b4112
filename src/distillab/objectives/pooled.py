"""Layer pairs for objectives that match the student's pooled hidden states to cached teacher features.

Layers are numbered as Hugging Face's ``hidden_states`` (0 = embeddings, 1..L = the blocks); the
bow student has one block, its bag mean. ``layers`` maps student blocks to teacher blocks with
:func:`distillab.losses.features.layer_map` (``uniform``, ``last:K`` or an explicit list); each
mapped teacher block ``t`` is read from the cache's ``pooled.t`` feature, which
``distillab teacher --features pooled.t`` writes.
"""

from __future__ import annotations

from distillab.errors import ConfigError
from distillab.objectives.base import Dims, Objective, Reads, Setting


def layer_spec(value) -> str | None:
    if isinstance(value, str) or (isinstance(value, list) and value):
        return None
    return "must be 'uniform', 'last:K' or a list of teacher layers (or [student, teacher] pairs)"


LAYERS = Setting("last:1", layer_spec, "which student blocks match which teacher blocks")


class PooledObjective(Objective):
    """Base of objectives on (student pooled state, cached teacher feature) pairs."""

    def reads(self) -> Reads:
        return Reads(student_hidden=True, teacher_features=True)

    def pairs(self, dims: Dims) -> tuple[tuple[int, int], ...]:
        """(student hidden_states index, teacher layer) pairs; raises ConfigError naming the problem."""
        from distillab.losses.features import layer_map

        if not dims.teacher_pooled:
            raise ConfigError("the teacher cache has no pooled features; build it with "
                              "distillab teacher --features pooled.L")
        spec = self.values["layers"]
        mapped = layer_map(spec, dims.student_layers, dims.teacher_layers)
        return tuple((s + 1, t + 1) for s, t in mapped)

    def resolve(self, dims: Dims) -> list[str]:
        try:
            pairs = self.pairs(dims)
        except ConfigError as exc:
            return [f"{self.name}: layers={self.values['layers']!r}: {exc}"]
        missing = sorted({t for _, t in pairs if t not in dims.teacher_pooled})
        if missing:
            have = ", ".join(f"pooled.{t}" for t in sorted(dims.teacher_pooled))
            return [f"{self.name}: layers={self.values['layers']!r} needs teacher feature pooled.{missing[0]}, "
                    f"which the cache lacks (it has {have}); add it with distillab teacher --features"]
        return []


    def features(self, dims: Dims) -> tuple[str, ...]:
        return tuple(feature_name(t) for _, t in self.pairs(dims))


def feature_name(layer: int) -> str:
    return f"pooled.{layer}"
