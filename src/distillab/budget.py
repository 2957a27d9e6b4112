"""What a distillation run costs against pre-training the student, and when cheaper serving pays it back.

The arithmetic is the standard one (Kaplan et al. 2020; Hoffmann et al. 2022): a forward pass
costs about ``2·N`` FLOPs per token and a training step (forward + backward) about ``6·N``, with
``N`` the model's **non-embedding** parameters. Distilling on ``D`` tokens runs the teacher
forward only and trains the student::

    distillation FLOPs   = D · (2·N_teacher + 6·N_student)
    student pre-training = D_pretrain · 6·N_student

Worked example (the test suite computes it): a 70B teacher, an 8B student and 20B distillation
tokens cost 20e9 · (2·70e9 + 6·8e9) = 3.76e21 FLOPs, against 2T · 6·8e9 = 9.6e22 for pre-training
the student, a ratio of 3.9%. (A widely copied version prints 2.96e21 / 3.1%: it used 1·N_student
instead of 6·N_student for the student's training step.)

What ``N`` counts, and why:

- **Embedding lookups are excluded.** Reading row ``i`` of a token (or position, or token-type)
  embedding table is a memory read, not a matrix multiply: those parameters cost storage, not FLOPs.
- **The LM head is included, tied or not.** Projecting the last hidden state onto the vocabulary
  is a ``d × V`` matmul at every position. When the head is *tied* to the input embedding (one
  stored matrix, e.g. Gemma, SmolLM2), that matrix is still multiplied once per token, so its
  ``d·V`` parameters are added to ``N`` even though they are stored only once, as the embedding.
- Attention's own FLOPs (about ``2·n_layer·n_ctx·d`` per token) are left out, as in the standard
  formula; they matter only for contexts long against ``d``.

Parameter counts come from numbers (``70e9``, ``8B``) or model folders: the architecture is
built from ``config.json`` on PyTorch's ``meta`` device (shapes only, no memory, no weights read),
whose modules say which parameters are embedding lookups and whether the head is tied, and the
tensors the folder's safetensors headers list (a few KB, never the tensors themselves) are counted
under that classification. So a checkpoint decides what exists: a sentence-transformers folder
(encoder weights under a ``...ForMaskedLM`` config, no head) is counted without a head, which gives
85.65M for all-mpnet-base-v2 and 10.79M for all-MiniLM-L6-v2. Folders without safetensors (or with
quantised ones) are counted from the architecture alone; architectures transformers cannot build,
from the tensor names alone.

Measured numbers of a run turn FLOPs into device-hours and money: the teacher capture's rows/s,
the student's step time, each model's serving time per request and a price per device-hour give
the cost per million requests and the break-even request count (the one-off distillation cost
divided by the serving cost saved per request).

Everything here is a pure function of its inputs (torch and transformers are imported only to
count a folder); ``distillab budget`` is a thin wrapper (:mod:`distillab.budget_command`).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from distillab.errors import InputError
from distillab.safetensors_header import read_header

SECONDS_PER_HOUR = 3600.0
MS_PER_HOUR = 3_600_000.0
SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}

# Header-only counting (architectures transformers cannot build): the module names (the tensor name
# without its last component) of embedding lookups and of output heads.
EMBEDDING_MODULES = {"embed_tokens", "word_embeddings", "wte", "wpe", "embed_in", "embed_positions",
                     "position_embeddings", "token_type_embeddings", "tok_embeddings", "shared", "embeddings"}
HEAD_MODULES = {"lm_head", "embed_out", "output"}

NON_EMBEDDING_NOTE = (
    "N = non-embedding parameters: embedding lookups (token, position, token-type tables) are memory reads, "
    "not matmuls, and are left out; the LM head is a d x V matmul at every position and is counted, also "
    "when it is tied to (stored as) the input embedding"
)
ATTENTION_NOTE = "attention's own FLOPs (about 2*n_layer*n_ctx*d per token) are not included, as in the standard formula"


# --------------------------------------------------------------------------- inputs


def parse_number(value, name: str, *, integer: bool = False) -> float:
    """A positive finite number from ``70e9``, ``8B``, ``2T``, ``1.5k`` or a number; one-line error otherwise.

    Suffixes (case-insensitive): k = 1e3, M = 1e6, B or G = 1e9, T = 1e12.
    """
    number = value
    if isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        scale = 1.0
        if text and text[-1].lower() in SUFFIXES and not text.lower().endswith(("inf", "nan")):
            text, scale = text[:-1], SUFFIXES[text[-1].lower()]
        try:
            number = float(text) * scale
        except ValueError:
            raise InputError(f"{name} must be a number such as 8e9 or 8B, got {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise InputError(f"{name} must be a number, got {value!r}")
    number = float(number)
    if not math.isfinite(number) or number <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    if integer and number != int(number):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    return number


def _optional(value, name: str) -> float | None:
    return None if value is None else parse_number(value, name)


# --------------------------------------------------------------------------- counting a model folder


def read_safetensors_shapes(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (dtype, shape)}`` from a safetensors file's JSON header; the tensors are never read."""
    header, _ = read_header(path)
    shapes = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)):
            raise InputError(f"{path}: tensor {name!r} has no valid 'shape' in the header")
        shapes[name] = (str(info.get("dtype")), tuple(shape))
    return shapes


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.safetensors") if p.is_file())


def _header_shapes(folder: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in _weight_files(folder):
        shapes.update(read_safetensors_shapes(file))
    return shapes


def _check_folder(path) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"model folder {str(path)!r} does not exist")
    if not folder.is_dir():
        raise InputError(f"{str(path)!r} is not a folder (give a model folder holding config.json, or a number)")
    if not (folder / "config.json").is_file():
        raise InputError(f"model folder {str(path)!r} has no config.json (a Hugging Face model folder is needed)")
    return folder


def _read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{folder / 'config.json'}: not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"{folder / 'config.json'}: not a JSON object")
    return config


def _text_config(config: dict) -> dict:
    return config.get("text_config") if isinstance(config.get("text_config"), dict) else config


def _skeleton(folder: Path) -> dict:
    """The architecture built from config.json on the meta device (shapes only): which parameters are what.

    Returns ``{architecture, prefix, params: {name: numel}, embedding: {names}, head: {names},
    tied: name of the head weight that is the input embedding, or None}``.
    """
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    architectures = getattr(config, "architectures", None) or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    with torch.device("meta"):
        if cls is not None:
            model = cls(config)
        else:
            try:
                model = transformers.AutoModelForCausalLM.from_config(config)
            except ValueError:
                model = transformers.AutoModel.from_config(config)
    named = dict(model.named_parameters())  # shared (tied) tensors appear once, under their first name
    name_of = {id(p): name for name, p in named.items()}
    embedding = {name_of[id(p)] for module in model.modules() if isinstance(module, torch.nn.Embedding)
                 for p in module.parameters(recurse=False) if id(p) in name_of}
    # position tables kept as a bare nn.Parameter (ViT, CLIP, ...) are lookups too
    embedding |= {name for name in named if re.search(r"pos(ition)?_?embed", name)}
    head_module = None
    try:
        head_module = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        pass
    head, tied = set(), None
    if head_module is not None:
        head_weight = getattr(head_module, "weight", None)
        if head_weight is not None and name_of.get(id(head_weight)) in embedding:
            tied = name_of[id(head_weight)]
        where = next((name for name, module in model.named_modules() if module is head_module), "")
        root = where.split(".")[0]  # the whole head (lm_head, cls, ...): its transform layers run per token too
        if root == getattr(model, "base_model_prefix", None):
            root = where
        head = {name for name in named if name.startswith(root + ".")} if root else set()
        head |= {tied} if tied else set()
    return {"architecture": type(model).__name__, "prefix": getattr(model, "base_model_prefix", "") or "",
            "params": {name: p.numel() for name, p in named.items()}, "embedding": embedding, "head": head,
            "tied": tied}


def _head_size(skeleton: dict) -> int:
    return sum(skeleton["params"][name] for name in skeleton["head"])


def _count_skeleton(skeleton: dict) -> dict:
    """Counts from the architecture alone (no weights to compare with)."""
    params, embedding = skeleton["params"], skeleton["embedding"]
    stored = sum(params.values())
    lookups = sum(params[name] for name in embedding)
    tied = skeleton["tied"]
    return {"method": "config", "architecture": skeleton["architecture"],
            "non_embedding": stored - lookups + (params[tied] if tied else 0), "embedding": lookups,
            "lm_head": _head_size(skeleton), "lm_head_tied": tied is not None, "stored": stored}


def _count_checkpoint(skeleton: dict, shapes: dict, notes: list[str]) -> dict:
    """Count the tensors the checkpoint holds, classified by the architecture.

    The checkpoint decides what exists (a sentence-transformers folder keeps an encoder's weights
    under a ``...ForMaskedLM`` config, with no LM head, and a pooler the head architecture lacks);
    the architecture decides which tensors are embedding lookups and whether a head that is not
    stored separately is tied to the embedding. Integer tensors are buffers (position ids), not
    parameters.
    """
    params, prefix = skeleton["params"], skeleton["prefix"]

    def as_skeleton_name(name: str) -> str | None:
        if name in params:
            return name
        if prefix and f"{prefix}.{name}" in params:  # a base-model checkpoint under a head architecture
            return f"{prefix}.{name}"
        if prefix and name.startswith(prefix + ".") and name[len(prefix) + 1:] in params:
            return name[len(prefix) + 1:]
        return None

    sizes = {name: math.prod(shape) for name, (dtype, shape) in shapes.items() if dtype.startswith(("F", "BF"))}
    mapped = {name: as_skeleton_name(name) for name in sizes}
    present = {known for known in mapped.values() if known}
    tied = skeleton["tied"]
    own_head = skeleton["head"] - {tied}  # head tensors other than the shared embedding
    head_in_use = bool(skeleton["head"])
    if own_head and not own_head & present:
        notes.append(f"the checkpoint holds none of the {skeleton['architecture']} head's own tensors "
                     f"({sorted(own_head)[0]}, ...): a base-model checkpoint, counted without the head")
        head_in_use, tied = False, None
    if tied:  # a checkpoint may also store the tied head under its own name: the same matrix, not counted twice
        copies = [name for name, known in mapped.items() if known is None and _module(name) in HEAD_MODULES]
        for name in copies:
            del sizes[name], mapped[name]
        if copies:
            notes.append(f"{copies[0]} is stored although the head is tied to the embedding: counted once")
    embedding = {name for name, known in mapped.items()
                 if (known in skeleton["embedding"] if known else _module(name) in EMBEDDING_MODULES)}
    head = sum(sizes[name] for name, known in mapped.items() if known in skeleton["head"]) if head_in_use else 0
    if tied and tied not in present:
        head += skeleton["params"][tied]
    stored = sum(sizes.values())
    lookups = sum(sizes[name] for name in embedding)
    tied_matmul = skeleton["params"][tied] if tied else 0  # the embedding matrix, used again as the head's matmul
    return {"method": "config+safetensors-headers", "architecture": skeleton["architecture"],
            "non_embedding": stored - lookups + tied_matmul, "embedding": lookups, "lm_head": head,
            "lm_head_tied": tied is not None, "stored": stored}


def _module(name: str) -> str:
    """The module a tensor belongs to: ``model.embed_tokens.weight`` -> ``embed_tokens``."""
    parts = name.split(".")
    return parts[-2] if len(parts) > 1 else parts[0]


def _count_from_headers(folder: Path, shapes: dict, config: dict) -> dict:
    """Classify the checkpoint's tensors by name alone (for architectures transformers cannot build)."""
    sizes = {name: math.prod(shape) for name, (dtype, shape) in shapes.items() if dtype.startswith(("F", "BF"))}
    embedding_names = [n for n in sizes if _module(n) in EMBEDDING_MODULES]
    head_names = [n for n in sizes if _module(n) in HEAD_MODULES and n.count(".") <= 1]  # a top-level head only
    text = _text_config(config)
    tie = text.get("tie_word_embeddings", config.get("tie_word_embeddings", True))
    head = sum(sizes[n] for n in head_names)
    tied = False
    if not head_names and tie:  # the head is the input embedding, saved once as the embedding
        vocab, width = text.get("vocab_size"), text.get("hidden_size") or text.get("d_model") or text.get("n_embd")
        if isinstance(vocab, int) and isinstance(width, int):
            head, tied = vocab * width, True
    stored = sum(sizes.values())
    embedding = sum(sizes[n] for n in embedding_names)
    return {
        "method": "safetensors-headers",
        "architecture": (config.get("architectures") or [None])[0],
        "non_embedding": stored - embedding + (head if tied else 0),
        "embedding": embedding,
        "lm_head": head,
        "lm_head_tied": tied,
        "stored": stored,
    }


PACKED_DTYPES = ("U8", "I8", "I4", "U4")  # quantised weights: header element counts are storage, not parameters


def count_parameters(path: str | os.PathLike, method: str = "auto") -> dict:
    """Non-embedding parameter count of the model in folder ``path``, without loading its weights.

    Returns ``{path, method, architecture, non_embedding, embedding, lm_head, lm_head_tied, stored,
    weights_params, notes}``: ``non_embedding`` is the ``N`` of the FLOP formulas (see the module
    docstring: embedding lookups out, the LM head in, tied or not), ``embedding`` the lookup tables
    left out, ``lm_head`` the head's parameters (``lm_head_tied``: its weight is the embedding's),
    ``stored`` the distinct parameters counted, ``weights_params`` the floating-point elements the
    folder's safetensors headers hold (None without safetensors files).

    ``method``: ``"auto"`` (default) builds the architecture from config.json on the meta device (no
    memory) and counts the tensors the safetensors headers list, classified by it (a checkpoint with
    no head tensors under a head architecture, as sentence-transformers folders are, is counted
    without the head), or the architecture alone when there are no safetensors files or they are
    quantised; ``"config"``: the architecture alone; ``"headers"``: the tensors, classified by name
    (what ``auto`` falls back to when transformers cannot build the architecture).
    """
    if method not in ("auto", "config", "headers"):
        raise InputError(f"method must be auto, config or headers, got {method!r}")
    folder = _check_folder(path)
    config = _read_config(folder)
    shapes = _header_shapes(folder)
    weights_params = (sum(math.prod(shape) for dtype, shape in shapes.values() if dtype.startswith(("F", "BF")))
                      if shapes else None)
    packed = any(dtype in PACKED_DTYPES for dtype, _ in shapes.values())
    notes = []
    if packed:
        notes.append("the weights include 8-bit or packed integer tensors (a quantised checkpoint): counted from "
                     "the architecture, not the headers")
    counted = None
    if method in ("auto", "config"):
        try:
            skeleton = _skeleton(folder)
        except Exception as exc:  # an architecture transformers cannot build here (remote code, too new, ...)
            if method == "config":
                raise InputError(f"{folder}: transformers cannot build this architecture from config.json "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
            notes.append(f"architecture not buildable from config.json ({type(exc).__name__}); counted from "
                         "safetensors tensor names")
        else:
            if method == "auto" and shapes and not packed:
                counted = _count_checkpoint(skeleton, shapes, notes)
            else:
                counted = _count_skeleton(skeleton)
    if counted is None:
        if not shapes:
            raise InputError(f"{folder}: cannot count parameters: transformers cannot build the architecture and "
                             "there are no .safetensors weights to read the shapes from")
        counted = _count_from_headers(folder, shapes, config)
    return {"path": str(folder), **counted, "weights_params": weights_params, "notes": notes}


# --------------------------------------------------------------------------- the budget


def _params(value, path, role: str) -> tuple[float, dict]:
    if (value is None) == (path is None):
        raise InputError(f"give exactly one of --{role}-params N and --{role} DIR (the {role}'s size)")
    if path is not None:
        counted = count_parameters(path)
        return float(counted["non_embedding"]), {"source": "folder", **counted}
    number = parse_number(value, f"--{role}-params")
    return number, {"source": "given", "non_embedding": number}


def estimate(
    *,
    tokens,
    teacher_params=None,
    student_params=None,
    teacher_dir: str | os.PathLike | None = None,
    student_dir: str | os.PathLike | None = None,
    pretrain_tokens=None,
    capture_rows_per_s=None,
    tokens_per_row=None,
    student_step_s=None,
    tokens_per_step=None,
    devices=1,
    device_flops=None,
    mfu=None,
    teacher_ms_per_request=None,
    student_ms_per_request=None,
    price_per_device_hour=None,
) -> dict:
    """The distillation budget as a JSON-ready dict (what ``distillab budget --json`` prints).

    Sizes: ``teacher_params``/``student_params`` (non-embedding ``N``) or ``teacher_dir``/``student_dir``
    (counted by :func:`count_parameters`). ``tokens``: distillation tokens; ``pretrain_tokens``: the
    student's pre-training tokens to compare against.

    Device time (all optional): the teacher capture takes ``tokens / (capture_rows_per_s ·
    tokens_per_row)`` seconds and the student ``tokens / tokens_per_step · student_step_s``, each on
    ``devices`` devices (device-hours = hours · devices). A part without a measurement is estimated
    from its FLOPs when ``device_flops`` (peak FLOP/s of one device) is given, at ``mfu`` (model FLOPs
    utilisation, default 0.4). Serving: ``*_ms_per_request`` is device-milliseconds per request;
    with ``price_per_device_hour`` everything is also priced. The break-even request count is the
    distillation device-hours divided by the device-hours saved per request (the price cancels, so
    it is given without a price too; one price for training and serving devices is assumed).
    """
    n_teacher, teacher = _params(teacher_params, teacher_dir, "teacher")
    n_student, student = _params(student_params, student_dir, "student")
    tokens = parse_number(tokens, "--tokens")
    pretrain_tokens = _optional(pretrain_tokens, "--pretrain-tokens")
    teacher_forward = tokens * (2.0 * n_teacher)
    student_train = tokens * (6.0 * n_student)
    distillation = tokens * (2.0 * n_teacher + 6.0 * n_student)
    pretraining = None if pretrain_tokens is None else pretrain_tokens * (6.0 * n_student)
    flops = {
        "teacher_forward": teacher_forward,
        "student_train": student_train,
        "distillation": distillation,
        "student_pretraining": pretraining,
        "distillation_over_pretraining": None if pretraining is None else distillation / pretraining,
        "formula": "tokens*(2*N_teacher + 6*N_student) vs pretrain_tokens*6*N_student",
    }
    result = {
        "teacher": teacher,
        "student": student,
        "tokens": tokens,
        "pretrain_tokens": pretrain_tokens,
        "flops": flops,
        "time": _device_time(tokens, teacher_forward, student_train, capture_rows_per_s, tokens_per_row,
                             student_step_s, tokens_per_step, devices, device_flops, mfu),
        "notes": [NON_EMBEDDING_NOTE, ATTENTION_NOTE],
    }
    result["serving"] = _serving(result["time"], teacher_ms_per_request, student_ms_per_request, price_per_device_hour)
    for role in ("teacher", "student"):
        result["notes"] += [f"{role}: {note}" for note in result[role].get("notes", [])]
    return result


def _device_time(tokens, teacher_flops, student_flops, rows_per_s, tokens_per_row, step_s, tokens_per_step,
                 devices, device_flops, mfu) -> dict | None:
    rows_per_s = _optional(rows_per_s, "--capture-rows-per-s")
    tokens_per_row = _optional(tokens_per_row, "--tokens-per-row")
    step_s = _optional(step_s, "--student-step-s")
    tokens_per_step = _optional(tokens_per_step, "--tokens-per-step")
    devices = parse_number(devices, "--devices", integer=True)
    device_flops = _optional(device_flops, "--device-flops")
    if mfu is not None:
        mfu = parse_number(mfu, "--mfu")
        if mfu > 1:
            raise InputError(f"--mfu is a fraction of peak in (0, 1], got {mfu:g}")
        if device_flops is None:
            raise InputError("--mfu needs --device-flops (the peak FLOP/s it is a fraction of)")
    if (rows_per_s is None) != (tokens_per_row is None):
        raise InputError("--capture-rows-per-s and --tokens-per-row go together (rows/s times tokens per row = tokens/s)")
    if (step_s is None) != (tokens_per_step is None):
        raise InputError("--student-step-s and --tokens-per-step go together (tokens per optimizer step)")
    if rows_per_s is None and step_s is None and device_flops is None:
        return None
    utilisation = 0.4 if mfu is None else mfu

    def part(measured_hours, flops, how):
        if measured_hours is not None:
            return {"device_hours": measured_hours * devices, "hours": measured_hours, "source": how}
        if device_flops is not None:
            device_hours = flops / (device_flops * utilisation) / SECONDS_PER_HOUR
            return {"device_hours": device_hours, "hours": device_hours / devices,
                    "source": f"estimated: FLOPs / ({device_flops:.3g} FLOP/s x {utilisation:g} MFU)"}
        return None

    teacher = part(None if rows_per_s is None else tokens / (rows_per_s * tokens_per_row) / SECONDS_PER_HOUR,
                   teacher_flops, f"measured: {rows_per_s:g} rows/s x {tokens_per_row:g} tokens/row"
                   if rows_per_s else "")
    student = part(None if step_s is None else tokens / tokens_per_step * step_s / SECONDS_PER_HOUR,
                   student_flops, f"measured: {step_s:g} s/step x {tokens_per_step:g} tokens/step" if step_s else "")
    total = None if teacher is None or student is None else teacher["device_hours"] + student["device_hours"]
    return {"devices": int(devices), "teacher_capture": teacher, "student_training": student,
            "distillation_device_hours": total}


def _serving(time: dict | None, teacher_ms, student_ms, price) -> dict | None:
    teacher_ms = _optional(teacher_ms, "--teacher-ms-per-request")
    student_ms = _optional(student_ms, "--student-ms-per-request")
    price = _optional(price, "--price-per-device-hour")
    if teacher_ms is None and student_ms is None:
        if price is not None and time is not None:
            return {"price_per_device_hour": price, **_distillation_cost(time, price)}
        return None

    def per_million(ms):
        if ms is None:
            return None
        hours = ms * 1e6 / MS_PER_HOUR
        return {"ms_per_request": ms, "device_hours_per_million_requests": hours,
                "cost_per_million_requests": None if price is None else hours * price}

    out = {"price_per_device_hour": price, "teacher": per_million(teacher_ms), "student": per_million(student_ms)}
    if time is not None:
        out.update(_distillation_cost(time, price))
    distill_hours = (time or {}).get("distillation_device_hours")
    break_even = None
    reason = None
    if teacher_ms is None or student_ms is None:
        reason = "needs both --teacher-ms-per-request and --student-ms-per-request"
    elif student_ms >= teacher_ms:
        reason = "never: the student is not cheaper to serve than the teacher"
    elif distill_hours is None:
        reason = ("needs the distillation's device-hours: --capture-rows-per-s/--tokens-per-row and "
                  "--student-step-s/--tokens-per-step, or --device-flops")
    else:
        break_even = distill_hours * MS_PER_HOUR / (teacher_ms - student_ms)
    out["break_even_requests"] = break_even
    out["break_even_note"] = reason or "distillation device-hours / device-hours saved per request"
    return out


def _distillation_cost(time: dict, price) -> dict:
    hours = time.get("distillation_device_hours")
    return {"distillation_cost": None if hours is None or price is None else hours * price}


# --------------------------------------------------------------------------- text output


def sci(x: float | None) -> str:
    """3 significant digits in compact scientific notation: 3.76e21 (no '+', no leading zero)."""
    if x is None:
        return "-"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def percent(ratio: float) -> str:
    """3.9% (one decimal from 1% up), 0.36% / 0.0012% (two significant digits below)."""
    return f"{ratio:.1%}" if ratio >= 0.01 else f"{100 * ratio:.2g}%"


def human(x: float | None) -> str:
    """70.0B, 8.03B, 135M, 2.00T."""
    if x is None:
        return "-"
    for value, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= value:
            return f"{x / value:.3g}{suffix}"
    return f"{x:.3g}"


def _size_line(role: str, info: dict) -> str:
    if info["source"] == "given":
        return f"{role:<8} N = {human(info['non_embedding'])} (given)"
    if not info["lm_head"]:
        head = "no LM head"
    else:
        head = f"LM head {human(info['lm_head'])} " + ("tied to the embedding, counted" if info["lm_head_tied"]
                                                       else "counted")
    return (f"{role:<8} N = {human(info['non_embedding'])} non-embedding from {info['path']} "
            f"({info['architecture']}, by {info['method']}; embedding lookups {human(info['embedding'])} left out; "
            f"{head})")


def format_budget(result: dict) -> str:
    """The plain-text table ``distillab budget`` prints."""
    flops = result["flops"]
    rows = [
        ("teacher forward", f"{human(result['tokens'])} tokens x 2 x {human(result['teacher']['non_embedding'])}",
         sci(flops["teacher_forward"])),
        ("student training", f"{human(result['tokens'])} tokens x 6 x {human(result['student']['non_embedding'])}",
         sci(flops["student_train"])),
        ("distillation", "teacher forward + student training", sci(flops["distillation"])),
    ]
    if flops["student_pretraining"] is not None:
        rows.append(("student pre-training",
                     f"{human(result['pretrain_tokens'])} tokens x 6 x {human(result['student']['non_embedding'])}",
                     sci(flops["student_pretraining"])))
    lines = [_size_line("teacher", result["teacher"]), _size_line("student", result["student"]), ""]
    width = max(len(r[1]) for r in rows)
    lines.append(f"{'FLOPs':<22}{'how':<{width + 2}}{'FLOPs':>9}")
    lines += [f"{name:<22}{how:<{width + 2}}{value:>9}" for name, how, value in rows]
    if flops["distillation_over_pretraining"] is not None:
        lines.append(f"{'distillation / pre-training':<{22 + width + 2}}{percent(flops['distillation_over_pretraining']):>9}")
    time = result.get("time")
    if time:
        lines.append("")
        lines.append(f"device time ({time['devices']} device(s))")
        for key, label in (("teacher_capture", "teacher capture"), ("student_training", "student training")):
            part = time[key]
            lines.append(f"  {label:<20}" + ("-" if part is None else
                                             f"{part['device_hours']:.4g} device-h  ({part['source']})"))
        if time["distillation_device_hours"] is not None:
            lines.append(f"  {'distillation':<20}{time['distillation_device_hours']:.4g} device-h")
    serving = result.get("serving")
    if serving:
        price = serving.get("price_per_device_hour")
        lines.append("")
        lines.append("serving" + (f" (price {price:g} per device-hour)" if price is not None else ""))
        for role in ("teacher", "student"):
            part = serving.get(role)
            if part:
                cost = part["cost_per_million_requests"]
                lines.append(f"  {role:<9}{part['ms_per_request']:g} ms/request  "
                             f"{part['device_hours_per_million_requests']:.4g} device-h per million requests"
                             + ("" if cost is None else f", {cost:,.2f} per million requests"))
        if serving.get("distillation_cost") is not None:
            lines.append(f"  one-off distillation cost {serving['distillation_cost']:,.2f}")
        if "break_even_requests" in serving:
            value = serving["break_even_requests"]
            lines.append("  break-even " + (f"after {sci(value)} requests ({serving['break_even_note']})"
                                            if value is not None else serving["break_even_note"]))
    lines.append("")
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)
