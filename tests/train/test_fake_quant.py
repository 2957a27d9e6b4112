"""Quantization-aware distillation (an arm's fake_quant=int8): the forward pass sees exactly the weights the int8
path (distillab quantize, torch.ao) would give, gradients pass straight through, the saved student is the float
model, and arms without the option train as before.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distillab.errors import ConfigError
from distillab.quantize.backends import quantize_model, resolve_backend
from distillab.train.arms import arm_from_config, parse_arm
from distillab.train.fake_quant import add_fake_quant, remove_fake_quant
from distillab.train.students import BowClassifier
from distillab.train.trainer import train_arms

from train_helpers import banking, banking_cache, bow_config, interrupted_then_resumed  # noqa: F401 (fixtures)


def _model(seed: int = 0) -> BowClassifier:
    torch.manual_seed(seed)
    model = BowClassifier(num_labels=5, buckets=300, dim=16)
    with torch.no_grad():  # rows of different ranges, as training leaves them
        model.embedding.weight.mul_(torch.linspace(0.5, 40.0, 300)[:, None])
    return model


def test_the_forward_pass_sees_dequantize_quantize_of_each_channel_as_the_int8_path_makes_it():
    model = _model()
    int8, _ = quantize_model(model, resolve_backend("torch.ao"))
    linear = int8.classifier.weight()
    table = int8.embedding.bag.weight()  # 8-bit row-wise (MeanEmbeddingBag wraps the quantized bag)
    add_fake_quant(model, "int8")
    # Linear: int8 symmetric per output channel, bit for bit.
    assert torch.equal(model.classifier.weight, linear.dequantize())
    # The table, through the forward pass: each bag of one id reads that row fake-quantized.
    ids = torch.arange(300)
    rows = model.embedding(ids, torch.arange(300))
    torch.testing.assert_close(rows, table.dequantize(), rtol=0, atol=1e-6)
    levels = torch.round(rows / table.q_per_channel_scales()[:, None] + table.q_per_channel_zero_points()[:, None])
    assert torch.equal(levels.to(torch.uint8), table.int_repr())  # the same 8-bit level in every entry
    # So the student's logits are those of the int8 model's weights in float arithmetic (dynamic int8 also
    # quantizes activations at run time; that part is not trained through).
    with torch.no_grad():
        want = torch.nn.functional.linear(table.dequantize(), linear.dequantize(), int8.classifier.bias())
        torch.testing.assert_close(model(ids, torch.arange(300)), want, rtol=1e-5, atol=1e-6)


def test_gradients_pass_straight_through_and_the_table_gradient_stays_sparse():
    model = _model()
    plain = _model()
    add_fake_quant(model, "int8")
    ids, offsets = torch.tensor([3, 7, 7, 250, 11]), torch.tensor([0, 2])
    torch.manual_seed(1)
    upstream = torch.randn(2, 5)
    (model(ids, offsets) * upstream).sum().backward()
    # The same loss with the fake-quantized weights as leaves: d loss / d w must equal d loss / d fq(w) (STE).
    weight = model.classifier.weight.detach().requires_grad_()
    with torch.no_grad():
        quantized_rows = model.embedding(torch.arange(300), torch.arange(300))
    rows = quantized_rows.clone().requires_grad_()
    out = torch.nn.functional.embedding_bag(ids, rows, offsets, mode="mean") @ weight.T + plain.classifier.bias
    (out * upstream).sum().backward()
    # Straight through where w lies inside the int8 range; a row's largest positive weight (amax/scale = 127.5
    # rounds to 128, beyond 127) is clamped, and gets none, as torch's fake quantization defines it.
    original = model.classifier.parametrizations.weight.original
    clamped = (original.grad - weight.grad).abs() > 1e-6
    assert torch.allclose(original.grad[~clamped], weight.grad[~clamped], atol=1e-6)
    assert clamped.sum(dim=1).le(1).all() and torch.equal(original.grad[clamped], torch.zeros(int(clamped.sum())))
    amax = original.detach().abs().amax(dim=1, keepdim=True).expand_as(original)
    assert torch.equal(original.detach()[clamped], amax[clamped])  # each the largest weight of its row, positive
    sparse = model.embedding.weight.grad
    assert sparse.is_sparse and set(sparse.coalesce().indices()[0].tolist()) == {3, 7, 11, 250}
    torch.testing.assert_close(sparse.to_dense(), rows.grad, rtol=1e-5, atol=1e-7)  # row-wise: every entry inside


def test_removing_it_leaves_the_float_model_with_its_keys_and_weights():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    add_fake_quant(model, "int8")
    remove_fake_quant(model)
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert type(model.embedding) is torch.nn.EmbeddingBag and type(model.classifier) is torch.nn.Linear


def test_a_qat_arm_trains_saves_its_float_weights_and_records_the_option(banking, banking_cache, tmp_path):
    from distillab.train.students import load_bow_model

    arms = ["kd:T=4,alpha=0.7,name=kd", "kd:T=4,alpha=0.7,fake_quant=int8,name=kd_qat"]
    train_arms(banking, arms, bow_config(max_steps=8), tmp_path, cache=banking_cache)
    resolved = json.loads((tmp_path / "kd_qat" / "resolved_config.json").read_text())
    assert resolved["recipe"] == {"loss": "kd", "T": 4.0, "alpha": 0.7, "fake_quant": "int8"}
    assert "fake_quant" not in json.loads((tmp_path / "kd" / "resolved_config.json").read_text())["recipe"]
    student, model = load_bow_model(tmp_path / "kd_qat" / "model")  # a plain float student
    test = banking.splits["test"]
    with torch.no_grad():
        logits = model.eval()(**student.collate(student.featurize(test.texts), np.arange(len(test)))).numpy()
    saved = np.load(tmp_path / "kd_qat" / "predictions" / "test.npz")["logits"]
    np.testing.assert_allclose(saved, logits, rtol=1e-5, atol=1e-6)  # predicted by the float model it saved
    assert not np.allclose(saved, np.load(tmp_path / "kd" / "predictions" / "test.npz")["logits"])


def test_an_arm_without_the_option_never_touches_fake_quantization(banking, banking_cache, tmp_path, monkeypatch):
    import distillab.train.trainer as trainer

    def refuse(*args):
        raise AssertionError("fake quantization applied to a float arm")

    monkeypatch.setattr(trainer, "add_fake_quant", refuse)
    monkeypatch.setattr(trainer, "remove_fake_quant", refuse)
    train_arms(banking, ["kd", "ema_kd:name=ema"], bow_config(max_steps=2), tmp_path, cache=banking_cache)
    assert parse_arm("kd").recipe() == {"loss": "kd", "T": 4.0, "alpha": 0.7}


def test_resumed_qat_arm_is_identical_to_an_uninterrupted_one(banking, tmp_path, monkeypatch):
    arm_dir = interrupted_then_resumed(banking, "vanilla:fake_quant=int8,name=qat", tmp_path, monkeypatch)
    for part in ("predictions/test.npz", "model/model.safetensors"):
        assert (tmp_path / "reference" / "qat" / part).read_bytes() == (arm_dir / part).read_bytes(), part


@pytest.mark.parametrize("spec, message", [
    ("kd:fake_quant=int4", "arm 'kd_T4_a0.7_qat_int4': fake_quant='int4' must be int8"),
    ({"name": "q", "objectives": ["kd"], "fake_quant": "fp8"}, "arm 'q': fake_quant='fp8' must be int8"),
])
def test_a_scheme_other_than_int8_is_one_line(spec, message):
    with pytest.raises(ConfigError) as info:
        arm_from_config(spec)
    assert message in str(info.value)


def test_both_spellings_give_the_same_arm():
    line = parse_arm("kd:T=4,alpha=0.7,fake_quant=int8,name=kd_qat")
    assert line == arm_from_config({"name": "kd_qat", "objectives": [{"kd": {"T": 4, "alpha": 0.7}}],
                                    "fake_quant": "int8"})
    assert parse_arm("kd:fake_quant=int8").name == "kd_T4_a0.7_qat_int8" and line.only("kd") is None


def test_the_hf_trainer_drop_in_refuses_a_qat_arm_it_would_train_in_float():
    from distillab.errors import InputError

    with pytest.raises(InputError, match="fake_quant is applied by distillab train's loop"):
        parse_arm("kd:fake_quant=int8").check_logits_only()
