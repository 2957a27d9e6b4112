"""Sequence-level KD generations (fingerprinted cache) and on-policy GKD (student samples, live teacher)."""

import json

import numpy as np
import pytest
import torch

from distillab.errors import FingerprintMismatch
from distillab.lm.config import LOSSES, Arm
from distillab.lm.generate import generate
from distillab.lm.models import cut_student
from distillab.lm.seqkd import generation_fingerprint, generation_settings, teacher_generations
from distillab.lm.train import TrainData, arm_loss
from lm_helpers import make_tokenizer, tiny_llama

EOS = 1
SEQUENCES = [np.array([3, 4, 5, 6, 7, 8, EOS]), np.array([9, 10, 11, 12, EOS]), np.array([13, 14, 15])]


def settings(**changes):
    return {**LOSSES["seq_kd"], "prompt_tokens": 3, "new_tokens": 4, **changes}


@pytest.mark.parametrize("change", [{"new_tokens": 5}, {"prompt_tokens": 2}, {"do_sample": True},
                                    {"do_sample": True, "temperature": 0.7}, {"do_sample": True, "seed": 1}])
def test_generation_fingerprint_changes_with_the_generation_settings(change):
    base = settings()
    if change.get("do_sample") and set(change) != {"do_sample"}:
        base = settings(do_sample=True)
    fingerprint = generation_fingerprint({"teacher": 1}, ["a"], [np.array([3, 4])], generation_settings(base, 8))
    other = generation_fingerprint({"teacher": 1}, ["a"], [np.array([3, 4])], generation_settings({**base, **change}, 8))
    assert fingerprint != other


def test_greedy_generations_ignore_sampling_settings_and_batch_size_counts():
    assert generation_settings(settings(seed=5, temperature=0.3), 8) == generation_settings(settings(), 8)
    assert generation_settings(settings(), 8) != generation_settings(settings(), 4)


def test_generations_are_cached_reused_and_refused_when_made_otherwise(tmp_path):
    teacher, tok = tiny_llama(len(make_tokenizer()), layers=2), make_tokenizer()
    record = {"name": "tiny"}
    ids = ["d0", "d1", "d2"]
    first, prompts = teacher_generations(tmp_path / "g", teacher, tok, record, ids, SEQUENCES, settings(), batch_size=2)
    assert prompts == [3, 3, 2]  # a prompt leaves at least one document token out
    for sequence, document, n in zip(first, SEQUENCES, prompts):
        assert np.array_equal(sequence[:n], document[:n]) and len(sequence) <= n + 4
        assert EOS not in sequence[n:-1]  # a continuation stops at its first EOS, which is kept
    mtime = (tmp_path / "g" / "generations.npz").stat().st_mtime_ns
    again, _ = teacher_generations(tmp_path / "g", teacher, tok, record, ids, SEQUENCES, settings(), batch_size=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert (tmp_path / "g" / "generations.npz").stat().st_mtime_ns == mtime
    with pytest.raises(FingerprintMismatch, match="settings"):
        teacher_generations(tmp_path / "g", teacher, tok, record, ids, SEQUENCES, settings(new_tokens=2), batch_size=2,
                            rebuild=False)
    teacher_generations(tmp_path / "g", teacher, tok, record, ids, SEQUENCES, settings(do_sample=True), batch_size=2)
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["fingerprint"]["settings"]["do_sample"] is True  # the folder it owns was rebuilt


def test_sampling_is_reproducible_under_a_seed_and_leaves_the_global_rng_alone():
    model = tiny_llama(len(make_tokenizer()), layers=2, seed=7)
    prompts = [s[:2] for s in SEQUENCES]
    kwargs = dict(new_tokens=8, pad_id=EOS, eos_id=None, do_sample=True, temperature=1.5, batch_size=3)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = generate(model, prompts, seed=11, **kwargs)
    assert torch.equal(torch.rand(1), before)
    b = generate(model, prompts, seed=11, **kwargs)
    c = generate(model, prompts, seed=12, **kwargs)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def gkd_setup(on_policy=1.0):
    teacher = tiny_llama(len(make_tokenizer()), layers=4, seed=2)
    teacher.requires_grad_(False)
    student = cut_student(teacher, 2)
    with torch.no_grad():  # make the student differ from the teacher beyond the cut
        student.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    arm = Arm("gkd", "gkd", {**LOSSES["gkd"], "prompt_tokens": 2, "new_tokens": 5, "on_policy": on_policy})
    data = TrainData(SEQUENCES, EOS, EOS, teacher=teacher)
    return teacher, student, arm, data


def test_gkd_gradient_flows_only_through_the_student():
    teacher, student, arm, data = gkd_setup()
    loss, count = arm_loss(arm, student, np.array([0, 1, 2]), data, step=0, chunk_rows=4)
    assert count > 0 and float(loss.detach()) > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.get_input_embeddings().weight.grad.abs().sum() > 0
    assert student.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0


def test_gkd_steps_are_reproducible_and_mix_on_and_off_policy():
    _, student, arm, data = gkd_setup()
    first = float(arm_loss(arm, student, np.array([0, 1]), data, step=3, chunk_rows=4)[0].detach())
    again = float(arm_loss(arm, student, np.array([0, 1]), data, step=3, chunk_rows=4)[0].detach())
    assert first == again
    _, student, off, data = gkd_setup(on_policy=0.0)
    _, count = arm_loss(off, student, np.array([0, 1]), data, step=3, chunk_rows=4)
    # supervised: the documents' own tokens after the prompt (6 - 1 and 5 - 1 targets... minus the prompt's)
    assert count == (len(SEQUENCES[0][:7]) - 2) + (len(SEQUENCES[1]) - 2)
