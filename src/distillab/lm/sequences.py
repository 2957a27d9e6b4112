"""Token sequences and their next-token targets: the one place where logits and labels are aligned.

Two bugs of peer libraries are ruled out here by construction:

- **shift exactly once.** ``labels[b, t]`` is the token at ``t + 1`` (the target of the logits at
  position ``t``, as the teacher cache stores its distribution of token ``t + 1`` at ``t``). Losses
  compare ``logits[:, t]`` with ``labels[:, t]`` directly; nothing downstream shifts again, and the
  model is never given ``labels=`` (HF would shift a second time).
- **pad == eos.** SmolLM2 pads with its EOS id. Padding is found from each sequence's *length*,
  never from the token id, so a document's real EOS stays a training target.

Prompt tokens (sequence-level KD, on-policy) are masked the same way: by position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from distillab.errors import InputError
from distillab.losses.kd import IGNORE_INDEX


def lm_texts(texts: list[str], eos_token: str | None) -> list[str]:
    """The texts a teacher cache and the students see: each document followed by the EOS token (when given).

    Appending the EOS *string* lets the tokenizer emit the EOS id, so the existing teacher capture
    (which tokenises text) and the students agree on every token, the final EOS included.
    """
    return [text + eos_token for text in texts] if eos_token else list(texts)


def tokenize(tokenizer, texts: list[str], max_length: int, row_ids, where: str) -> list[np.ndarray]:
    """Token ids of each text, cut to ``max_length`` exactly as :mod:`distillab.teacher.causal_lm` cuts them.

    A document of fewer than two tokens has no next-token target: refused, naming the row.
    """
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    sequences = [np.asarray(ids, dtype=np.int64) for ids in encoded]
    for row, ids in enumerate(sequences):
        if ids.size < 2:
            raise InputError(f"{where}, row {row} (id {str(row_ids[row])!r}): the document tokenises to {ids.size} "
                             "token(s); a language-model document needs at least 2 (drop or fix it)")
    return sequences


def next_token_labels(input_ids: torch.Tensor, lengths, prompt_lengths=None) -> torch.Tensor:
    """``labels[b, t] = input_ids[b, t + 1]`` for ``prompt_lengths[b] − 1 <= t < lengths[b] − 1``, else ``-100``.

    Shifted once, here. Positions past a sequence's length are padding whatever token id they hold
    (pad == eos), and positions before the last prompt token predict prompt tokens, which are not trained.
    """
    batch, width = input_ids.shape
    lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(batch, 1)
    start = (torch.zeros_like(lengths) if prompt_lengths is None
             else (torch.as_tensor(prompt_lengths, dtype=torch.long).reshape(batch, 1) - 1).clamp_min(0))
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = input_ids[:, 1:]
    position = torch.arange(width).reshape(1, width)
    return labels.masked_fill((position < start) | (position >= lengths - 1), IGNORE_INDEX)


@dataclass
class Batch:
    """A right-padded batch: ``input_ids``/``attention_mask``/``labels`` [B, L] and each sequence's length."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor

    @property
    def targets(self) -> torch.Tensor:
        """Mask [B, L] of the positions that are trained (labels != -100)."""
        return self.labels != IGNORE_INDEX


def make_batch(sequences: list[np.ndarray], pad_id: int, prompt_lengths=None) -> Batch:
    """Pad ``sequences`` on the right with ``pad_id`` and derive the targets from their lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    width = int(lengths.max())
    input_ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
        attention_mask[row, : len(sequence)] = 1
    return Batch(input_ids, attention_mask, next_token_labels(input_ids, lengths, prompt_lengths), lengths)


def token_counts(sequences: list[np.ndarray], vocab: int) -> np.ndarray:
    """How often each token id is a training target (every token but each sequence's first), int64 [vocab]."""
    counts = np.zeros(vocab, dtype=np.int64)
    for sequence in sequences:
        counts += np.bincount(sequence[1:], minlength=vocab)[:vocab]
    return counts
