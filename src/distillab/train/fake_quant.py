"""Quantization-aware distillation (an arm's ``fake_quant=int8``): the student trains through its int8 weights.

During training each weight the post-training int8 path (``distillab quantize``, torch.ao dynamic
quantization; :mod:`distillab.quantize.backends`) would quantize is replaced, in the forward pass, by
``dequantize(quantize(w))`` with that path's own observers and scheme:

- every ``nn.Linear``: int8, symmetric, one scale per output channel (``per_channel_dynamic_qconfig``);
- the bow student's ``nn.EmbeddingBag``: 8-bit row-wise, a float scale and offset per row
  (``float_qparams_weight_only_qconfig``).

The scales are computed from the current weights at every forward (as the converter computes them
from the final ones), and ``torch.fake_quantize_per_channel_affine`` passes gradients straight
through where a weight is inside the quantized range (straight-through estimator). Linear layers
use ``torch.nn.utils.parametrize``; the embedding table fake-quantizes only the rows a batch reads
(row-wise scales make that exact), so its gradient stays sparse for lazy Adam. Activations are not
fake-quantized: dynamic quantization picks their scale per batch at run time.

The weights being trained stay float32, and the saved student is that float model, so the
quantize stage converts a QAT arm exactly as it converts any other (post-training quantization).
The torchao backend leaves the table in float32; against it, only the Linear part matches.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from distillab.quantize.backends import _quantizable_bag as quantizable_bag

SCHEMES = ("int8",)


def fake_quantize(weight: torch.Tensor, observer) -> torch.Tensor:
    """``dequantize(quantize(weight))`` per channel (rows), with qparams a fresh torch.ao ``observer`` computes."""
    observe = observer().to(weight.device)
    observe(weight.detach())
    scale, zero_point = observe.calculate_qparams()
    if not zero_point.is_floating_point():  # symmetric int8: integer zero points, which the op wants as int32
        zero_point = zero_point.to(torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale.to(weight.device), zero_point.to(weight.device),
                                                  observe.ch_axis, observe.quant_min, observe.quant_max)


def _observers():
    from torch.ao.quantization import float_qparams_weight_only_qconfig, per_channel_dynamic_qconfig

    return per_channel_dynamic_qconfig.weight, float_qparams_weight_only_qconfig.weight


class _LinearWeight(nn.Module):
    """The parametrization of a Linear weight: its int8 per-channel fake quantization."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, _observers()[0])


class _FakeQuantBag(nn.EmbeddingBag):
    """An EmbeddingBag reading its rows 8-bit row-wise fake-quantized (only the rows the batch reads)."""

    def forward(self, input, offsets=None, per_sample_weights=None):
        rows, inverse = torch.unique(input, return_inverse=True)
        table = F.embedding(rows, self.weight, sparse=self.sparse)  # the rows read: a row-sparse gradient
        return F.embedding_bag(inverse, fake_quantize(table, _observers()[1]), offsets, mode=self.mode,
                               per_sample_weights=per_sample_weights)


def add_fake_quant(model: nn.Module, scheme: str) -> None:
    """Fake-quantize ``model``'s weights in its forward pass, in place; its parameters stay the same objects."""
    if scheme not in SCHEMES:
        raise ValueError(f"fake_quant={scheme!r}: supported: {', '.join(SCHEMES)}")
    for module in list(model.modules()):
        if isinstance(module, nn.Linear):
            parametrize.register_parametrization(module, "weight", _LinearWeight())
        # The bags the int8 path quantizes, decided by that path; a subclass keeps its own forward.
        elif type(module) is nn.EmbeddingBag and quantizable_bag(module):
            module.__class__ = _FakeQuantBag  # same parameters and state-dict keys, another forward


def remove_fake_quant(model: nn.Module) -> None:
    """Back to the plain float model (its trained float weights), in place: what is saved and predicted with."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        elif type(module) is _FakeQuantBag:
            module.__class__ = nn.EmbeddingBag
