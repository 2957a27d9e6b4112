"""``distillab run`` for a ``kind: lm`` config: corpus → teacher caches → seq-KD generations → students →
audit → report.

Everything that can be wrong with the inputs (dataset, tokenizers, context length, a reused cache made
for other text) is checked before the output folder is touched, so a refused run leaves nothing.
Each stage records the digest of its inputs in ``OUT/stamps/STAGE.json``; a stage whose stamp matches
is skipped (its outputs are read back), one whose inputs changed runs again, and so does every stage
that read its outputs, because their stamps include its fingerprints. Training does not checkpoint
mid-arm: a killed run redoes the arm it was in.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

from distillab.config import STAGES
from distillab.errors import InputError
from distillab.io import check_output_dir, read_json, write_json_atomic
from distillab.lm.config import LMConfig
from distillab.lm.models import (
    check_student,
    context_length,
    cut_student,
    load_lm,
    picked_layers,
    save_student,
)
from distillab.lm.seqkd import prompts_digest, teacher_generations
from distillab.lm.sequences import lm_texts, token_counts, tokenize
from distillab.lm.train import TrainData, train_arm
from distillab.pipeline import (
    _digest,
    _json_digest,
    _remove_temporary_files,
    _stamp_state,
    run_lock,
)
from distillab.pipeline import _stamp as _write_stamp


def run_lm(config: LMConfig, restart: str | None = None, verify_cache: bool = True) -> Path:
    """Run (or resume) the LM experiment; returns the path of ``report.html``."""
    redo = set(STAGES[STAGES.index(restart):]) if restart else set()
    started = time.perf_counter()
    if config.training["threads"]:
        import torch

        torch.set_num_threads(config.training["threads"])
    inputs = prepare(config)  # every check that can refuse the run, before anything is written
    out = config.output_path()
    check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        _remove_temporary_files(out)  # what a killed run's atomic writes left
        result = _stages(config, inputs, out, redo, verify_cache)
    _say("done", f"{time.perf_counter() - started:.0f} s → {result}")
    return result


def prepare(config: LMConfig) -> dict:
    """Load and check the corpus, the teacher and the student's tokenizer; nothing is written."""
    from distillab.data import load_dataset
    from distillab.data.dataset import TextDataset, TextSplit
    from distillab.teacher.fingerprint import teacher_fingerprint

    dataset = load_dataset(config.data)
    for split in (config.train_split, config.eval_split):
        if split not in dataset.splits:
            raise InputError(f"{config.source}: dataset {dataset.name!r} has no split {split!r} "
                             f"(splits: {', '.join(dataset.splits)})")
    _say("data", "loading the teacher")
    teacher, tokenizer, teacher_name = load_lm(config.teacher["model"], config.teacher["gguf_file"])
    teacher.requires_grad_(False)
    vocab = int(teacher.get_output_embeddings().weight.shape[0])
    seed = config.training["seed"]
    corpus, sequences = {}, {}
    for stream, (role, split, limit) in enumerate((("train", config.train_split, config.max_train_docs),
                                                   ("eval", config.eval_split, config.max_eval_docs))):
        rows = dataset.splits[split]
        if limit is not None and limit < len(rows):  # a seeded subset, kept in dataset order
            rows = rows.take(np.sort(np.random.default_rng([seed, stream]).permutation(len(rows))[:limit]))
        texts = lm_texts(rows.texts, tokenizer.eos_token if config.append_eos else None)
        corpus[role] = TextDataset(name=f"{dataset.name}-lm-{role}", classes=dataset.classes,
                                   splits={split: TextSplit(rows.ids, texts, rows.labels)}, source=dataset.source)
        sequences[role] = tokenize(tokenizer, texts, config.max_length, rows.ids,
                                   f"dataset {dataset.name!r}, split {split!r}")
    student = None
    if not config.student["model"]:  # a cut student: refused here, not after the teacher caches are written
        try:
            picked_layers(teacher, config.student["layers"])
        except InputError as exc:
            raise InputError(f"{config.source}: student.layers: {exc}") from None
    if config.student["model"]:
        student, student_tokenizer, _ = load_lm(config.student["model"])
        check_student(student, student_tokenizer, tokenizer, vocab, f"{config.source}: student.model {config.student['model']}")
    longest = max([config.max_length] + [a.settings["prompt_tokens"] + a.settings["new_tokens"]
                                         for a in config.arms if a.loss in ("seq_kd", "gkd")])
    for role, model in (("teacher", teacher), ("student", student)):
        context = context_length(model) if model is not None else None
        if context is not None and longest > context:
            raise InputError(f"{config.source}: sequences of up to {longest} tokens (max_length, or prompt_tokens + "
                             f"new_tokens of an arm) exceed the {role}'s context of {context} positions")
    caches = {kind: _open_given_cache(config, kind, corpus["train"], sequences["train"])
              for kind in ("topk", "sampled") if config.teacher[f"{kind}_cache"]}
    train = corpus["train"].splits[config.train_split]
    return {"teacher": teacher, "tokenizer": tokenizer, "teacher_name": teacher_name, "vocab": vocab,
            "teacher_record": teacher_fingerprint(teacher_name, teacher, tokenizer), "student": student,
            "corpus": corpus["train"], "row_ids": train.ids, "sequences": sequences["train"],
            "eval_sequences": sequences["eval"], "caches": caches}


def _open_given_cache(config: LMConfig, kind: str, corpus, sequences):
    from distillab.teacher.cache import TeacherCache

    cache = TeacherCache.open(config.teacher[f"{kind}_cache"])
    check_cache(cache, corpus, sequences, kind)
    return cache


def check_cache(cache, corpus, sequences: list[np.ndarray], kind: str) -> None:
    """Refuse a cache that is not a per-token ``kind`` cache of exactly these documents and tokens."""
    if cache.kind != kind or cache.manifest.get("tokens") is None:
        raise InputError(f"{cache.path}: a per-token {kind} cache of a causal LM is needed, this one is a "
                         f"{cache.kind} cache{'' if cache.manifest.get('tokens') else ' of whole texts'}")
    cache.check_matches(corpus)
    ids = next(iter(corpus.splits.values())).ids
    cached, counts = cache.input_ids(ids), cache.num_tokens(ids)
    for row, sequence in enumerate(sequences):
        n = len(sequence)
        if counts[row] != n or not np.array_equal(cached[row, :n], sequence):
            raise InputError(f"{cache.path}: row {row} (id {str(ids[row])!r}): the cached tokens are not the corpus's "
                             f"({int(counts[row])} cached, {n} now); the cache was made for other text or another "
                             "max_length / tokenizer")


def _stages(config: LMConfig, inputs: dict, out: Path, redo: set, verify_cache: bool) -> Path:
    teacher, tokenizer = inputs["teacher"], inputs["tokenizer"]
    data = TrainData(inputs["sequences"], tokenizer.pad_token_id, tokenizer.eos_token_id)
    fingerprints = {}
    for kind in ("topk", "sampled"):
        needed = config.needs_topk() if kind == "topk" else config.needs("sampled_kd")
        if not needed:
            continue
        cache = inputs["caches"].get(kind) or _cache_stage(config, inputs, out, kind, "teacher" in redo, verify_cache)
        fingerprints[kind] = cache.manifest["fingerprint"]
        ids = inputs["row_ids"]
        setattr(data, kind, cache.topk(ids) if kind == "topk" else cache.sampled(ids))
    data.generations = {}
    for arm in config.arms:
        if arm.loss == "seq_kd":
            _say("teacher", f"sequence-level KD generations for arm {arm.name}")
            folder = out / "generations" / arm.name
            data.generations[arm.name] = teacher_generations(
                folder, teacher, tokenizer, inputs["teacher_record"], inputs["row_ids"], inputs["sequences"],
                arm.settings, config.teacher["batch_size"], rebuild=True)
            fingerprints[f"generations:{arm.name}"] = read_json(folder / "manifest.json")["fingerprint"]
    data.teacher = teacher
    corpus_digest = prompts_digest(inputs["row_ids"], inputs["sequences"])
    students, arm_stamps, summary = {}, {}, {}
    for arm in config.arms:
        folder = out / "arms" / arm.name
        stamp_inputs = {"arm": arm.record(), "training": config.training, "student": config.student,
                        "corpus": corpus_digest, "teacher": inputs["teacher_record"],
                        "teacher_outputs": {k: v for k, v in fingerprints.items()
                                            if k == _reads(arm) or k == f"generations:{arm.name}"}}
        arm_stamps[arm.name] = _digest(stamp_inputs)
        if _fresh(out, f"arm-{arm.name}", stamp_inputs) and "train" not in redo:
            _say("train", f"arm {arm.name}: up to date")
            students[arm.name] = _load_student(folder / "model")
            summary[arm.name] = read_json(folder / "train_log.json")
            continue
        _stamp(out, f"arm-{arm.name}", stamp_inputs, complete=False)
        model = _new_student(config, inputs)
        _say("train", f"arm {arm.name} ({arm.loss}): {config.training['steps']} steps")
        log = train_arm(model, arm, data, config.training, progress=_progress(arm.name, config.training["steps"]))
        save_student(model, tokenizer, folder / "model")
        write_json_atomic(folder / "train_log.json", log)
        _stamp(out, f"arm-{arm.name}", stamp_inputs)
        students[arm.name], summary[arm.name] = model, log
        _say("train", f"arm {arm.name}: {log['seconds']:.0f} s, {log['tokens_per_second']:.0f} trained tokens/s, "
                      f"loss {log['loss_first']:.3f} → {log['loss_last10']:.3f}")
    write_json_atomic(out / "training.json", {name: {k: v for k, v in log.items() if k != "losses"}
                                              for name, log in summary.items()})
    return _audit_and_report(config, inputs, out, students, arm_stamps, redo)


def _reads(arm) -> str | None:
    return {"topk_kd": "topk", "topk_reverse_kl": "topk", "topk_jsd": "topk", "sampled_kd": "sampled"}.get(arm.loss)


def _cache_stage(config: LMConfig, inputs: dict, out: Path, kind: str, redo: bool, verify: bool):
    from distillab.teacher.cache import TeacherCache
    from distillab.teacher.causal_lm import cache_causal_lm

    path = out / f"teacher-{kind}"
    t = config.teacher
    stamp_inputs = {"teacher": inputs["teacher_record"], "corpus": inputs["corpus"].content_hash(),
                    "max_length": config.max_length, "batch_size": t["batch_size"],
                    **({"k": t["topk"]} if kind == "topk" else {"sampled": t["sampled"], "seed": t["seed"]})}
    state = _state(out, f"teacher-{kind}", stamp_inputs)
    if state != "done" or redo:
        _stamp(out, f"teacher-{kind}", stamp_inputs, complete=False)
        _say("teacher", f"{kind} cache of {len(inputs['sequences'])} documents → {path}")
        settings = {"k": t["topk"]} if kind == "topk" else {"sampled": t["sampled"], "seed": t["seed"]}
        cache_causal_lm(inputs["teacher"], inputs["corpus"], path, tokenizer=inputs["tokenizer"],
                        batch_size=t["batch_size"], max_length=config.max_length,
                        overwrite=state == "changed" or redo, **settings)
        _stamp(out, f"teacher-{kind}", stamp_inputs)
    cache = TeacherCache.open(path, verify=verify)
    check_cache(cache, inputs["corpus"], inputs["sequences"], kind)
    return cache


def _new_student(config: LMConfig, inputs: dict):
    """A fresh student for one arm: a copy of the one :func:`prepare` loaded and checked (not read again), or a cut."""
    if inputs["student"] is not None:
        return copy.deepcopy(inputs["student"])
    return cut_student(inputs["teacher"], config.student["layers"])


def _load_student(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).eval()


def _audit_and_report(config: LMConfig, inputs: dict, out: Path, students: dict, arm_stamps: dict, redo: set) -> Path:
    from distillab.lm.audit import audit_language_models
    from distillab.lm.report import render_lm_report

    audit_inputs = {"arms": arm_stamps, "eval": prompts_digest(range(len(inputs["eval_sequences"])),
                                                               inputs["eval_sequences"]),
                    "audit": config.audit, "teacher": inputs["teacher_record"]}
    if not _fresh(out, "audit", audit_inputs) or "audit" in redo:
        _stamp(out, "audit", audit_inputs, complete=False)
        _say("audit", f"{len(students)} students and the teacher on {len(inputs['eval_sequences'])} held-out documents")
        audit_language_models(teacher=inputs["teacher"], students=students, sequences=inputs["eval_sequences"],
                              train_token_counts=token_counts(inputs["sequences"], inputs["vocab"]),
                              baseline=config.audit["baseline"], out_dir=out / "audit",
                              n_resamples=config.audit["n_resamples"], seed=config.audit["seed"], bins=config.audit["bins"])
        _stamp(out, "audit", audit_inputs)
    report_inputs = {"audit": _json_digest(out / "audit" / "audit.json"), "title": config.report["title"]}
    if not _fresh(out, "report", report_inputs) or redo & {"audit", "report"}:
        _stamp(out, "report", report_inputs, complete=False)
        render_lm_report(audit_dir=out / "audit", out_dir=out / "report", title=config.report["title"])
        _stamp(out, "report", report_inputs)
    return out / "report" / "report.html"  # where render_lm_report writes it


# --------------------------------------------------------------------------- stamps
# The classification pipeline's stamps (same record, same digest incl. the tool version), one file per stage here.


def _state(out: Path, stage: str, inputs: dict) -> str | None:
    """"done", "started" (same inputs, unfinished), "changed" or None (never run)."""
    return _stamp_state(out / "stamps" / f"{stage}.json", inputs)


def _fresh(out: Path, stage: str, inputs: dict) -> bool:
    return _state(out, stage, inputs) == "done"


def _stamp(out: Path, stage: str, inputs: dict, complete: bool = True) -> None:
    _write_stamp(out / "stamps", inputs, complete, name=f"{stage}.json")


def _say(stage: str, message: str) -> None:
    print(f"[lm {stage}] {message}", file=sys.stderr, flush=True)


def _progress(name: str, steps: int):
    every = max(1, steps // 10)

    def report(step: int, loss: float, seconds: float) -> None:
        if step % every == 0 or step == steps - 1:
            _say("train", f"{name} step {step + 1}/{steps} loss {loss:.3f} ({seconds:.2f} s)")
    return report

