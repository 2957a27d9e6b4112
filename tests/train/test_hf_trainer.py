"""DistillationTrainer: its compute_loss is our kd_loss on the teacher rows of the batch's ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillab.losses import kd_loss
from distillab.train.hf_trainer import DistillationTrainer

from train_helpers import banking, banking_cache, make_tiny_bert  # noqa: F401 (fixtures)


@pytest.fixture()
def hf_setup(banking, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    path = make_tiny_bert(banking, tmp_path / "bert", with_weights=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    train = banking.splits["train"]
    encoded = tokenizer(train.texts, truncation=True, max_length=32)
    dataset = Dataset.from_dict({"id": train.ids.tolist(), "labels": train.labels.tolist(), **encoded})
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=8, max_steps=2,
                             report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no", seed=0)
    return model, tokenizer, dataset, args


def test_compute_loss_equals_kd_loss(hf_setup, banking_cache):
    from transformers import DataCollatorWithPadding

    model, tokenizer, dataset, args = hf_setup
    trainer = DistillationTrainer(model=model, args=args, train_dataset=dataset, teacher_cache=banking_cache,
                                  arm="kd:T=2,alpha=0.6", data_collator=DataCollatorWithPadding(tokenizer))
    batch = next(iter(trainer.get_train_dataloader()))
    assert "id" not in batch and "teacher_row" in batch
    model.eval()  # no dropout: both sides see the same logits
    with torch.no_grad():
        got = trainer.compute_loss(model, batch)
        ids = banking_cache.ids[batch["teacher_row"].numpy()]
        # teacher_row came from the mapping under test: the rows it names must hold this batch's labels.
        np.testing.assert_array_equal(banking_cache.labels(ids), batch["labels"].numpy())
        teacher = torch.from_numpy(banking_cache.logits(ids))  # independent lookup by row id
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch.get("token_type_ids")).logits
        want = kd_loss(logits, teacher, batch["labels"], T=2.0, alpha=0.6)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)

    model.train()
    result = trainer.train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)


def test_unknown_row_ids_are_refused(hf_setup, banking_cache):
    from distillab.errors import InputError

    model, _, dataset, args = hf_setup
    renamed = dataset.map(lambda row: {"id": "nope-" + row["id"]})
    with pytest.raises(InputError, match="not in the teacher cache"):
        DistillationTrainer(model=model, args=args, train_dataset=renamed, teacher_cache=banking_cache, arm="kd")


def test_labels_in_another_class_order_are_refused(hf_setup, banking_cache):
    from distillab.errors import FingerprintMismatch

    model, _, dataset, args = hf_setup
    shifted = dataset.map(lambda row: {"labels": (row["labels"] + 1) % 77})  # same rows, other class ids
    with pytest.raises(FingerprintMismatch, match="'labels' disagrees with the teacher cache"):
        DistillationTrainer(model=model, args=args, train_dataset=shifted, teacher_cache=banking_cache, arm="kd")


def test_arms_without_a_teacher_need_no_cache(hf_setup):
    from distillab.errors import InputError
    from distillab.losses import cross_entropy

    model, _, dataset, args = hf_setup
    trainer = DistillationTrainer(model=model, args=args, train_dataset=dataset, arm="label_smoothing:epsilon=0.1")
    batch = {k: torch.tensor(v) for k, v in dataset.select([0]).to_dict().items() if k != "id"}
    model.train()  # a training batch of a teacher-free arm has no teacher_row: the arm's loss still applies
    with torch.no_grad():
        torch.manual_seed(0)  # the same dropout masks on both sides
        got = trainer.compute_loss(model, batch)
        torch.manual_seed(0)
        want = cross_entropy(model(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"],
                             label_smoothing=0.1)
    torch.testing.assert_close(got, want)
    with pytest.raises(InputError, match="needs a teacher cache"):
        DistillationTrainer(model=model, args=args, train_dataset=dataset, arm="kd")


def test_arms_that_read_more_than_logits_are_refused_up_front():
    import pytest

    from distillab.errors import InputError
    from distillab.train.hf_trainer import DistillationTrainer

    with pytest.raises(InputError, match="dml reads more than logits"):
        DistillationTrainer(arm="dml")
