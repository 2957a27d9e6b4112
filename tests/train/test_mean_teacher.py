"""The mean teacher's lazy per-row average equals the per-step average of every weight (float64)."""

from __future__ import annotations

import copy

import torch

from distillab.train.lazy_adam import LazyAdam
from distillab.train.mean_teacher import MovingAverage
from distillab.train.students import BowClassifier


def dense_update(shadow, model, decay):
    """The formula, applied to every weight every step (what the lazy average must equal)."""
    with torch.no_grad():
        for average, current in zip(shadow.parameters(), model.parameters()):
            average.lerp_(current, 1.0 - decay)


def test_lazy_rows_equal_the_dense_per_step_average_in_float64():
    torch.manual_seed(0)
    model = BowClassifier(num_labels=5, buckets=200, dim=8).double()
    dense = copy.deepcopy(model)
    ema = MovingAverage(model, decay=0.8)
    optimizers = [LazyAdam([model.embedding.weight], lr=0.05),
                  torch.optim.AdamW(model.classifier.parameters(), lr=0.05)]
    rng = torch.Generator().manual_seed(1)
    for step in range(12):
        ids = torch.randint(0, 40 if step % 2 else 200, (30,), generator=rng)  # some rows are read often, some never
        offsets = torch.tensor([0, 7, 19])
        labels = torch.randint(0, 5, (3,), generator=rng)
        if step % 3 == 0:  # the mean teacher reads a batch: its rows are brought up to date first
            with torch.no_grad():
                ema.shadow(ids, offsets)
            dense_logits = dense(ids, offsets)
            torch.testing.assert_close(ema.shadow(ids, offsets), dense_logits, rtol=1e-12, atol=1e-12)
        if step % 4 == 1:  # two micro-batches, each read by the mean teacher first, as the trainer does
            for part in (slice(0, 7), slice(7, 30)):
                with torch.no_grad():
                    ema.shadow(ids[part], torch.tensor([0]))
                model(ids[part], torch.tensor([0])).sum().backward()
        else:
            torch.nn.functional.cross_entropy(model(ids, offsets), labels).backward()
        ema.before_step()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        ema.update()
        dense_update(dense, model, 0.8)
    averaged = ema.averaged().state_dict()
    for key, value in dense.state_dict().items():
        torch.testing.assert_close(averaged[key], value, rtol=1e-12, atol=1e-12)
    assert not torch.equal(averaged["embedding.weight"], model.embedding.weight.detach())
