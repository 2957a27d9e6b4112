"""Online distillation: a larger teacher trained beside the student, whose detached prediction the student distils
from after a warm-up of CE; the teacher learns from its own loss alone and is saved, predicted and audited as a
student (NAME-online); bad sizes and settings are one line before training.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distillab.errors import ConfigError
from distillab.losses import cross_entropy, kd_loss
from distillab.objectives.base import Bound, Dims, Step
from distillab.objectives.online_kd import OnlineKD
from distillab.train.arms import arm_from_config, parse_arm
from distillab.train.trainer import train_arm

from train_helpers import banking, bow_config, interrupted_then_resumed, make_tiny_bert  # noqa: F401 (fixtures)


class _Call(torch.nn.Module):
    """A teacher that takes its batch as keyword arguments, as a student model does."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input):
        return self.inner(input)


def _case(step: int, **settings):
    torch.manual_seed(0)
    teacher = torch.nn.Linear(4, 3)
    x, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    student = torch.randn(5, 3, requires_grad=True)
    objective = OnlineKD(**settings)
    loss = objective.loss(Step(logits=student, labels=labels, step=step, online_inputs={"input": x}),
                          Bound(extras=_Call(teacher)))
    return loss, teacher, x, labels, student


def test_the_student_distils_from_the_detached_teacher_which_learns_from_its_own_loss_alone():
    loss, teacher, x, labels, student = _case(step=0, T=2.0, alpha=0.6, teacher_loss="label_smoothing",
                                              teacher_epsilon=0.2)
    own = cross_entropy(teacher(x), labels, label_smoothing=0.2)
    want_teacher = torch.autograd.grad(own, list(teacher.parameters()))
    got_teacher = torch.autograd.grad(loss, list(teacher.parameters()), retain_graph=True)
    assert all(torch.allclose(g, w) for g, w in zip(got_teacher, want_teacher))
    distil = kd_loss(student, teacher(x).detach(), labels, T=2.0, alpha=0.6)
    (want_student,) = torch.autograd.grad(distil, student)
    (got_student,) = torch.autograd.grad(loss, student)
    assert torch.allclose(got_student, want_student)


def test_before_warmup_steps_the_student_trains_on_cross_entropy_only():
    for step, distils in ((0, False), (2, False), (3, True)):
        loss, teacher, x, labels, student = _case(step=step, warmup_steps=3)
        own = cross_entropy(teacher(x), labels)
        student_term = (kd_loss(student, teacher(x), labels, T=4.0, alpha=0.7) if distils
                        else cross_entropy(student, labels))
        assert torch.allclose(loss, student_term + own), step


def test_the_online_teacher_is_saved_predicts_and_is_audited_beside_the_arm(banking, tmp_path):
    from distillab.train.students import load_bow_model

    arm = parse_arm("online_kd:teacher_ngrams=3,warmup_steps=2,name=online")
    assert arm.side_students() == ["online"] and arm.recipe()["warmup_steps"] == 2.0
    summary = train_arm(banking, arm, bow_config(max_steps=6), tmp_path)
    assert np.isfinite(summary["final_loss"])
    arm_dir = tmp_path / "online"
    assert not (arm_dir / "objective_extras.safetensors").exists()  # a teacher saved as a student, not an extra
    student, model = load_bow_model(arm_dir / "online" / "model")
    assert (student.dim, student.hasher.ngrams) == (32, 3)  # twice the student's width; trigrams, as asked
    saved = np.load(arm_dir / "online" / "predictions" / "test.npz")
    test = banking.splits["test"]
    with torch.no_grad():
        logits = model.eval()(**student.collate(student.featurize(test.texts), np.arange(len(test)))).numpy()
    np.testing.assert_allclose(saved["logits"], logits, rtol=1e-5, atol=1e-6)
    meta = json.loads((arm_dir / "online" / "predictions" / "test.json").read_text())
    assert meta["arm"] == "online-online" and meta["model"] == "bow-3gram-32d"
    assert meta["recipe"]["loss"] == "online_teacher" and meta["recipe"]["of"] == "online"
    # Saved as the student is: only the rows training changed (the rest rebuild from the seed).
    assert (arm_dir / "online" / "model" / "model.safetensors").stat().st_size < 4096 * 32 * 4 / 2


def test_arms_with_the_same_online_featurizer_featurise_the_splits_once(banking, tmp_path, monkeypatch):
    from distillab.train.students import BowStudent
    from distillab.train.trainer import train_arms

    calls = []
    original = BowStudent.featurize

    def counting(self, texts):
        calls.append((self.hasher.ngrams, len(texts)))
        return original(self, texts)

    monkeypatch.setattr(BowStudent, "featurize", counting)
    arms = ["online_kd:teacher_ngrams=3,T=2,name=a", "online_kd:teacher_ngrams=3,T=4,name=b"]
    train_arms(banking, arms, bow_config(max_steps=2), tmp_path)
    # The training split (serving-cost timing featurises small batches besides): the student's once, the trigram
    # teacher's once, not once per arm.
    assert [ngrams for ngrams, rows in calls if rows == len(banking.splits["train"])] == [2, 3]
    assert (tmp_path / "b" / "online" / "predictions" / "test.npz").exists()


def test_a_transformer_students_online_teacher_is_more_layers_of_its_checkpoint(banking, tmp_path):
    from safetensors.torch import load_file

    base = make_tiny_bert(banking, tmp_path / "base", layers=3, with_weights=True)
    config = bow_config(student=str(base), student_layers="first:2", max_length=24, max_steps=2, learning_rate=1e-3)
    train_arm(banking, "online_kd:name=online", config, tmp_path / "run")
    saved = tmp_path / "run" / "online" / "online" / "model"
    assert json.loads((saved / "config.json").read_text())["num_hidden_layers"] == 3
    assert any(".layer.2." in key for key in load_file(saved / "model.safetensors"))
    assert (tmp_path / "run" / "online" / "online" / "predictions" / "test.npz").exists()


def test_resumed_online_arm_is_identical_to_an_uninterrupted_one(banking, tmp_path, monkeypatch):
    arm_dir = interrupted_then_resumed(banking, "online_kd:teacher_dim=24,name=online", tmp_path, monkeypatch)
    assert (arm_dir / "checkpoints-seen" / "extras.safetensors").exists()
    for part in ("online/predictions/test.npz", "online/model/model.safetensors", "predictions/test.npz",
                 "model/model.safetensors"):
        assert (tmp_path / "reference" / "online" / part).read_bytes() == (arm_dir / part).read_bytes(), part


@pytest.mark.parametrize("spec, message", [
    ("online_kd:warmup_steps=-1", "online_kd: warmup_steps=-1 must be an integer >= 0"),
    ("online_kd:teacher_loss=mse", "online_kd: teacher_loss='mse' must be one of ce, label_smoothing"),
    ("online_kd:teacher_ngrams=4", "online_kd: teacher_ngrams=4 must be 0 (the student's), 1, 2 or 3"),
])
def test_bad_settings_are_one_line(spec, message):
    with pytest.raises(ConfigError) as info:
        parse_arm(spec)
    assert message in str(info.value)


@pytest.mark.parametrize("value", [3.0, 2.5, True, "3"])
def test_teacher_ngrams_from_a_mapping_must_be_an_integer(value):
    # A YAML float 3.0 once passed the check and failed in training, in the n-gram hasher's range().
    with pytest.raises(ConfigError, match="teacher_ngrams=.* must be 0 \\(the student's\\), 1, 2 or 3"):
        arm_from_config({"name": "o", "objectives": [{"online_kd": {"teacher_ngrams": value}}]})


BOW = Dims(student_layers=1, student_width=16, student_ngrams=2, student_buckets=4096)
HF = Dims(student_layers=2, student_width=32, student_tokens=True, student_base_layers=3)


@pytest.mark.parametrize("settings, dims, message", [
    ({"teacher_dim": 16}, BOW, "the online teacher (bow_dim 16, 2-grams) is not bigger than the student "
                               "(bow_dim 16, 2-grams)"),
    ({"teacher_dim": 64, "teacher_ngrams": 1}, BOW, "not bigger than the student"),
    ({"teacher_dim": 2**17}, BOW, "teacher_dim=131072: a 4,096 x 131072 table is beyond bow_dim's limits"),
    ({"teacher_layers": 3}, BOW, "teacher_layers and teacher_model are for a transformer student"),
    ({"teacher_layers": 2}, HF, "the online teacher (2 layers of width 32) is not bigger than the student"),
    ({"teacher_layers": 5}, HF, "teacher_layers=5: the student's checkpoint has 3 layers"),
    ({"teacher_dim": 64}, HF, "teacher_dim and teacher_ngrams are for the bow student"),
])
def test_a_teacher_that_is_not_bigger_is_refused_naming_the_setting(settings, dims, message):
    (problem,) = OnlineKD(**settings).resolve(dims)
    assert problem.startswith("online_kd: ") and message in problem
    assert OnlineKD().resolve(dims) == []  # the defaults: twice the width, all the checkpoint's layers


def test_training_refuses_a_teacher_that_is_not_bigger_before_any_arm_trains(banking, tmp_path):
    with pytest.raises(ConfigError, match="arm 'small': online_kd: the online teacher"):
        train_arm(banking, "online_kd:teacher_dim=8,name=small", bow_config(), tmp_path)
    assert not (tmp_path / "small").exists()


def test_a_warmup_as_long_as_training_is_refused_before_any_arm_trains(banking, tmp_path):
    config = bow_config()
    with pytest.raises(ConfigError, match=r"arm 'late': online_kd: warmup_steps=100000 is not below the run's \d+ "):
        train_arm(banking, "online_kd:warmup_steps=100000,name=late", config, tmp_path)
    assert not (tmp_path / "late").exists()


def test_a_teacher_model_is_sized_from_its_config(banking, tmp_path):
    deeper = make_tiny_bert(banking, tmp_path / "deeper", layers=3)  # config and tokenizer only: no weights read
    shallow = make_tiny_bert(banking, tmp_path / "shallow", layers=1)
    assert OnlineKD(teacher_model=str(deeper)).resolve(HF) == []
    (problem,) = OnlineKD(teacher_model=str(shallow)).resolve(HF)
    assert "the online teacher (1 layers of width 32) is not bigger than the student (2 layers" in problem
    (problem,) = OnlineKD(teacher_model=str(deeper), teacher_layers=4).resolve(HF)
    assert f"teacher_layers=4: teacher_model {str(deeper)!r} has 3 layers" in problem
