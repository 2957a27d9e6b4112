"""The LM head and the loss computed together, a chunk of positions at a time.

A batch's logits are [positions, vocabulary] (49,152 wide for SmolLM2): materialising them, then a
log-softmax of them, then their gradient, costs several such tensors. Here the head is applied to
``chunk_rows`` final hidden states at a time, the loss and its gradients (for those hidden states and
the head weight) are taken on that chunk, and the chunk's logits are freed: the full-vocabulary
tensor is never held for the whole batch at all. Only trained positions (label != -100) reach the
head, so padding and prompt positions cost nothing.

The per-chunk loss is any of the existing losses (:mod:`distillab.losses`) called on the chunk's
logits: ``chunk_loss(logits, *row_tensors)`` returns the **sum** over the chunk's rows, and the
result is the mean over all rows, so it equals the dense computation exactly (values and gradients).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from distillab.errors import InputError


class _ChunkedHeadLoss(torch.autograd.Function):
    """Forward computes the value and both gradients chunk by chunk; backward hands them on."""

    @staticmethod
    def forward(ctx, chunk_loss: Callable, chunk_rows: int, hidden, weight, bias, *row_tensors):
        rows = hidden.shape[0]
        wants = ctx.needs_input_grad[2:5]
        grads = [torch.zeros_like(t) if want and t is not None else None
                 for t, want in zip((hidden, weight, bias), wants)]
        total = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        w = weight.detach().requires_grad_(wants[1])
        b = None if bias is None else bias.detach().requires_grad_(wants[2])
        for start in range(0, rows, chunk_rows):
            part = slice(start, start + chunk_rows)
            h = hidden[part].detach().requires_grad_(wants[0])
            with torch.enable_grad():
                value = chunk_loss(F.linear(h, w, b), *(t[part] for t in row_tensors)) / rows
            inputs = [(x, i) for i, x in enumerate((h, w, b)) if x is not None and x.requires_grad]
            if inputs:
                for (_, i), grad in zip(inputs, torch.autograd.grad(value, [x for x, _ in inputs])):
                    if i == 0:
                        grads[0][part] = grad
                    else:
                        grads[i] += grad
            total += value.detach()
        ctx.grads = grads
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grads = [None if g is None else g * grad_output for g in ctx.grads]
        ctx.grads = None
        return (None, None, *grads) + (None,) * (len(ctx.needs_input_grad) - 5)


def chunked_head_loss(hidden: torch.Tensor, head: torch.nn.Linear, chunk_loss: Callable, row_tensors=(),
                      chunk_rows: int = 256) -> torch.Tensor:
    """Mean over rows of ``chunk_loss(head(hidden_chunk), *row_chunks)`` (which returns a chunk's sum).

    ``hidden`` [N, d] are the final hidden states of the trained positions; ``row_tensors`` hold
    one row per position (labels, cache arrays, teacher logits). Differentiable w.r.t. ``hidden`` and
    the head's parameters, once.
    """
    if int(chunk_rows) != chunk_rows or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if hidden.shape[0] == 0:  # nothing to train on: 0 with a zero gradient
        return hidden.sum() * 0.0
    return _ChunkedHeadLoss.apply(chunk_loss, int(chunk_rows), hidden, head.weight, head.bias, *row_tensors)


def dense_head_loss(hidden: torch.Tensor, head: torch.nn.Linear, chunk_loss: Callable, row_tensors=()) -> torch.Tensor:
    """The same quantity with the whole [N, V] logits at once: the reference the chunked path is tested against."""
    return chunk_loss(head(hidden), *row_tensors) / hidden.shape[0]


def final_hidden(model, input_ids, attention_mask) -> torch.Tensor:
    """The last hidden states [B, L, d] that the model's head reads (the head itself is not applied)."""
    if getattr(model.config, "final_logit_softcapping", None):
        raise InputError(f"{type(model).__name__} soft-caps its logits after the head; the chunked loss applies the "
                         "head alone, so such models are not supported as LM students or teachers")
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
