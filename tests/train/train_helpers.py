"""Test helpers for tests/train: small real data, a teacher cache made through the teacher's writer,
tiny models from configs. (A uniquely named module rather than conftest.py, which several test folders have: a bare
``from conftest import`` would pick whichever was loaded first.) Test modules import the fixtures.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from distillab.data import TextDataset, load_lab_dataset
from distillab.train.config import TrainConfig

DATA_DIR = os.environ.get("DISTILLAB_DATA_DIR", "/work/shared/data")


def slice_dataset(dataset: TextDataset, train_rows: int, test_rows: int, name: str | None = None) -> TextDataset:
    """The first rows of each split, all classes kept (so class ids stay those of the full dataset)."""
    splits = {
        "train": dataset.splits["train"].take(np.arange(train_rows)),
        "test": dataset.splits["test"].take(np.arange(test_rows)),
    }
    return TextDataset(name or f"{dataset.name}-slice", list(dataset.classes), splits, {"sliced_from": dataset.name})


def banking_slice() -> TextDataset:
    """160 train / 50 test rows of banking77 (short texts, 77 classes)."""
    return slice_dataset(load_lab_dataset("banking77", data_dir=DATA_DIR), 160, 50)


def teacher_logits(dataset: TextDataset, ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """A plausible teacher: the gold class favoured, the rest noise (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    by_id = {}
    for split in dataset.splits.values():
        by_id.update(zip(split.ids.tolist(), split.labels.tolist()))
    logits = rng.normal(0, 1, (len(ids), len(dataset.classes))).astype(np.float32)
    logits[np.arange(len(ids)), [by_id[i] for i in ids.tolist()]] += 3.0
    return logits


def write_cache(dataset: TextDataset, out: Path, kind: str = "dense", k: int | None = None,
                splits: tuple[str, ...] = ("train",), logits: np.ndarray | None = None,
                features: dict[int, np.ndarray] | None = None, teacher_layers: int | None = None):
    """A finished teacher cache of ``dataset`` made through :class:`CacheWriter`, opened for reading.

    ``features``: pooled teacher layer -> [rows, width] array, stored as the cache's ``pooled.L`` features.
    """
    from distillab.teacher.cache import CacheWriter, TeacherCache
    from distillab.teacher.capture import topk_outputs
    from distillab.teacher.fingerprint import dataset_fingerprint, make_fingerprint

    ids = np.concatenate([dataset.splits[s].ids for s in splits])
    labels = np.concatenate([dataset.splits[s].labels for s in splits])
    texts = [t for s in splits for t in dataset.splits[s].texts]
    logits = teacher_logits(dataset, ids) if logits is None else logits
    features = features or {}
    entries = [{"name": f"pooled.{layer}", "layer": layer, "pooling": "mean", "width": int(values.shape[1]),
                "dtype": "fp32"} for layer, values in sorted(features.items())]
    capture = {"kind": kind, "k": k, **({"features": [e["name"] for e in entries]} if entries else {})}
    fingerprint = make_fingerprint(dataset_fingerprint(dataset, list(splits), ids, labels),
                                   {"name": "synthetic-teacher"}, capture)
    writer = CacheWriter(out, ids=ids, labels=labels, texts=texts, classes=dataset.classes, fingerprint=fingerprint,
                         kind=kind, width=len(dataset.classes), dtype="fp32", k=k, shard_rows=64,
                         features=entries or None, teacher_layers=teacher_layers if entries else None)
    writer.prepare()
    for index in writer.pending_shards():
        start, stop = writer.shard_range(index)
        block = logits[start:stop]
        arrays = {"logits": block} if kind == "dense" else topk_outputs(block, k)
        arrays.update({f"feature.pooled.{layer}": values[start:stop] for layer, values in features.items()})
        writer.write_shard(index, arrays)
    writer.finalize()
    return TeacherCache.open(out)


def bow_config(**changes) -> TrainConfig:
    """A bow student small enough that a whole arm takes well under a second."""
    base = dict(student="bow", bow_buckets=2**12, bow_dim=16, batch_size=16, epochs=2, learning_rate=0.05)
    base.update(changes)
    return TrainConfig(**base)


def make_tiny_bert(dataset: TextDataset, out: Path, num_labels: int | None = None, layers: int = 2,
                   with_weights: bool = False, seed: int = 0) -> Path:
    """A 2-layer, hidden-32 BERT with a WordLevel tokenizer built from the dataset's words; no download."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, normalizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = sorted({w for s in dataset.splits.values() for t in s.texts for w in t.lower().split()})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128,
                        num_labels=num_labels or len(dataset.classes))
    out.mkdir(parents=True, exist_ok=True)
    if with_weights:
        torch.manual_seed(seed)
        BertForSequenceClassification(config).save_pretrained(out)
    else:
        config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def interrupted_then_resumed(banking, spec: str, tmp_path, monkeypatch, cache=None):
    """Train ``spec`` uninterrupted into tmp_path/reference, then into tmp_path/resumed stopped in step 5 (after the
    step-4 checkpoint, kept as ``checkpoints-seen`` for inspection) and rerun; returns the resumed arm's folder."""
    from distillab.train.arms import Arm
    from distillab.train.trainer import train_arm

    config = bow_config(max_steps=6, checkpoint_every=2)
    train_arm(banking, spec, config, tmp_path / "reference", cache=cache)

    class Interrupted(Exception):
        pass

    original, calls = Arm.loss_of, {"n": 0}

    def interrupting(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise Interrupted
        return original(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(Arm, "loss_of", interrupting)
        with pytest.raises(Interrupted):
            train_arm(banking, spec, config, tmp_path / "resumed", cache=cache)
    arm_dir = next(p for p in (tmp_path / "resumed").iterdir() if p.is_dir())
    seen = arm_dir / "checkpoints" / "step-00000004"
    shutil.copytree(seen, tmp_path / "seen")
    train_arm(banking, spec, config, tmp_path / "resumed", cache=cache)
    shutil.move(str(tmp_path / "seen"), arm_dir / "checkpoints-seen")
    return arm_dir


@pytest.fixture(scope="session")
def banking():
    """160 train / 50 test rows of banking77 (short texts, 77 classes)."""
    return banking_slice()


@pytest.fixture(scope="session")
def banking_cache(banking, tmp_path_factory):
    """A dense teacher cache of ``banking``'s training rows."""
    return write_cache(banking, tmp_path_factory.mktemp("cache") / "dense")
