"""Helpers for the teacher tests: a tiny dataset, tokenizer and tiny BERT/Llama models built from configs.

A module of its own (not conftest.py) so that ``from teacher_helpers import ...`` cannot pick up
another folder's conftest under pytest's rootdir imports."""

from __future__ import annotations

import numpy as np

from distillab.data.dataset import TextDataset, TextSplit

CLASSES = ["grain", "crude", "earn"]
WORDS = {
    "grain": "wheat corn harvest bushels farm",
    "crude": "oil barrel opec refinery pipeline",
    "earn": "profit dividend quarter shares revenue",
}


def make_dataset(n_train: int = 30, n_test: int = 12, seed: int = 0, name: str = "tiny") -> TextDataset:
    """Short texts whose words hint at their class, so a trained teacher could separate them."""
    rng = np.random.RandomState(seed)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % len(CLASSES)
        texts = []
        for i, label in enumerate(labels):
            words = WORDS[CLASSES[label]].split() + "the a of market price week".split()
            texts.append(" ".join(rng.choice(words, size=3 + (i * 7) % 9)))
        splits[split] = TextSplit(ids=[f"{name}-{split}-{i}" for i in range(n)], texts=texts, labels=labels)
    return TextDataset(name=name, classes=list(CLASSES), splits=splits, source={"fixture": True})


def vocabulary() -> list[str]:
    words = sorted({w for text in WORDS.values() for w in text.split()} | set("the a of market price week".split()))
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words]


def make_tokenizer(model_input_names: list[str] | None = None):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    extra = {"model_input_names": model_input_names} if model_input_names else {}
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", **extra)


def build_tiny_bert(path, num_labels: int = len(CLASSES), id2label: dict | None = None, seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
                        pad_token_id=0)
    if id2label is not None:
        config.id2label = id2label
        config.label2id = {v: k for k, v in id2label.items()}
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # random init gives logits ~1e-3; spread them so argmax and top-k mean something
        model.classifier.weight.mul_(100.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def build_tiny_mpnet(path, num_labels: int = len(CLASSES), seed: int = 0):
    """The demo teacher's architecture (MPNet), tiny: relative position buckets, padding-aware position ids."""
    import torch
    from transformers import MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = make_tokenizer(["input_ids", "attention_mask"])  # MPNet takes no token_type_ids
    config = MPNetConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=66, num_labels=num_labels, pad_token_id=0)
    model = MPNetForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def build_tiny_llama(path, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def write_dataset_folder(folder, dataset: TextDataset):
    """The dataset as JSONL files plus a YAML spec that loads it back identically (ids, class order)."""
    import json

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    for split_name, split in dataset.splits.items():
        with open(folder / f"{split_name}.jsonl", "w", encoding="utf-8") as handle:
            for row_id, text, label in zip(split.ids.tolist(), split.texts, split.labels.tolist()):
                handle.write(json.dumps({"id": row_id, "text": text, "label": dataset.classes[label]}) + "\n")
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({"path": str(folder), "name": dataset.name, "id_column": "id",
                                    "label_list": list(dataset.classes)}))
    return spec
