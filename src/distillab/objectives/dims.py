"""The sizes objectives resolve against, read from configs and manifests only (no weights loaded).

``distillab validate`` uses this so that a layer outside a model, a feature a cache lacks, heads
that do not divide or a missing live teacher are reported before any training; the trainer
resolves the same objectives again against the loaded student, cache and teacher.
"""

from __future__ import annotations

from distillab.objectives.base import Dims


def dims_from_config(config) -> Dims:
    """Dims of an :class:`~distillab.config.ExperimentConfig`'s student, teacher cache and live teacher."""
    from distillab.config import resolve_builtin

    train = config.train_config()
    if train.student == "bow":
        student = {"student_layers": 1, "student_width": train.bow_dim, "student_ngrams": train.bow_ngrams,
                   "student_buckets": train.bow_buckets}
    else:
        from distillab.train.students import parse_layers

        hf = hf_config(train.student)
        layers = len(parse_layers(train.student_layers, hf.num_hidden_layers)) if train.student_layers \
            else hf.num_hidden_layers
        student = {"student_layers": layers, "student_width": hf.hidden_size, "student_tokens": True,
                   "student_heads": hf.num_attention_heads, "student_base_layers": hf.num_hidden_layers}
    cached = {}
    spec = config.teacher
    if spec.cache:
        from distillab.teacher.cache import read_manifest

        manifest = read_manifest(resolve_builtin(spec.cache))
        pooled = {e["layer"]: e["width"] for e in manifest.get("features") or [] if e.get("pooling") == "mean"}
        if pooled:
            cached = {"teacher_layers": manifest.get("teacher_layers") or 0, "teacher_pooled": pooled}
    elif spec.model and spec.features:
        from distillab.pypi_models import resolve_model_ref

        teacher = hf_config(resolve_model_ref(spec.model))
        layers = [teacher.num_hidden_layers if name == "pooled.last" else int(name.partition(".")[2])
                  for name in spec.features if name.partition(".")[2].isdigit() or name == "pooled.last"]
        cached = {"teacher_layers": teacher.num_hidden_layers,
                  "teacher_pooled": {layer: teacher.hidden_size for layer in layers}}
    live = {}
    if train.live_teacher:
        from distillab.pypi_models import resolve_model_ref

        hf = hf_config(resolve_model_ref(train.live_teacher))
        live = {"live_layers": hf.num_hidden_layers, "live_width": hf.hidden_size, "live_heads": hf.num_attention_heads}
    return Dims(**student, **cached, **live)


def hf_config(source: str):
    from transformers import AutoConfig

    from distillab.errors import InputError

    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise InputError(f"{source}: cannot read its config.json ({' '.join(str(exc).split())})") from None


def check_token_alignment(config) -> None:
    """Tokenize the training split with the student's and the live teacher's tokenizers and refuse the first row
    whose pieces differ by position (what the trainer checks before training), without loading any weights."""
    from distillab.data import load_dataset
    from distillab.pypi_models import resolve_model_ref
    from distillab.train.live_teacher import check_aligned

    train = config.train_config()
    split = load_dataset(config.data).splits[train.train_split]
    student, teacher = _tokenizer(train.student), _tokenizer(resolve_model_ref(train.live_teacher))
    cut = {"truncation": True, "max_length": train.max_length}
    check_aligned(student, student(split.texts, **cut)["input_ids"], teacher, teacher(split.texts, **cut)["input_ids"],
                  split.ids)


def _tokenizer(source: str):
    from transformers import AutoTokenizer

    from distillab.errors import InputError

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise InputError(f"{source}: cannot load its tokenizer ({' '.join(str(exc).split())})") from None
