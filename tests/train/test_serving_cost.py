"""The serving cost is a measurement taken by a stated protocol, recorded apart from the results."""

from __future__ import annotations

import contextlib

import torch

from distillab.train import predict
from distillab.train.students import BowStudent


def _bow(dim: int = 8):
    torch.manual_seed(0)
    student = BowStudent(num_labels=3, buckets=2**10, dim=dim)
    return student, student.new_model()


def test_protocol_spread_and_forward_timed_apart(monkeypatch):
    monkeypatch.setattr(predict, "_MEASURED", {})
    student, model = _bow()
    torch.set_num_threads(2)
    cost = predict.serving_cost(model, student, ["a b c", "d e"], torch.device("cpu"), contextlib.nullcontext)
    assert torch.get_num_threads() == 2, "the caller's thread count must be restored"
    assert (cost["batch_size"], cost["warmups"], cost["repeats"], cost["threads"]) == (32, 3, 7, 1)
    assert cost["device"] == "cpu"
    for key in ("ms_per_example", "featurize_ms_per_example", "forward_ms_per_example"):
        s = cost[key]
        assert 0 < s["min"] <= s["median"] <= s["max"], (key, s)
    # The total is featurisation + forward, repeat by repeat.
    assert cost["ms_per_example"]["min"] >= cost["forward_ms_per_example"]["min"]


def test_same_architecture_measured_once(monkeypatch):
    """Arms that differ only in their loss (same shapes, same inputs) share one measurement."""
    monkeypatch.setattr(predict, "_MEASURED", {})
    texts = ["one two", "three"]
    student, first = _bow()
    a = predict.serving_cost(first, student, texts, torch.device("cpu"), contextlib.nullcontext)
    _, second = _bow()
    with torch.no_grad():
        for p in second.parameters():
            p.add_(1.0)  # other weights, same architecture
    calls = []
    monkeypatch.setattr(student, "featurize", lambda t: calls.append(t) or BowStudent.featurize(student, t))
    assert predict.serving_cost(second, student, texts, torch.device("cpu"), contextlib.nullcontext) == a
    assert calls == []
    other_student, wider = _bow(dim=16)
    b = predict.serving_cost(wider, other_student, texts, torch.device("cpu"), contextlib.nullcontext)
    assert b["architecture"] != a["architecture"]
