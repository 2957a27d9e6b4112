"""Use a trained student: ``distillab.load_student(dir)`` and ``distillab predict``.

A student folder is what training writes to ``arms/NAME/model/``: the bag-of-n-grams student
(``config.json`` with ``model_type: distillab-bow`` + ``model.safetensors``) or a Hugging Face
sequence classifier (``save_pretrained`` + its tokenizer). Texts go through the training code's
own featuriser and forward (:mod:`distillab.train.students`, :func:`distillab.train.predict.predict_logits`),
so a served student gives the logits its saved predictions hold.

``distillab run`` also writes ``temperature.json`` there (the post-hoc temperature the audit
fitted); probabilities are ``softmax(logits / T)`` with it unless ``raw=True``.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from distillab.errors import InputError
from distillab.io import read_json

TEMPERATURE_FILE = "temperature.json"
DEFAULT_BATCH_SIZE = 64


class _OneProcess:
    """What :func:`predict_logits` asks of an Accelerator, for one serving process: nothing to shard or gather.

    A real Accelerator would share process-wide state (mixed precision, process group) with any
    training the caller runs in the same process.
    """

    def prepare_data_loader(self, loader):
        return loader

    def gather_for_metrics(self, tensors):
        return tensors


class Student:
    """A trained student with scikit-learn's prediction interface.

    ``classes_`` holds the class names (``predict`` returns them); ``predict_proba`` gives float64
    ``[n, K]`` in that column order; ``temperature`` is the one applied (None: ``raw`` or none saved).
    """

    def __init__(self, student, model, classes: list, temperature: float | None, batch_size: int):
        self.student = student
        self.model = model.eval()
        self.classes_ = np.asarray(classes)
        self.temperature = temperature
        self.batch_size = batch_size

    def logits(self, texts) -> np.ndarray:
        """Raw float32 logits ``[n, K]``, computed as training computed its saved predictions."""
        from distillab.train.predict import fixed_threads, predict_logits

        texts = _text_list(texts)
        if not texts:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        features = self.student.featurize(texts)
        threads = self.student.num_threads  # as training predicted (the bow student: one thread)
        with contextlib.nullcontext() if threads is None else fixed_threads(threads):
            return predict_logits(_OneProcess(), self.model, self.student, features, self.batch_size)

    def predict_proba(self, texts) -> np.ndarray:
        """``softmax(logits / T)`` (float64 ``[n, K]``), T from ``temperature.json`` unless loaded raw."""
        from distillab.audit.metrics import softmax

        logits = self.logits(texts).astype(np.float64)
        return softmax(logits / self.temperature if self.temperature is not None else logits)

    def predict(self, texts) -> np.ndarray:
        """The most probable class name per text (a positive temperature never changes it)."""
        return self.classes_[self.logits(texts).argmax(axis=1)]


def load_student(directory, raw: bool = False, batch_size: int = DEFAULT_BATCH_SIZE) -> Student:
    """The student saved in ``directory`` (bag-of-n-grams or Hugging Face), ready to predict on CPU.

    ``raw=True`` ignores ``temperature.json``. Every problem with the folder is one
    :class:`InputError` naming the file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: no such folder; give a student folder such as runs/NAME/arms/ARM/model")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise InputError(f"{directory}: not a student folder (no config.json); give runs/NAME/arms/ARM/model")
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise InputError(f"{config_path}: not a model config (a JSON object)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be a positive integer, got {batch_size!r}")
    if (directory / "quantization_config.json").is_file():  # an int8 copy written by `distillab quantize`
        from distillab.quantize.model import load_quantized_student

        return load_quantized_student(directory, raw=raw, batch_size=batch_size)
    temperature = None if raw else read_temperature(directory)
    load = _load_bow if config.get("model_type") == "distillab-bow" else _load_hf
    return Student(*load(directory, config), temperature=temperature, batch_size=batch_size)


def read_temperature(directory: Path) -> float | None:
    """The fitted temperature in ``directory/temperature.json``; None when the folder has none."""
    path = directory / TEMPERATURE_FILE
    if not path.exists():
        return None
    record = read_json(path)
    value = record.get("temperature") if isinstance(record, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{path}: key 'temperature' must be a finite number > 0, got {value!r} "
                         "(rerun the audit, or pass --raw for uncalibrated probabilities)")
    return float(value)


def _load_bow(directory: Path, config: dict):
    from distillab.train.students import load_bow_model

    keys = ("num_labels", "buckets", "dim", "ngrams")
    bad = [k for k in keys if type(config.get(k)) is not int or config[k] < 1]
    if "init_seed" in config and type(config["init_seed"]) is not int:
        bad.append("init_seed")
    classes = config.get("classes")
    if classes is not None and (not isinstance(classes, list) or len(classes) != config.get("num_labels")):
        bad.append("classes")
    if bad:
        raise InputError(f"{directory / 'config.json'}: key {bad[0]!r} is missing or invalid "
                         "for a bag-of-n-grams student")
    if not (directory / "model.safetensors").is_file():
        raise InputError(f"{directory}: no weights (model.safetensors) beside its config.json")
    try:
        student, model = load_bow_model(directory)
    except InputError:
        raise
    except Exception as exc:  # a truncated file, or weights of another size than config.json says
        raise InputError(f"{directory / 'model.safetensors'}: cannot load ({_first_line(exc)})") from None
    return student, model, classes if classes is not None else list(range(student.num_labels))


def _load_hf(directory: Path, config: dict):
    """``AutoModelForSequenceClassification.from_pretrained`` as saved, with the tokenizer saved beside it."""
    from distillab.train.students import HFStudent

    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise InputError(f"{directory / 'config.json'}: not a trained classifier (architectures {architectures}); "
                         "give the model folder a distillab run or train wrote")
    id2label = config.get("id2label") or {}
    num_labels = len(id2label)
    try:
        classes = [id2label[str(i)] for i in range(num_labels)]
    except KeyError:
        raise InputError(f"{directory / 'config.json'}: id2label must map 0..{num_labels - 1} to class names") from None
    # max_length=None: truncate at the length training used, which the saved tokenizer records.
    student = HFStudent(str(directory), num_labels, classes=classes, max_length=None)
    if not student.has_weights:  # from_config would give a randomly initialised model
        raise InputError(f"{directory}: no weights (model.safetensors or pytorch_model.bin) beside its config.json")
    try:
        model = student.new_model()
    except Exception as exc:  # a truncated or mismatched weights file
        raise InputError(f"{directory}: cannot load its weights ({_first_line(exc)})") from None
    return student, model, classes


def _first_line(exc: Exception) -> str:
    """A library's error in one line (safetensors and transformers messages can span several)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _text_list(texts) -> list[str]:
    if isinstance(texts, str):
        raise InputError("texts must be a list of strings, not one string (wrap it: [text])")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"text {i} is {type(text).__name__}, not a string")
    return texts
