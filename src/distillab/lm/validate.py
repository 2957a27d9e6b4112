"""``distillab validate`` for a ``kind: lm`` config: the schema (checked on loading), the dataset spec, and,
when the student is a model of its own, that its tokenizer is the teacher's (tokenizers only, no weights)."""

from __future__ import annotations

from distillab.lm.config import LMConfig


def validate_lm(config: LMConfig) -> str:
    """The one-line verdict; a problem raises a :class:`~distillab.errors.DistillabError` instead."""
    from distillab.data.load import check_spec
    from distillab.errors import InputError

    check_spec(dict(config.data), where=f"{config.source}: data")
    if config.student["model"]:
        from transformers import AutoTokenizer

        from distillab.lm.models import resolve_teacher, vocabulary_problem

        path, gguf = resolve_teacher(config.teacher["model"], config.teacher["gguf_file"])
        try:
            teacher = AutoTokenizer.from_pretrained(path, **({"gguf_file": gguf} if gguf else {}))
            student = AutoTokenizer.from_pretrained(config.student["model"])
        except (OSError, ValueError) as exc:
            raise InputError(f"{config.source}: cannot load a tokenizer: {str(exc).splitlines()[0]}") from None
        problem = vocabulary_problem(teacher, student)
        if problem:
            raise InputError(f"{config.source}: student.model {config.student['model']}: the student's tokenizer is "
                             f"not the teacher's: {problem}")
    arms = ", ".join(f"{arm.name} ({arm.loss})" for arm in config.arms)
    return f"{config.source}: valid LM config ({len(config.arms)} arms: {arms}; output: {config.output_dir})"
