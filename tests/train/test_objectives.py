"""The objective registry and arms built from it: the existing arms train exactly as before the registry,
multi-objective arms parse from one line or a mapping, feature objectives train from cached pooled features with
their extras saved beside (never inside) the student, resume exactly, and every mistake is one error before training.
"""

from __future__ import annotations

import json
import pkgutil

import numpy as np
import pytest
from safetensors.torch import load_file

import distillab.objectives as objectives
from distillab.errors import ConfigError
from distillab.train.arms import Arm, arm_from_config, parse_arm
from distillab.train.trainer import train_arm, train_arms

from train_helpers import banking, banking_cache, bow_config, interrupted_then_resumed, write_cache  # noqa: F401

HELPERS = {"base", "dims", "pooled", "tokens"}  # modules of the package that are not objectives


@pytest.fixture(scope="module")
def feature_cache(banking, tmp_path_factory):
    """A dense cache with two pooled teacher layers (of a 3-layer teacher), widths 24 and 20."""
    n = len(banking.splits["train"])
    rng = np.random.default_rng(7)
    features = {2: rng.normal(size=(n, 24)).astype(np.float32), 3: rng.normal(size=(n, 20)).astype(np.float32)}
    return write_cache(banking, tmp_path_factory.mktemp("features") / "cache", features=features, teacher_layers=3)


# --------------------------------------------------------------------------- registry


def test_every_objective_module_registers_one_objective_whose_defaults_are_valid():
    modules = {m.name for m in pkgutil.iter_modules(objectives.__path__)} - HELPERS
    assert modules == set(objectives.REGISTRY)  # one file per objective, named as the objective
    for name, cls in objectives.REGISTRY.items():
        assert cls.name == name and cls.family in ("logits", "hidden", "attention", "relation", "self", "peer")
        assert cls().problems() == []


def _old_compute_loss(arm, step, bounds):
    """The trainer's loss before the registry: an if-chain over four loss names (kept here as the reference)."""
    from distillab import losses

    (term,) = arm.terms
    loss, v, teacher = term.objective.name, term.objective.values, step.teacher
    if loss == "vanilla":
        return losses.cross_entropy(step.logits, step.labels)
    if loss == "label_smoothing":
        return losses.cross_entropy(step.logits, step.labels, label_smoothing=v["epsilon"])
    if loss == "kd":
        return losses.kd_loss(step.logits, teacher["logits"], step.labels, T=v["T"], alpha=v["alpha"])
    return losses.hard_kd_loss(step.logits, teacher["logits"], step.labels, alpha=v["alpha"])


def test_the_existing_arms_train_byte_identically_to_the_pre_registry_loss(banking, banking_cache, tmp_path,
                                                                           monkeypatch):
    arms = ["vanilla", "kd:T=4,alpha=0.7,name=kd", "hard_kd:alpha=0.7", "label_smoothing:epsilon=0.1"]
    train_arms(banking, arms, bow_config(), tmp_path / "registry", cache=banking_cache)
    monkeypatch.setattr(Arm, "loss_of", _old_compute_loss)
    train_arms(banking, arms, bow_config(), tmp_path / "if-chain", cache=banking_cache)
    for name in ("vanilla", "kd", "hard_kd_a0.7", "label_smoothing_e0.1"):
        for part in ("predictions/test.npz", "model/model.safetensors", "resolved_config.json"):
            now, before = (tmp_path / run / name / part for run in ("registry", "if-chain"))
            assert now.read_bytes() == before.read_bytes(), (name, part)
        assert not (tmp_path / "registry" / name / "objective_extras.safetensors").exists()


# --------------------------------------------------------------------------- syntax


def test_objectives_join_with_plus_or_spell_out_as_a_mapping():
    line = parse_arm("kd:T=4,alpha=0.7+hidden_mse:weight=0.5,normalize=true,layers=uniform,name=fitnet")
    mapping = arm_from_config({"name": "fitnet", "objectives": [
        {"kd": {"T": 4, "alpha": 0.7}}, {"hidden_mse": {"weight": 0.5, "normalize": True, "layers": "uniform"}}]})
    assert line == mapping and line.loss == "kd+hidden_mse"
    assert line.recipe() == {"loss": "kd+hidden_mse", "objectives": [
        {"objective": "kd", "weight": 1.0, "T": 4.0, "alpha": 0.7},
        {"objective": "hidden_mse", "weight": 0.5, "layers": "uniform", "normalize": True}]}
    assert parse_arm("kd+rkd").name == "kd_T4_a0.7_rkd"
    assert parse_arm("crd_lite:weight=2").name == "crd_lite_w2"
    assert arm_from_config({"objectives": ["vanilla", {"rkd": None}]}).name == "vanilla_rkd"
    # A one-objective arm keeps its flat recipe, whichever way it is written.
    assert arm_from_config({"name": "kd", "objectives": [{"kd": {}}]}).recipe() == {"loss": "kd", "T": 4.0, "alpha": 0.7}


@pytest.mark.parametrize("spec, message", [
    ("kd+nope", "unknown objective 'nope' in arm 'kd+nope'"),
    ("kd+hidden_mse:depth=2", "hidden_mse has no setting 'depth'"),
    ("kd+hidden_mse:weight=0", "hidden_mse: weight=0.0 must be a number > 0"),
    ("kd+kd:T=2", "objective 'kd' is given twice"),
    ("crd_lite:temperature=0", "crd_lite: temperature=0.0 must be > 0"),
    ("crd_lite:dim=2.5", "crd_lite: dim=2.5 must be an integer > 0"),
    ("crd_lite:dim=1e9", "crd_lite: dim=1000000000 must be at most 65,536"),
    ("hidden_mse:normalize=yes", "normalize='yes' must be true or false"),
    ({"name": "x", "objectives": [{"kd": {"beta": 1}}]}, "objective kd: unknown setting 'beta'"),
    ({"name": "x", "objectives": []}, "'objectives' must be a non-empty list"),
    ({"name": "x", "objectives": [{"kd": 4}]}, "must be a name or {name: {settings}}"),
    ({"name": "x", "loss": "kd"}, "give a string like 'kd:T=4' or a mapping with 'objectives'"),
])
def test_bad_arms_are_one_error_naming_the_arm_objective_and_setting(spec, message):
    with pytest.raises(ConfigError) as info:
        arm_from_config(spec)
    assert message in str(info.value)


# --------------------------------------------------------------------------- feature objectives


def test_feature_objectives_train_and_keep_their_extras_beside_the_student(banking, feature_cache, tmp_path):
    arms = ["vanilla", "kd+hidden_mse:name=fitnet", "kd+hidden_mse:normalize=true,name=cosine", "kd+rkd:name=rkd",
            "kd+crd_lite:dim=8,name=crd", "hidden_mse:name=hidden_only"]
    summaries = train_arms(banking, arms, bow_config(), tmp_path, cache=feature_cache)
    vanilla_keys = set(load_file(tmp_path / "vanilla" / "model" / "model.safetensors"))
    for name, extras in [("fitnet", {"0.0.weight": (20, 16), "0.0.bias": (20,)}),
                         ("crd", {"0.0.student.weight": (8, 16), "0.0.teacher.weight": (8, 20)}),
                         ("rkd", None)]:
        assert np.isfinite(summaries[name]["final_loss"])
        # The exported student is the same model as a vanilla one: no projection inside it.
        assert set(load_file(tmp_path / name / "model" / "model.safetensors")) == vanilla_keys
        path = tmp_path / name / "objective_extras.safetensors"
        if extras is None:
            assert not path.exists()
            continue
        saved = load_file(path)
        for key, shape in extras.items():
            assert tuple(saved[key].shape) == shape
    resolved = json.loads((tmp_path / "fitnet" / "resolved_config.json").read_text())
    assert resolved["recipe"]["loss"] == "kd+hidden_mse" and resolved["teacher_cache"] is not None
    # Objectives that pull toward different targets give different students from the same start.
    logits = {n: np.load(tmp_path / n / "predictions" / "test.npz")["logits"] for n in ("fitnet", "rkd", "crd")}
    assert not np.array_equal(logits["fitnet"], logits["rkd"]) and not np.array_equal(logits["rkd"], logits["crd"])


def test_hidden_mse_alone_moves_the_projected_student_toward_the_teacher(banking, feature_cache, tmp_path):
    import torch

    from distillab.losses.features import hidden_mse
    from distillab.train.students import load_bow_model

    config = bow_config(epochs=6, learning_rate=0.1)
    train_arm(banking, "hidden_mse", config, tmp_path, cache=feature_cache)
    student, model = load_bow_model(tmp_path / "hidden_mse" / "model")
    extras = load_file(tmp_path / "hidden_mse" / "objective_extras.safetensors")
    projection = torch.nn.Linear(16, 20)
    projection.load_state_dict({"weight": extras["0.0.weight"], "bias": extras["0.0.bias"]})
    train = banking.splits["train"]
    batch = student.collate(student.featurize(train.texts), np.arange(len(train)))
    teacher = torch.from_numpy(feature_cache.features("pooled.3", train.ids))
    with torch.no_grad():
        trained = hidden_mse(projection(model(**batch, output_hidden_states=True).hidden_states[1]), teacher)
        untrained = hidden_mse(torch.zeros_like(teacher), teacher)  # a projection that predicts nothing
    assert float(trained) < 0.9 * float(untrained)


def test_resumed_feature_arm_is_identical_to_an_uninterrupted_one(banking, feature_cache, tmp_path, monkeypatch):
    arm_dir = interrupted_then_resumed(banking, "kd+crd_lite:dim=8,name=crd", tmp_path, monkeypatch, feature_cache)
    assert (arm_dir / "checkpoints-seen" / "extras.safetensors").exists()
    for part in ("predictions/test.npz", "objective_extras.safetensors", "model/model.safetensors"):
        assert (tmp_path / "reference" / "crd" / part).read_bytes() == (arm_dir / part).read_bytes(), part


@pytest.mark.parametrize("arm, message", [
    ("hidden_mse:layers=uniform", "arm 'hidden_mse': hidden_mse: layers='uniform' needs teacher feature pooled.1, "
                                  "which the cache lacks (it has pooled.2, pooled.3)"),
    ("rkd:layers=last:2", "arm 'rkd': rkd: layers='last:2':"),
])
def test_feature_mistakes_are_refused_before_any_arm_trains(banking, feature_cache, tmp_path, arm, message):
    with pytest.raises(ConfigError) as info:
        train_arms(banking, ["vanilla", arm], bow_config(), tmp_path, cache=feature_cache)
    assert message in str(info.value)
    assert not (tmp_path / "vanilla").exists()


def test_a_feature_objective_on_a_cache_without_features_names_the_fix(banking, banking_cache, tmp_path):
    with pytest.raises(ConfigError, match=r"arm 'kd_T4_a0.7_hidden_mse': hidden_mse: layers='last:1': the teacher "
                                          r"cache has no pooled features; build it with distillab teacher --features"):
        train_arms(banking, ["kd+hidden_mse"], bow_config(), tmp_path, cache=banking_cache)


# --------------------------------------------------------------------------- live teacher (token level)


@pytest.fixture(scope="module")
def tiny_pair(banking, tmp_path_factory):
    """A 2-layer student and a 3-layer teacher (tiny BERTs, 2 heads, width 32) sharing one tokenizer."""
    from train_helpers import make_tiny_bert

    root = tmp_path_factory.mktemp("tiny-pair")
    return (make_tiny_bert(banking, root / "student", layers=2),
            make_tiny_bert(banking, root / "teacher", layers=3, with_weights=True, seed=3))


def token_config(student, teacher, **changes):
    return bow_config(**{"student": str(student), "live_teacher": str(teacher), "max_length": 24, "batch_size": 16,
                         "max_steps": 4, "learning_rate": 1e-3, **changes})


def test_token_level_objectives_train_with_a_live_teacher(banking, banking_cache, tiny_pair, tmp_path):
    student, teacher = tiny_pair
    arms = ["kd", "kd+hidden_mse:tokens=true,layers=uniform,name=tinybert_hidden", "kd+attention_kl:name=att_kl",
            "attention_mse", "attention_transfer:p=2", "kd+minilm_relations:relation_heads=4,name=minilm"]
    summaries = train_arms(banking, arms, token_config(student, teacher), tmp_path, cache=banking_cache)
    for name in ("tinybert_hidden", "att_kl", "attention_mse", "attention_transfer", "minilm"):
        assert np.isfinite(summaries[name]["final_loss"]), name
    # Only the projections of hidden_mse are extras; 2 student blocks -> 2 projections 32 -> 32.
    extras = load_file(tmp_path / "tinybert_hidden" / "objective_extras.safetensors")
    assert sorted(extras) == ["0.0.bias", "0.0.weight", "0.1.bias", "0.1.weight"]
    assert not (tmp_path / "minilm" / "objective_extras.safetensors").exists()
    kd_logits = np.load(tmp_path / "kd_T4_a0.7" / "predictions" / "test.npz")["logits"]
    for name in ("tinybert_hidden", "att_kl", "minilm"):  # the extra term changed the student
        assert not np.allclose(np.load(tmp_path / name / "predictions" / "test.npz")["logits"], kd_logits)


def test_the_live_teacher_gets_the_layers_the_objectives_map_and_nothing_else(banking, tiny_pair):
    from distillab.objectives.base import Dims
    from distillab.train.live_teacher import LiveTeacher
    from distillab.train.trainer import _Taps

    student, teacher = tiny_pair
    live = LiveTeacher(str(teacher), 24)
    dims = Dims(student_layers=2, student_width=32, student_tokens=True, student_heads=2, live_layers=3,
                live_width=32, live_heads=2)
    arm = arm_from_config({"objectives": [{"attention_kl": {"layers": "last:1"}},
                                          {"minilm_relations": {"layers": [[0, 1]], "relation_heads": 4}}]})
    taps = _Taps.of(arm, [term.objective.bind(dims) for term in arm.terms])
    assert (taps.student_attentions, taps.live_attentions, taps.student_qkv, taps.live_qkv) == ({1}, {2}, {0}, {1})
    batch = live.collate(live.featurize(banking.splits["train"].texts[:4]), range(4))
    out = live.outputs(batch, hidden=False, attentions=taps.live_attentions, qkv=taps.live_qkv)
    assert set(out.attentions) == {2} and set(out.qkv) == {1} and set(out.qkv[1]) == {"q", "k", "v"}
    assert out.hidden is None and out.qkv[1]["q"].shape == (4, batch["input_ids"].shape[1], 32)


@pytest.mark.parametrize("arm, settings, message", [
    ("kd+attention_kl", {}, "arm 'kd_T4_a0.7_attention_kl': attention_kl: needs a live teacher; set training.live_teacher"),
    ("minilm_relations:relation_heads=5", None, "minilm_relations: relation_heads=5 must divide the student width 32"),
    ({"name": "att", "objectives": [{"attention_kl": {"layers": [0, 7]}}]}, None, "attention_kl: layers=[0, 7]:"),
])
def test_token_level_mistakes_are_refused_before_training(banking, banking_cache, tiny_pair, tmp_path, arm, settings,
                                                          message):
    student, teacher = tiny_pair
    config = token_config(student, teacher) if settings is None else bow_config(student=str(student), max_length=24)
    with pytest.raises(ConfigError) as info:
        train_arms(banking, ["vanilla", arm_from_config(arm)], config, tmp_path, cache=banking_cache)
    assert message in str(info.value)
    assert not (tmp_path / "vanilla").exists()


def test_token_level_objectives_on_the_bow_student_say_why_not(banking, banking_cache, tmp_path):
    with pytest.raises(ConfigError, match="attention_mse: reads token-level outputs, which the bow student does not have"):
        train_arms(banking, ["attention_mse"], bow_config(), tmp_path, cache=banking_cache)


def test_misaligned_tokenizations_are_refused_naming_the_row(banking, banking_cache, tiny_pair, tmp_path):
    from train_helpers import make_tiny_bert, slice_dataset

    student, _ = tiny_pair
    # A teacher whose vocabulary was built from other rows: words it lacks become [UNK] where the student has them.
    other = slice_dataset(banking, 20, 5, name="other")
    teacher = make_tiny_bert(other, tmp_path / "other-teacher", layers=2, with_weights=True)
    with pytest.raises(Exception) as info:
        train_arms(banking, ["attention_mse"], token_config(student, teacher), tmp_path / "o", cache=banking_cache)
    assert "tokens do not align at row" in str(info.value) and "teacher '[UNK]'" in str(info.value)


def test_an_int8_live_teacher_trains_and_is_recorded(banking, banking_cache, tiny_pair, tmp_path):
    student, teacher = tiny_pair
    config = token_config(student, teacher, live_teacher_precision="int8")
    summary = train_arm(banking, "kd+minilm_relations:relation_heads=4,name=at", config, tmp_path, cache=banking_cache)
    assert np.isfinite(summary["final_loss"])
    resolved = json.loads((tmp_path / "at" / "resolved_config.json").read_text())
    assert resolved["live_teacher_precision"] == "int8" and resolved["live_teacher"] == str(teacher)


def test_arms_that_do_not_read_the_live_teacher_do_not_depend_on_it(banking, banking_cache, tiny_pair, tmp_path):
    """Adding a live teacher (and token-level arms) to a config must not retrain its vanilla and kd arms."""
    student, teacher = tiny_pair
    without = bow_config(student=str(student), max_length=24, batch_size=16, max_steps=2, learning_rate=1e-3)
    train_arms(banking, ["vanilla"], without, tmp_path, cache=banking_cache)
    log = (tmp_path / "vanilla" / "train_log.json").stat().st_mtime_ns
    train_arms(banking, ["vanilla", "attention_mse"], token_config(student, teacher, max_steps=2), tmp_path,
               cache=banking_cache)
    assert (tmp_path / "vanilla" / "train_log.json").stat().st_mtime_ns == log  # skipped: same settings
    resolved = json.loads((tmp_path / "attention_mse" / "resolved_config.json").read_text())
    assert resolved["live_teacher"] == str(teacher)


# --------------------------------------------------------------------------- EMA self-distillation (mean teacher)


def test_ema_update_is_the_formula():
    import torch

    from distillab.train.mean_teacher import MovingAverage

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    model.register_buffer("count", torch.tensor([0.0]))
    ema = MovingAverage(model, 0.9)
    before = {k: v.clone() for k, v in ema.shadow.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0), model.count.fill_(5.0)
    ema.before_step(), ema.update()
    for key in ("weight", "bias"):
        want = 0.9 * before[key] + 0.1 * model.state_dict()[key]
        assert torch.allclose(ema.shadow.state_dict()[key], want, atol=1e-7)
    assert ema.shadow.count.item() == 5.0  # buffers follow the student


def test_ema_arm_averages_from_the_initial_weights_and_audits_its_average(banking, tmp_path):
    """After one step the mean teacher is decay·init + (1 − decay)·trained; it is saved with its own predictions."""
    import torch

    from distillab.train.students import BowStudent, load_bow_model

    config = bow_config(max_steps=1)
    train_arm(banking, "ema_kd:decay=0.9,name=mean_teacher", config, tmp_path)
    arm_dir = tmp_path / "mean_teacher"
    _, trained = load_bow_model(arm_dir / "model")
    _, average = load_bow_model(arm_dir / "ema" / "model")
    torch.manual_seed(config.seed)  # the initial weights, rebuilt as the trainer builds them
    initial = BowStudent(len(banking.classes), config.bow_buckets, config.bow_dim, config.bow_ngrams).new_model()
    for key, value in average.state_dict().items():
        want = 0.9 * initial.state_dict()[key] + 0.1 * trained.state_dict()[key]
        assert torch.allclose(value, want, atol=1e-6), key
    preds = np.load(arm_dir / "ema" / "predictions" / "test.npz")
    meta = json.loads((arm_dir / "ema" / "predictions" / "test.json").read_text())
    assert preds["logits"].shape == (len(banking.splits["test"]), len(banking.classes))
    assert meta["arm"] == "mean_teacher-ema" and meta["recipe"] == {"loss": "ema", "of": "mean_teacher", "decay": 0.9}


def test_resumed_ema_arm_is_identical_to_an_uninterrupted_one(banking, tmp_path, monkeypatch):
    arm_dir = interrupted_then_resumed(banking, "ema_kd:decay=0.5,name=ema", tmp_path, monkeypatch)
    assert (arm_dir / "checkpoints-seen" / "ema.safetensors").exists()
    for part in ("ema/predictions/test.npz", "ema/model/model.safetensors", "predictions/test.npz"):
        assert (tmp_path / "reference" / "ema" / part).read_bytes() == (arm_dir / part).read_bytes(), part


@pytest.mark.parametrize("decay", ["0", "1", "1.5", "-0.1"])
def test_ema_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ConfigError, match=rf"ema_kd: decay={float(decay)!r} must be in \(0, 1\)"):
        parse_arm(f"ema_kd:decay={decay}")


# --------------------------------------------------------------------------- deep mutual learning


def test_dml_peers_get_detached_targets():
    """Each peer's loss term moves only that peer: the other's prediction is a target, not a path for gradients."""
    import torch

    from distillab.objectives.base import Bound, Step
    from distillab.objectives.dml import DML

    torch.manual_seed(0)
    peer = torch.nn.Linear(4, 3)
    x, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    student_logits = torch.randn(5, 3, requires_grad=True)
    objective = DML()
    loss = objective.loss(Step(logits=student_logits, labels=labels, inputs={"input": x}), Bound(extras=_Call(peer)))
    # d loss / d student = d (student's own term) / d student: the peer's term treats the student as a constant.
    from distillab.losses import kd_loss

    own = kd_loss(student_logits, peer(x).detach(), labels, T=1.0, alpha=0.5)
    (want,) = torch.autograd.grad(own, student_logits, retain_graph=True)
    (got,) = torch.autograd.grad(loss, student_logits, retain_graph=True)
    assert torch.allclose(got, want)
    peer_only = kd_loss(peer(x), student_logits.detach(), labels, T=1.0, alpha=0.5)
    want_peer = torch.autograd.grad(peer_only, list(peer.parameters()), retain_graph=True)
    got_peer = torch.autograd.grad(loss, list(peer.parameters()))
    assert all(torch.allclose(g, w) for g, w in zip(got_peer, want_peer))


class _Call(__import__("torch").nn.Module):
    """A peer that takes the batch dict as keyword arguments, as a student model does."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input):
        return self.inner(input)


def test_dml_trains_both_peers_and_saves_the_peer_as_a_student(banking, tmp_path):
    summary = train_arm(banking, "dml:name=mutual", bow_config(max_steps=6), tmp_path)
    assert np.isfinite(summary["final_loss"])
    arm_dir = tmp_path / "mutual"
    assert not (arm_dir / "objective_extras.safetensors").exists()  # the peer is a student, not an extra
    student = np.load(arm_dir / "predictions" / "test.npz")["logits"]
    peer = np.load(arm_dir / "peer" / "predictions" / "test.npz")["logits"]
    assert student.shape == peer.shape and not np.allclose(student, peer)  # other initial weights
    meta = json.loads((arm_dir / "peer" / "predictions" / "test.json").read_text())
    assert meta["arm"] == "mutual-peer" and meta["recipe"] == {"loss": "dml_peer", "of": "mutual", "T": 1.0,
                                                               "alpha": 0.5}
