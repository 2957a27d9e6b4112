"""Sequence-level KD (Kim & Rush 2016): the teacher's continuations of prompts, cached and fingerprinted.

The student later trains with plain CE on prompt + continuation (prompt positions masked). The
generations are a teacher output like any cache: ``DIR/manifest.json`` records a fingerprint of the
teacher (weights and tokenizer), the prompts (row ids and token ids) and every generation setting
that changes the tokens (prompt and continuation lengths, greedy or sampled, temperature, seed,
batch size). A directory whose fingerprint differs is never served: it is rebuilt when the caller
owns it, refused otherwise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from distillab.errors import FingerprintMismatch, InputError
from distillab.io import atomic_path, read_json, sha256_file, write_json_atomic
from distillab.lm.generate import generate

FORMAT = "distillab.lm_generations"
MANIFEST, ARRAYS = "manifest.json", "generations.npz"


def generation_settings(arm_settings: dict, batch_size: int) -> dict:
    """The settings the tokens depend on; a sampled run's temperature and seed, greedy's none of them."""
    keys = ("prompt_tokens", "new_tokens", "do_sample") + (("temperature", "seed") if arm_settings["do_sample"] else ())
    return {**{k: arm_settings[k] for k in keys}, "batch_size": int(batch_size)}


def prompts_digest(row_ids, prompts: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for row_id, prompt in zip(row_ids, prompts):
        digest.update(f"{row_id}\t{' '.join(map(str, np.asarray(prompt).tolist()))}\n".encode())
    return digest.hexdigest()


def generation_fingerprint(teacher: dict, row_ids, prompts, settings: dict) -> dict:
    """``teacher`` is :func:`distillab.teacher.fingerprint.teacher_fingerprint`'s record."""
    return {"format": FORMAT, "teacher": teacher, "prompts_sha256": prompts_digest(row_ids, prompts),
            "rows": len(prompts), "settings": settings}


def teacher_generations(folder: Path, model, tokenizer, teacher_record: dict, row_ids, sequences, arm_settings: dict,
                        batch_size: int = 8, rebuild: bool = True) -> tuple[list[np.ndarray], list[int]]:
    """(prompt + continuation per document, prompt lengths), from ``folder`` when it holds exactly these, else generated."""
    folder = Path(folder)
    prompts = [s[: min(arm_settings["prompt_tokens"], len(s) - 1)] for s in sequences]
    settings = generation_settings(arm_settings, batch_size)
    fingerprint = generation_fingerprint(teacher_record, row_ids, prompts, settings)
    if (folder / MANIFEST).exists():
        manifest = read_json(folder / MANIFEST)
        if manifest.get("fingerprint") == fingerprint:
            return _load(folder, manifest)
        if not rebuild:
            changed = [k for k in fingerprint if manifest.get("fingerprint", {}).get(k) != fingerprint[k]]
            raise FingerprintMismatch(f"{folder / MANIFEST}: generations were made with other {', '.join(changed)}; "
                                      "delete the folder or give another one")
        (folder / MANIFEST).unlink()
    generated = generate(model, prompts, new_tokens=arm_settings["new_tokens"], pad_id=tokenizer.pad_token_id,
                         eos_id=tokenizer.eos_token_id, do_sample=arm_settings["do_sample"],
                         temperature=arm_settings["temperature"], seed=arm_settings["seed"], batch_size=batch_size)
    lengths = [len(p) for p in prompts]
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / ARRAYS, suffix=".npz") as tmp:
        np.savez(tmp, tokens=np.concatenate(generated), offsets=np.cumsum([0] + [len(g) for g in generated]),
                 prompt_lengths=np.asarray(lengths, dtype=np.int64))
    write_json_atomic(folder / MANIFEST, {"fingerprint": fingerprint, "arrays_sha256": sha256_file(folder / ARRAYS),
                                          "generated_tokens": int(sum(len(g) for g in generated) - sum(lengths))})
    return generated, lengths


def _load(folder: Path, manifest: dict):
    if sha256_file(folder / ARRAYS) != manifest.get("arrays_sha256"):
        raise InputError(f"{folder / ARRAYS}: does not match the sha256 in {MANIFEST} (modified or truncated); delete the folder")
    with np.load(folder / ARRAYS) as arrays:
        tokens, offsets, lengths = arrays["tokens"], arrays["offsets"], arrays["prompt_lengths"]
    return [tokens[a:b].astype(np.int64) for a, b in zip(offsets[:-1], offsets[1:])], lengths.tolist()
