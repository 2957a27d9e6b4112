"""Continuations of prompts by a causal LM (teacher for sequence-level KD, student for on-policy GKD).

Seeded: the random state is forked and seeded per call, so the same (model, prompts, settings, seed)
give the same tokens and the caller's random state is untouched. Sampling draws from the model's
full distribution at ``temperature`` (no top-k / top-p truncation), as GKD's on-policy term assumes.

A continuation ends at its first EOS, which is kept: generate pads finished rows with the pad id,
which for SmolLM2 *is* the EOS id, so the end is found as the first EOS after the prompt, not by
stripping pad ids (which would also strip the real EOS).
"""

from __future__ import annotations

import numpy as np
import torch


def generate(model, prompts: list[np.ndarray], *, new_tokens: int, pad_id: int, eos_id: int | None,
             do_sample: bool = False, temperature: float = 1.0, seed: int = 0, batch_size: int = 8) -> list[np.ndarray]:
    """Each prompt followed by up to ``new_tokens`` generated tokens (through the first EOS), int64 arrays."""
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_size):
                out.extend(_generate_batch(model, prompts[start:start + batch_size], new_tokens, pad_id, eos_id,
                                           do_sample, temperature))
    finally:
        model.train(was_training)
    return out


def _generate_batch(model, prompts, new_tokens, pad_id, eos_id, do_sample, temperature):
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, prompt in enumerate(prompts):  # left padding: every prompt ends where generation starts
        input_ids[row, width - len(prompt):] = torch.as_tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt):] = 1
    sampling = {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0} if do_sample \
        else {"do_sample": False}
    generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=int(new_tokens),
                               min_new_tokens=1, pad_token_id=int(pad_id), eos_token_id=eos_id, **sampling)
    results = []
    for row, prompt in enumerate(prompts):
        continuation = generated[row, width:].numpy()
        ends = np.flatnonzero(continuation == eos_id) if eos_id is not None else np.array([], dtype=np.int64)
        if ends.size:
            continuation = continuation[: ends[0] + 1]
        results.append(np.concatenate([np.asarray(prompt, dtype=np.int64), continuation.astype(np.int64)]))
    return results
