"""Students: bag-of-n-grams featuriser and save/load, lazy Adam vs SparseAdam, HF from config, layer truncation."""

from __future__ import annotations

import zlib

import pytest
import torch

from distillab.errors import ConfigError, InputError
from distillab.train.arms import make_arm, parse_arm
from distillab.train.config import TrainConfig
from distillab.train.lazy_adam import LazyAdam
from distillab.train.students import (BowStudent, HFStudent, NgramHasher, load_bow_model, load_student,
                                      parse_layers, truncate_layers)

from train_helpers import banking, make_tiny_bert  # noqa: F401 (fixtures)


def test_ngram_ids_are_crc32_hashes_of_words_and_bigrams():
    hasher = NgramHasher(buckets=1000, ngrams=2)
    ids = hasher.ids("Card ARRIVED card")
    h = [zlib.crc32(w.encode()) for w in ("card", "arrived", "card")]
    bigrams = [((h[i] * 116049371 + h[i + 1] + 2) % 2**64) % 1000 for i in range(2)]
    assert ids.tolist() == [x % 1000 for x in h] + bigrams
    assert hasher.ids("").size == 0 and NgramHasher(1000, ngrams=3).ids("a b c").size == 6


def test_bow_collate_picks_rows_and_save_load_round_trips(tmp_path):
    student = BowStudent(num_labels=3, buckets=64, dim=4, classes=["a", "b", "c"])
    features = student.featurize(["one two", "three", "four five six"])
    batch = student.collate(features, [2, 0])
    assert batch["offsets"].tolist() == [0, 5] and batch["input_ids"].numel() == 5 + 3
    torch.manual_seed(0)
    model = student.new_model()
    student.save(model, tmp_path / "bow")
    loaded_student, loaded = load_bow_model(tmp_path / "bow")
    assert loaded_student.config == student.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch), model(**batch))


def _train_two(reference_cls, reference_kwargs, ours_kwargs, all_rows: bool):
    """Five steps of the same losses through LazyAdam and a torch optimizer, in float64."""
    torch.manual_seed(0)
    weights = torch.randn(50, 4, dtype=torch.float64)
    a = torch.nn.EmbeddingBag(50, 4, mode="mean", sparse=True).double()
    b = torch.nn.EmbeddingBag(50, 4, mode="mean", sparse=not all_rows).double()
    a.weight.data.copy_(weights)
    b.weight.data.copy_(weights)
    ours, reference = LazyAdam(a.parameters(), **ours_kwargs), reference_cls(b.parameters(), **reference_kwargs)
    for _ in range(5):
        # all_rows: every row gets a gradient each step; else 12 random ids, repeats included.
        ids = torch.cat([torch.randperm(50), torch.randint(0, 50, (10,))]) if all_rows else torch.randint(0, 50, (12,))
        offsets = torch.tensor([0, 5])
        target = torch.randn(2, 4, dtype=torch.float64)
        for module, opt in ((a, ours), (b, reference)):
            opt.zero_grad()
            ((module(ids, offsets) - target) ** 2).sum().backward()
            opt.step()
    assert not torch.equal(a.weight, weights)
    return a.weight, b.weight


def test_lazy_adam_matches_torch_sparse_adam():
    # SparseAdam adds eps before the bias correction and Adam after; with a negligible eps they agree.
    ours, reference = _train_two(torch.optim.SparseAdam, {"lr": 0.1, "eps": 1e-14}, {"lr": 0.1, "eps": 1e-14}, False)
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-12)


def test_lazy_adam_is_adam_when_every_row_is_touched():
    ours, reference = _train_two(torch.optim.Adam, {"lr": 0.1}, {"lr": 0.1}, True)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


def test_tiny_bert_from_config_and_label_count_check(banking, tmp_path):
    path = make_tiny_bert(banking, tmp_path / "bert")
    student = HFStudent(str(path), num_labels=77, classes=banking.classes, max_length=8)
    assert not student.has_weights
    features = student.featurize(banking.splits["train"].texts[:3])
    assert all(len(f["input_ids"]) <= 8 for f in features)
    batch = student.collate(features, [0, 2])
    logits = student.new_model()(**batch).logits
    assert logits.shape == (2, 77)
    trained = make_tiny_bert(banking, tmp_path / "bert5", num_labels=5, with_weights=True)
    with pytest.raises(InputError, match="5 labels but the data has 77"):
        HFStudent(str(trained), num_labels=77)


def test_layer_truncation_keeps_the_chosen_layers_weights(banking, tmp_path):
    from transformers import AutoModelForSequenceClassification

    path = make_tiny_bert(banking, tmp_path / "bert4", layers=4, with_weights=True, num_labels=77)
    full = AutoModelForSequenceClassification.from_pretrained(path)
    for spec, keep in (("every_other", [0, 2]), ("first:3", [0, 1, 2]), ("1,3", [1, 3])):
        model = AutoModelForSequenceClassification.from_pretrained(path)
        assert truncate_layers(model, spec) == keep
        assert len(model.bert.encoder.layer) == model.config.num_hidden_layers == len(keep)
        for new, old in zip(model.bert.encoder.layer, keep):
            for (name, p), q in zip(new.named_parameters(), full.bert.encoder.layer[old].parameters()):
                assert torch.equal(p, q), (spec, name)
    student = load_student(TrainConfig(student=str(path), student_layers="first:1"), 77)
    assert student.new_model().config.num_hidden_layers == 1


@pytest.mark.parametrize("spec", ["first:0", "first:9", "3,1", "0,0", "x", "0,4"])
def test_bad_layer_specs(spec):
    with pytest.raises(InputError, match="student layers"):
        parse_layers(spec, total=4)


def test_student_paths_must_exist(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        load_student(TrainConfig(student=str(tmp_path / "missing")), 3)


# --------------------------------------------------------------------------- arms and config


def test_arm_syntax_defaults_and_recipes():
    assert parse_arm("vanilla").recipe() == {"loss": "vanilla"}
    kd = parse_arm("kd")
    assert (kd.name, kd.only("kd").values["T"], kd.only("kd").values["alpha"]) == ("kd_T4_a0.7", 4.0, 0.7)
    assert parse_arm("kd: T=8, alpha=0.9, name=distilled").recipe() == {"loss": "kd", "T": 8.0, "alpha": 0.9}
    assert parse_arm("kd:T=8,alpha=0.9,name=distilled").name == "distilled"
    assert parse_arm("hard_kd").recipe() == {"loss": "hard_kd", "alpha": 0.7}
    assert parse_arm("label_smoothing:epsilon=0.2").name == "label_smoothing_e0.2"
    assert make_arm("kd", T=1, alpha=0.9).name == "kd_T1_a0.9"
    for bad in ("kd:T", "kd:T=abc", "kd:tail=other", "vanilla:T=4", "kd:name=../x", "kd+kd", "kd+nope",
                "kd+hidden_mse:weight=0", "hidden_mse:normalize=maybe"):
        with pytest.raises(ConfigError):
            parse_arm(bad)


def test_train_config_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as info:
        TrainConfig(epochs=0, batch_size=0, warmup_ratio=1.5, precision="fp8", learning_rate=-1).validate()
    message = str(info.value)
    for field in ("epochs", "batch_size", "warmup_ratio", "precision", "learning_rate"):
        assert field in message
    with pytest.raises(ConfigError, match="unknown training setting"):
        TrainConfig.from_dict({"epoch": 3})
    assert TrainConfig.from_dict({"eval_splits": "validation"}).eval_splits == ("validation",)


def test_arm_tail_modes_are_the_losses_tail_modes():
    """The kd objective keeps its own copy (parsing must not import torch): the two lists must not drift apart."""
    from distillab.losses.kd import TAIL_MODES
    from distillab.objectives.kd import TAILS

    assert TAILS == TAIL_MODES
