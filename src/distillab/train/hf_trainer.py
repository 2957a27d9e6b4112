"""Drop-in ``transformers.Trainer`` for users with an existing HF script: the loss is a distillab arm.

Give the training dataset a column of row ids (``id`` by default) that the teacher cache holds;
the trainer turns it into an integer ``teacher_row`` column (strings cannot be collated) and
``compute_loss`` looks the teacher's logits (or top-k) up by that row::

    from distillab.train.hf_trainer import DistillationTrainer

    trainer = DistillationTrainer(
        model=model, args=TrainingArguments(...), train_dataset=train_ds,   # has an "id" column
        data_collator=DataCollatorWithPadding(tokenizer),
        teacher_cache="runs/cache", arm="kd:T=4,alpha=0.7",
    )
    trainer.train()

Evaluation datasets keep their columns as they are; their loss is plain cross-entropy (the
teacher is only needed to train). Everything else (schedulers, logging, saving) is the Trainer's.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import Trainer

from distillab.errors import FingerprintMismatch, InputError
from distillab.train.arms import Arm, parse_arm
from distillab.train.predict import model_logits

TEACHER_ROW = "teacher_row"


class DistillationTrainer(Trainer):
    """A ``Trainer`` whose ``compute_loss`` is ``arm.compute_loss`` with teacher rows from ``teacher_cache``."""

    def __init__(self, *args, teacher_cache=None, arm: Arm | str = "kd", id_column: str = "id", **kwargs):
        from distillab.train.trainer import open_cache

        self.arm = parse_arm(arm) if isinstance(arm, str) else arm
        self.arm.check_logits_only()  # compute_loss sees the model's logits only
        if teacher_cache is None and self.arm.needs_teacher:
            raise InputError(f"arm {self.arm.name!r} ({self.arm.loss}) needs a teacher cache: pass teacher_cache=DIR")
        self.teacher_cache = open_cache(teacher_cache)
        self.id_column = id_column
        train_dataset = kwargs.get("train_dataset")
        if train_dataset is not None and self.arm.needs_teacher:
            kwargs["train_dataset"] = self._with_teacher_rows(train_dataset)
        super().__init__(*args, **kwargs)
        # Our losses are batch means: the Trainer must divide them by the accumulation steps itself.
        self.loss_is_scaled_for_ga = False
        cache = self.teacher_cache
        self._teacher = {}
        if cache is None:  # an arm without a teacher (vanilla, label smoothing): nothing to look up
            pass
        elif cache.kind == "dense":
            self._teacher = {"logits": torch.from_numpy(cache.logits())}
        else:
            ids, logprobs, tail = cache.topk()
            self._teacher = {"topk_ids": torch.from_numpy(ids), "topk_logprobs": torch.from_numpy(logprobs),
                             "tail_logmass": torch.from_numpy(tail)}

    def _with_teacher_rows(self, dataset):
        if self.id_column not in dataset.column_names:
            raise InputError(
                f"train_dataset has no {self.id_column!r} column (columns: {', '.join(dataset.column_names)}); "
                "add the row ids the teacher cache was made with, or pass id_column="
            )
        ids = np.asarray(dataset[self.id_column], dtype=str)
        rows = self.teacher_cache.rows(ids)  # unknown id → error
        self._check_labels(dataset, ids, rows)
        return dataset.add_column(TEACHER_ROW, rows.tolist())

    def _check_labels(self, dataset, ids: np.ndarray, rows: np.ndarray) -> None:
        """The dataset's integer labels must be the cache's (same rows, same class order), as ``prepare`` checks
        for ``distillab train``: otherwise the CE term and the teacher's class columns disagree silently."""
        column = next((c for c in ("labels", "label") if c in dataset.column_names), None)
        if column is None:
            return
        given = np.asarray(dataset[column])
        if given.shape != rows.shape or not np.issubdtype(given.dtype, np.integer):
            return  # not class ids (e.g. label strings): nothing comparable
        cached = self.teacher_cache.labels()[rows]
        differ = np.flatnonzero(given != cached)
        if differ.size:
            i = int(differ[0])
            classes = self.teacher_cache.classes
            raise FingerprintMismatch(
                f"train_dataset column {column!r} disagrees with the teacher cache {self.teacher_cache.path} on "
                f"{differ.size} of {len(rows)} rows (first: id {str(ids[i])!r}, dataset {int(given[i])}, cache "
                f"{int(cached[i])} = {classes[int(cached[i])]!r}); label ids must follow the cache's class order"
            )

    def _set_signature_columns_if_needed(self):
        """Keep ``teacher_row`` when the Trainer drops columns the model's ``forward`` does not take."""
        super()._set_signature_columns_if_needed()
        if TEACHER_ROW not in self._signature_columns:
            self._signature_columns.append(TEACHER_ROW)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # the caller keeps its dict intact
        rows = inputs.pop(TEACHER_ROW, None)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = model_logits(outputs).float()  # losses in float32 whatever the autocast dtype
        if rows is None and model.training and not self.arm.needs_teacher:
            loss = self.arm.compute_loss(logits, labels)  # vanilla / label smoothing: no teacher rows to look up
        elif rows is None:
            if model.training:
                raise InputError(f"arm {self.arm.name!r}: the training batch has no {TEACHER_ROW} column")
            from distillab.losses import cross_entropy

            loss = cross_entropy(logits, labels)  # evaluation: plain cross-entropy, whatever the arm
        else:
            index = rows.long().cpu()
            teacher = {k: v[index].to(logits.device) for k, v in self._teacher.items()}
            loss = self.arm.compute_loss(logits, labels, teacher if self.arm.needs_teacher else None)
        return (loss, outputs) if return_outputs else loss
