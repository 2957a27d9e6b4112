"""Issue 9, numerical #3 and #11 on CPU: fp16 loss scaling with the bow student's two optimizers,
and float32 predictions from a bf16 autocast forward.

Accelerate gives no GradScaler on a CPU, so the fp16 test hands an fp16 (CPU autocast) accelerator
a real torch.amp.GradScaler("cpu") that records its calls. Every gradient an optimizer sees must
equal the fp32 run's up to fp16 rounding (the bug made the embedding's 65,536x smaller), and the
calls per step must be PyTorch's multi-optimizer recipe.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from distillab.train import trainer
from distillab.train.lazy_adam import LazyAdam

from train_helpers import banking, bow_config  # noqa: F401 (fixture)


@pytest.fixture
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state; these tests need other precisions than the rest."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


class RecordingScaler(torch.amp.GradScaler):
    def __init__(self):
        super().__init__("cpu", init_scale=2.0**16)
        self.calls = []

    def unscale_(self, optimizer):
        self.calls.append(("unscale_", optimizer))
        return super().unscale_(optimizer)

    def step(self, optimizer, *args, **kwargs):
        self.calls.append(("step", optimizer))
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.calls.append(("update", None))
        return super().update(new_scale)


def _record_gradients(monkeypatch) -> list:
    """Every optimizer step's gradients (dense copies), in call order."""
    seen = []
    for cls in (torch.optim.AdamW, LazyAdam):
        original = cls.step

        def step(self, *args, _original=original, **kwargs):
            seen.append([p.grad.to_dense().clone() for group in self.param_groups for p in group["params"]
                         if p.grad is not None])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, step.__name__, step)
    return seen


def _train(banking, tmp_path, monkeypatch, seen: list, scaler=None) -> list:
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(mixed_precision="fp16" if scaler else "no", cpu=True)
    if scaler is not None:  # what Accelerate sets up on a GPU without bf16
        accelerator.scaler, accelerator.native_amp = scaler, True
    monkeypatch.setattr(trainer, "make_accelerator", lambda config: accelerator)
    seen.clear()
    trainer.train_arms(banking, ["vanilla"], bow_config(max_steps=3, max_grad_norm=1.0), tmp_path)
    return list(seen)


def test_fp16_scaling_unscales_each_optimizer_once_and_updates_once_per_step(
        banking, tmp_path, monkeypatch, fresh_accelerator_state):
    seen = _record_gradients(monkeypatch)
    reference = _train(banking, tmp_path / "fp32", monkeypatch, seen)
    scaler = RecordingScaler()
    scaled = _train(banking, tmp_path / "fp16", monkeypatch, seen, scaler)

    assert len(scaled) == len(reference) == 6  # 3 steps x (AdamW, LazyAdam)
    for got, want in zip(scaled, reference):  # the embedding's (LazyAdam) gradients were 65,536x too small
        for g, w in zip(got, want):
            assert torch.linalg.norm(g - w) <= 0.01 * torch.linalg.norm(w)
    optimizers = list(dict.fromkeys(opt for name, opt in scaler.calls if opt is not None))
    assert len(optimizers) == 2
    step_calls = [(name, optimizers.index(opt) if opt is not None else None) for name, opt in scaler.calls]
    one_step = [("unscale_", 0), ("unscale_", 1), ("step", 0), ("step", 1), ("update", None)]
    assert step_calls == one_step * 3
    assert scaler.get_scale() == 2.0**16 and scaler._growth_tracker.item() == 3  # one update per step


def test_predictions_after_bf16_training_are_the_float32_forward(banking, tmp_path, fresh_accelerator_state):
    """The saved logits are the saved model's float32 forward, not bf16-rounded copies of it."""
    from distillab.io import load_predictions
    from distillab.train.students import load_bow_model

    trainer.train_arms(banking, ["vanilla"], bow_config(max_steps=2, precision="bf16"), tmp_path)
    saved = load_predictions(tmp_path / "vanilla" / "predictions" / "test.npz")
    assert saved.meta["recipe"]["loss"] == "vanilla"
    assert trainer.make_accelerator(bow_config(precision="bf16")).mixed_precision == "bf16"
    student, model = load_bow_model(tmp_path / "vanilla" / "model")
    features = student.featurize(banking.splits["test"].texts)
    with torch.no_grad():
        exact = model(**student.collate(features, np.arange(len(features)))).numpy()
    bf16 = torch.from_numpy(exact).bfloat16().float().numpy()
    assert saved.logits.dtype == np.float32 and not np.array_equal(exact, bf16)
    np.testing.assert_allclose(saved.logits, exact, rtol=1e-6, atol=1e-7)
