"""``online_kd`` (online distillation, as in Anil et al. 2018 and Guo et al. 2020's setting): a *larger* model
trained beside the student on the same rows, from scratch or from pretrained weights, is the student's
teacher as it learns. The student's KD target is the online teacher's current prediction, detached, so
the teacher learns from its own loss alone (cross-entropy, or label smoothing) and no teacher cache is
needed. For ``warmup_steps`` optimizer steps the student trains on CE only while the teacher trains.

The teacher's size: for the bag-of-n-grams student a wider table (``teacher_dim``, default twice the
student's) and/or longer n-grams (``teacher_ngrams``); for a transformer student more layers of the
same checkpoint (``teacher_layers``, default all of them) or another model (``teacher_model``). It must
be bigger (no smaller in any size, larger in one). It is built under the run's seed on an RNG of its own,
featurises the rows itself, is optimised with the student, and is saved and audited beside it
(``arms/NAME/online``, arm ``NAME-online``).
"""

from __future__ import annotations

from distillab.objectives.base import (
    Bound, Dims, Objective, Reads, Setting, below_one, non_negative_int, one_of, positive, unit_interval,
)

TEACHER_LOSSES = ("ce", "label_smoothing")


def _ngrams(value) -> str | None:
    # An integer (a YAML 3.0 would pass ``in (0, 1, 2, 3)`` and fail later in the hasher's range()).
    ok = non_negative_int(value) is None and value <= 3
    return None if ok else "must be 0 (the student's), 1, 2 or 3"


def _text(value) -> str | None:
    return None if isinstance(value, str) else "must be a model folder or Hub id (or empty: the student's base)"


class OnlineKD(Objective):
    name = "online_kd"
    family = "peer"
    settings = {
        "T": Setting(4.0, positive, "softening temperature of both distributions"),
        "alpha": Setting(0.7, unit_interval, "weight of the student's KL to the online teacher; 1 - alpha weighs its CE"),
        "teacher_loss": Setting("ce", one_of(*TEACHER_LOSSES), "the online teacher's own loss on the gold labels"),
        "teacher_epsilon": Setting(0.1, below_one, "the online teacher's label smoothing (teacher_loss=label_smoothing)"),
        "warmup_steps": Setting(0, non_negative_int, "optimizer steps of CE only for the student, while the teacher trains"),
        "teacher_dim": Setting(0, non_negative_int, "bow: the teacher's embedding width (0: twice the student's)"),
        "teacher_ngrams": Setting(0, _ngrams, "bow: the teacher's longest word n-gram (0: the student's)"),
        "teacher_layers": Setting(0, non_negative_int, "transformer: the teacher's layers, the first of its checkpoint "
                                                       "(0: all)"),
        "teacher_model": Setting("", _text, "transformer: the teacher's checkpoint (empty: the student's own)"),
    }
    quiet_defaults = ("teacher_epsilon", "teacher_dim", "teacher_ngrams", "teacher_layers", "teacher_model")

    def reads(self) -> Reads:
        return Reads(online=True)

    def resolve(self, dims: Dims) -> list[str]:
        try:
            self._size(dims)
        except ValueError as exc:
            return [f"{self.name}: {exc}"]
        return []

    def bind(self, dims: Dims) -> Bound:
        student, model = dims.new_sized_student(**self._size(dims))
        return Bound(extras=model.train(), student=student)  # from_pretrained hands models back in eval mode

    def loss(self, step, bound):
        from distillab import losses
        from distillab.train.predict import model_logits

        v = self.values
        teacher = model_logits(bound.extras(**step.online_inputs)).float()
        smoothing = v["teacher_epsilon"] if v["teacher_loss"] == "label_smoothing" else 0.0
        own = losses.cross_entropy(teacher, step.labels, label_smoothing=smoothing)
        if step.step < v["warmup_steps"]:
            return losses.cross_entropy(step.logits, step.labels) + own
        return losses.kd_loss(step.logits, teacher.detach(), step.labels, T=v["T"], alpha=v["alpha"]) + own

    def _size(self, dims: Dims) -> dict:
        """The online teacher's size as changes to the student's (``sized_student``); ValueError if not bigger."""
        v = self.values
        if not dims.student_tokens:
            if v["teacher_layers"] or v["teacher_model"]:
                raise ValueError("teacher_layers and teacher_model are for a transformer student; size a bow "
                                 "student's online teacher with teacher_dim and teacher_ngrams")
            return _bow_size(dims, v["teacher_dim"] or 2 * dims.student_width, v["teacher_ngrams"] or dims.student_ngrams)
        if v["teacher_dim"] or v["teacher_ngrams"]:
            raise ValueError("teacher_dim and teacher_ngrams are for the bow student; size a transformer's online "
                             "teacher with teacher_layers (and teacher_model)")
        return _transformer_size(dims, v["teacher_layers"], v["teacher_model"])


def _bow_size(dims: Dims, dim: int, ngrams: int) -> dict:
    from distillab.train.config import MAX_BOW_DIM, MAX_BOW_TABLE

    if dim > MAX_BOW_DIM or dims.student_buckets * dim > MAX_BOW_TABLE:
        raise ValueError(f"teacher_dim={dim}: a {dims.student_buckets:,} x {dim} table is beyond bow_dim's limits "
                         f"(at most {MAX_BOW_DIM:,} wide and {MAX_BOW_TABLE:,} floats)")
    width, grams = dims.student_width, dims.student_ngrams
    if dim < width or ngrams < grams or (dim, ngrams) == (width, grams):
        raise ValueError(f"the online teacher (bow_dim {dim}, {ngrams}-grams) is not bigger than the student "
                         f"(bow_dim {width}, {grams}-grams); give a larger teacher_dim or teacher_ngrams")
    return {"dim": dim, "ngrams": ngrams}


def _transformer_size(dims: Dims, layers: int, model: str) -> dict:
    if model:
        from distillab.objectives.dims import hf_config
        from distillab.pypi_models import resolve_model_ref

        model = resolve_model_ref(model)
        config = hf_config(model)
        total, width, where = config.num_hidden_layers, config.hidden_size, f"teacher_model {model!r}"
    else:
        total, width, where = dims.student_base_layers, dims.student_width, "the student's checkpoint"
    layers = layers or total
    if layers > total:
        raise ValueError(f"teacher_layers={layers}: {where} has {total} layers")
    if layers < dims.student_layers or width < dims.student_width or (layers, width) == (dims.student_layers,
                                                                                         dims.student_width):
        raise ValueError(f"the online teacher ({layers} layers of width {width}) is not bigger than the student "
                         f"({dims.student_layers} layers of width {dims.student_width}); give more teacher_layers "
                         "or a larger teacher_model")
    return {"source": model or None, "layers": layers}


OBJECTIVE = OnlineKD
