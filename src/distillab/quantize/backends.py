"""int8 dynamic quantization of a trained student's Linear layers (and the bow student's embedding table).

Two backends, chosen by :func:`resolve_backend`:

- ``torchao`` (the maintained path): ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` on every
  ``nn.Linear``: int8 weights, symmetric per output row; activations quantized per row (token) at run
  time. torchao has no eager int8 ``EmbeddingBag`` (its ``Int8Tensor`` implements ``embedding`` only, by
  dequantizing the whole table on each call), so the bow student's table stays float32 with it.
- ``torch.ao`` (``torch.ao.quantization.quantize_dynamic``, deprecated in torch but present): every
  ``nn.Linear`` with int8 weights symmetric per output channel and activations quantized per tensor
  (one scale per batch) at run time; every ``nn.EmbeddingBag`` in ``sum``/``mean`` mode with 8-bit
  row-wise weights (a float scale and offset per row). torch.ao's quantized ``EmbeddingBag`` always
  *sums* whatever the float module's mode (it passes mode 0 to its kernel), so a ``mean`` bag is wrapped
  in :class:`MeanEmbeddingBag`, which divides by each bag's length.

Saving never pickles: :func:`quantized_tensors` turns a quantized model into plain int8/uint8/float
tensors for safetensors, and :func:`load_quantized_tensors` rebuilds the backend's modules from them,
bit for bit (a round trip gives identical logits).
"""

from __future__ import annotations

import contextlib
import copy as _copy
import hashlib
import importlib
import importlib.util
import logging
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from distillab.errors import InputError

BACKENDS = ("auto", "torchao", "torch.ao")
# What each backend does, for quantization.json and the sidecar.
SCHEMES = {
    "torchao": {
        "linear": "int8 weights (symmetric, one scale per output row) x int8 activations (symmetric, one scale "
                  "per row, computed at run time): torchao Int8DynamicActivationInt8WeightConfig",
        "embedding_bag": None,
    },
    "torch.ao": {
        "linear": "int8 weights (symmetric, one scale per output channel) x int8 activations (one scale per "
                  "batch, computed at run time): torch.ao.quantization.quantize_dynamic, per_channel_dynamic_qconfig",
        "embedding_bag": "8-bit row-wise weights (uint8 with a float scale and offset per row), weight-only: "
                         "torch.ao float_qparams_weight_only_qconfig",
    },
}
EMBEDDING_NOT_QUANTIZED = (
    "torchao has no eager int8 EmbeddingBag (its Int8Tensor only implements embedding, by dequantizing the whole "
    "table on every call), so the embedding table stays float32: only the Linear layers shrink, and for a "
    "bag-of-n-grams student, whose table holds nearly every weight, the size barely changes (use --backend torch.ao "
    "to quantize the table too)"
)


@dataclass
class Backend:
    """The backend that runs: name, library version, and warnings to record (e.g. a fallback)."""

    name: str
    version: str
    requested: str
    warnings: list[str] = field(default_factory=list)

    @property
    def quantizes_embedding_bag(self) -> bool:
        return SCHEMES[self.name]["embedding_bag"] is not None

    def record(self) -> dict:
        return {"requested": self.requested, "used": self.name, "version": self.version,
                "quantized_engine": torch.backends.quantized.engine if self.name == "torch.ao" else None,
                "scheme": SCHEMES[self.name], "warnings": list(self.warnings)}


def torchao_available() -> tuple[bool, str | None]:
    """(importable, why not): torchao is an optional dependency; an import that fails is 'not available'."""
    if importlib.util.find_spec("torchao") is None:
        return False, "torchao is not installed"
    try:
        with _quiet_torchao():
            module = importlib.import_module("torchao.quantization")
            module.quantize_, module.Int8DynamicActivationInt8WeightConfig  # noqa: B018 (the names we use)
    except Exception as exc:  # a torchao built for another torch fails here, not at find_spec
        return False, f"torchao cannot be imported ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})"
    return True, None


def resolve_backend(requested: str = "auto") -> Backend:
    """The backend for ``--backend``: ``auto`` is torchao when importable, else torch.ao with a recorded warning.

    Asking for a backend that is not installed is an :class:`InputError` naming it.
    """
    if requested not in BACKENDS:
        raise InputError(f"--backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    if requested in ("auto", "torchao"):
        ok, why = torchao_available()
        if ok:
            from importlib.metadata import version

            return Backend("torchao", version("torchao"), requested)
        if requested == "torchao":
            raise InputError(f"--backend torchao: {why} (pip install torchao, or use --backend torch.ao or auto)")
        fallback = (f"{why}; fell back to torch.ao.quantization.quantize_dynamic, which torch deprecates "
                    "(install torchao for the maintained path)")
    ok, why = _torch_ao_available()
    if not ok:
        raise InputError(f"--backend {requested}: {why}")
    backend = Backend("torch.ao", torch.__version__, requested)
    if requested == "auto":
        backend.warnings.append(fallback)
    return backend


def _torch_ao_available() -> tuple[bool, str | None]:
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except Exception as exc:
        return False, f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic ({exc})"
    if "fbgemm" not in torch.backends.quantized.supported_engines and "x86" not in torch.backends.quantized.supported_engines:
        return False, f"this torch build has no x86/fbgemm quantized engine ({torch.backends.quantized.supported_engines})"
    return True, None


@contextlib.contextmanager
def _quiet_torchao():
    """torchao's import logs a warning per CUDA extension it cannot load on a CPU machine, and torch one about
    an enum torchao registers: not the user's concern."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _no_deprecation_noise():
    """torch.ao warns that it is deprecated on every call; the fallback is recorded once instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao.*")
        yield


# --------------------------------------------------------------------------- modules


class MeanEmbeddingBag(nn.Module):
    """torch.ao's quantized EmbeddingBag in ``mean`` mode: its kernel sums, so divide by each bag's length.

    Empty bags give 0, as ``nn.EmbeddingBag(mode="mean")`` does.
    """

    def __init__(self, bag: nn.Module):
        super().__init__()
        self.bag = bag

    def forward(self, input: torch.Tensor, offsets: torch.Tensor | None = None,
                per_sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        if per_sample_weights is not None:
            raise ValueError("per_sample_weights are not supported in mean mode (as in nn.EmbeddingBag)")
        if input.dim() == 2:  # fixed-length bags [batch, length]
            sums = self.bag(input.reshape(-1), torch.arange(0, input.numel(), input.shape[1]))
            return sums / max(input.shape[1], 1)
        sums = self.bag(input, offsets)
        ends = torch.cat([offsets[1:], torch.tensor([input.numel()], dtype=offsets.dtype)])
        lengths = (ends - offsets).clamp_min(1).to(sums.dtype)
        return sums / lengths[:, None]

    def weight(self):
        return self.bag.weight()


def _quantizable_bag(module: nn.Module) -> bool:
    return (isinstance(module, nn.EmbeddingBag) and module.mode in ("sum", "mean") and module.padding_idx is None
            and module.max_norm is None and not module.include_last_offset)


def quantize_model(model: nn.Module, backend: Backend, copy: bool = True) -> tuple[nn.Module, dict]:
    """An int8 copy of ``model`` (the float model is left as it is) and what was quantized.

    The description lists the quantized modules by kind, the modules with weights left in float32, and the
    bytes the weights take in memory before and after. ``copy=False`` quantizes ``model`` itself (its float
    weights are then gone): for a model built only to be quantized.
    """
    model = model.eval()
    float_bytes = _float_bytes(model)
    modes = {name: m.mode for name, m in model.named_modules() if isinstance(m, nn.EmbeddingBag)}
    qmodel = _copy.deepcopy(model) if copy else model
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    bags = [name for name, m in model.named_modules() if _quantizable_bag(m)] if backend.quantizes_embedding_bag else []
    if not linears and not bags:
        raise InputError(f"{type(model).__name__} has no Linear layers to quantize")
    with_params = {name.rpartition(".")[0] for name, _ in model.named_parameters()}
    if backend.name == "torchao":
        _torchao_quantize(qmodel)
    else:
        _torch_ao_quantize(qmodel, linears, bags, modes)
    notes = []
    if modes and not backend.quantizes_embedding_bag:
        notes.append(EMBEDDING_NOT_QUANTIZED)
    elif set(modes) - set(bags):
        notes.append(f"EmbeddingBag {sorted(set(modes) - set(bags))[0]!r} kept in float32 (padding_idx, max_norm, "
                     "max mode or include_last_offset have no quantized equivalent)")
    description = {
        "quantized": {"linear": linears, "embedding_bag": bags},
        "kept_float32": sorted(with_params - set(linears) - set(bags)),
        "memory_bytes": {"float32": float_bytes, "int8": quantized_memory_bytes(qmodel)},
        "notes": notes,
    }
    return qmodel, description


def _torchao_quantize(qmodel: nn.Module) -> None:
    with _quiet_torchao():
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        # set_inductor_config=False: it would change torch._inductor's global settings for the whole process.
        quantize_(qmodel, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False),
                  filter_fn=lambda m, fqn: isinstance(m, nn.Linear))


def _torch_ao_quantize(qmodel: nn.Module, linears: list[str], bags: list[str], modes: dict[str, str]) -> None:
    from torch.ao.quantization import float_qparams_weight_only_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    spec = {name: per_channel_dynamic_qconfig for name in linears}
    spec.update({name: float_qparams_weight_only_qconfig for name in bags})
    with _no_deprecation_noise():
        quantize_dynamic(qmodel, spec, dtype=torch.qint8, inplace=True)
    for name in bags:
        if modes[name] == "mean":
            _set_submodule(qmodel, name, MeanEmbeddingBag(qmodel.get_submodule(name)))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _float_bytes(model: nn.Module) -> int:
    return int(sum(t.numel() * t.element_size() for t in model.state_dict().values() if torch.is_tensor(t)))


# --------------------------------------------------------------------------- plain tensors (save / load)


def _kind(module: nn.Module) -> str | None:
    """'linear' / 'embedding_bag' for a module quantized by either backend, else None."""
    if isinstance(module, MeanEmbeddingBag):
        return "embedding_bag"
    name = type(module).__module__ + "." + type(module).__qualname__
    if name.startswith("torch.ao.nn.quantized.dynamic") and type(module).__name__ == "Linear":
        return "linear"
    if name.startswith("torch.ao.nn.quantized") and type(module).__name__ == "EmbeddingBag":
        return "embedding_bag"
    if isinstance(module, nn.Linear) and type(module.weight).__name__ == "Int8Tensor":
        return "linear"
    return None


def quantized_modules(qmodel: nn.Module) -> dict[str, str]:
    """``{module name: kind}`` of the quantized modules (a MeanEmbeddingBag counts once, not its inner bag)."""
    out = {}
    for name, module in qmodel.named_modules():
        kind = _kind(module)
        if kind is not None and not any(name.startswith(prefix + ".") for prefix in out):
            out[name] = kind
    return out


def quantized_tensors(qmodel: nn.Module, backend: str) -> dict[str, torch.Tensor]:
    """The quantized modules' weights as plain tensors: ``NAME.weight.qdata|scale|zero_point`` (+ ``NAME.bias``)."""
    out = {}
    for name, kind in quantized_modules(qmodel).items():
        module = qmodel.get_submodule(name)
        if backend == "torchao":
            w = module.weight
            out[f"{name}.weight.qdata"] = w.qdata
            out[f"{name}.weight.scale"] = w.scale
            if w.zero_point is not None:
                out[f"{name}.weight.zero_point"] = w.zero_point
            if module.bias is not None:
                out[f"{name}.bias"] = module.bias.detach()
            continue
        w = module.weight()
        out[f"{name}.weight.qdata"] = w.int_repr()
        out[f"{name}.weight.scale"] = w.q_per_channel_scales()
        out[f"{name}.weight.zero_point"] = w.q_per_channel_zero_points()
        if kind == "linear" and module.bias() is not None:
            out[f"{name}.bias"] = module.bias().detach()
    # Copies: the tensors torch.ao unpacks (scales, offsets) can share memory with the packed weight, which is
    # freed with its module; a tensor kept past the module would then read freed memory.
    return {k: v.detach().cpu().clone().contiguous() for k, v in out.items()}


def load_quantized_tensors(qmodel: nn.Module, tensors: dict[str, torch.Tensor], backend: str) -> None:
    """Put saved plain tensors into the quantized modules of ``qmodel`` (a quantized skeleton), in place."""
    for name, kind in quantized_modules(qmodel).items():
        module = qmodel.get_submodule(name)
        try:
            qdata, scale = tensors[f"{name}.weight.qdata"], tensors[f"{name}.weight.scale"]
        except KeyError as exc:
            raise InputError(f"the int8 weights lack tensor {exc.args[0]!r}") from None
        zero_point, bias = tensors.get(f"{name}.weight.zero_point"), tensors.get(f"{name}.bias")
        if backend == "torchao":
            w = module.weight
            if tuple(qdata.shape) != tuple(w.qdata.shape):
                raise InputError(f"the int8 weights of {name!r} have shape {tuple(qdata.shape)}, "
                                 f"the model expects {tuple(w.qdata.shape)}")
            new = type(w)(qdata, scale, list(w.block_size), w.dtype, zero_point=zero_point,
                          act_quant_kwargs=w.act_quant_kwargs, reduce_range=w.reduce_range)
            module.weight = nn.Parameter(new, requires_grad=False)
            if bias is not None:
                module.bias = nn.Parameter(bias, requires_grad=False)
            continue
        inner = module.bag if isinstance(module, MeanEmbeddingBag) else module
        expected = tuple(inner.weight().shape)
        if tuple(qdata.shape) != expected:
            raise InputError(f"the int8 weights of {name!r} have shape {tuple(qdata.shape)}, the model expects {expected}")
        with _no_deprecation_noise():
            qweight = torch._make_per_channel_quantized_tensor(qdata, scale, zero_point, 0)
            if kind == "linear":
                inner.set_weight_bias(qweight, bias)
            else:
                inner.set_weight(qweight)


def quantized_memory_bytes(qmodel: nn.Module) -> int:
    """Bytes the int8 model's weights take: int8/uint8 data, scales and offsets, plus the float tensors left."""
    total = 0
    names = quantized_modules(qmodel)
    for name in names:
        total += sum(t.numel() * t.element_size() for t in _module_plain(qmodel.get_submodule(name)))
    for key, tensor in qmodel.state_dict().items():
        owner = key.rpartition(".")[0]
        if any(owner == n or owner.startswith(n + ".") for n in names):
            continue
        if torch.is_tensor(tensor) and type(tensor).__name__ != "Int8Tensor":
            total += tensor.numel() * tensor.element_size()
    return int(total)


def _module_plain(module: nn.Module) -> list[torch.Tensor]:
    if isinstance(module, nn.Linear):  # torchao
        w = module.weight
        parts = [w.qdata, w.scale] + ([w.zero_point] if w.zero_point is not None else [])
        return parts + ([module.bias] if module.bias is not None else [])
    inner = module.bag if isinstance(module, MeanEmbeddingBag) else module
    w = inner.weight()
    parts = [w.int_repr(), w.q_per_channel_scales(), w.q_per_channel_zero_points()]
    if hasattr(inner, "bias") and callable(inner.bias) and inner.bias() is not None:
        parts.append(inner.bias())
    return parts


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A digest of named tensors (names, dtypes, shapes, bytes), to check that a rebuilt table is the saved one."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}\0".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- a teacher, for its cache

TEACHER_SCHEMES = ("int8", "int4")
INT4_GROUP_SIZE = 128
ACTIVATION_NOTE = {
    "torch.ao": "activations are quantized with one scale per batch tensor, so a row's logits depend slightly on "
                "the other rows (and the padding) of its batch; the capture's batches are fixed by the shard, so a "
                "resumed run recomputes identical bytes",
    "torchao": "activations are quantized with one scale per row (token), at run time",
}


@dataclass
class TeacherPlan:
    """How a teacher is quantized before its logits are cached: the scheme and the backend that runs it."""

    scheme: str
    backend: Backend


def resolve_teacher_quantization(scheme: str, backend: str = "auto") -> TeacherPlan:
    """Check that ``scheme`` (``int8`` / ``int4``) can run here, before any model is loaded.

    ``int8``: dynamic int8 Linear layers by :func:`resolve_backend` (torchao when importable, else torch.ao,
    the fallback recorded). ``int4``: 4-bit weight-only Linear layers, which only torchao has, and whose
    kernels (tinygemm) need a CUDA device: without either, one :class:`InputError` naming what is missing.
    """
    if scheme not in TEACHER_SCHEMES:
        raise InputError(f"--quantize {scheme!r}: choose one of {', '.join(TEACHER_SCHEMES)}")
    if scheme == "int8":
        return TeacherPlan("int8", resolve_backend(backend))
    if backend not in BACKENDS:
        raise InputError(f"--quantize-backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "torch.ao":
        raise InputError("--quantize int4: torch.ao has no 4-bit scheme; 4-bit weight-only quantization needs "
                         "torchao on a CUDA device (use --quantize int8 with torch.ao)")
    ok, why = torchao_available()
    missing = [] if ok else [f"torchao ({why})"]
    if not torch.cuda.is_available():
        missing.append("a CUDA device (torchao's 4-bit weight-only kernels, tinygemm, run on CUDA only; none is visible)")
    if missing:
        raise InputError(f"--quantize int4: 4-bit weight-only quantization needs {' and '.join(missing)}; "
                         "on this machine use --quantize int8")
    from importlib.metadata import version

    return TeacherPlan("int4", Backend("torchao", version("torchao"), backend))


def quantize_teacher(model: nn.Module, plan: TeacherPlan, device: torch.device) -> tuple[nn.Module, torch.device, dict]:
    """Quantize a loaded teacher in place for capture; returns (model, the device to run it on, its record).

    The record goes into the cache fingerprint (``teacher.quantization``): scheme, backend and version, what
    was quantized, memory before and after, and a digest of the quantized weights, so a quantized cache is
    never taken for the full-precision one (and a resume with other settings is refused).
    int8 with torch.ao runs on the CPU (its kernels are CPU-only), whatever device the process has.
    """
    backend = plan.backend
    if plan.scheme == "int8":
        if backend.name == "torch.ao":
            device = torch.device("cpu")
        model = model.to(device).eval()
        qmodel, description = quantize_model(model, backend, copy=False)
        digest = tensors_sha256(quantized_tensors(qmodel, backend.name))
        scheme = backend.record()["scheme"]["linear"]
        notes = [ACTIVATION_NOTE[backend.name]]
    else:  # int4: checked by resolve_teacher_quantization (torchao, CUDA)
        qmodel, description = _int4_quantize(model, device)
        digest = _subclass_sha256(qmodel)
        scheme = (f"4-bit weights (asymmetric, groups of {INT4_GROUP_SIZE} along the input), bf16 activations: "
                  "torchao Int4WeightOnlyConfig (tinygemm)")
        notes = ["the model runs in bf16 (tinygemm's activation dtype)"]
    record = {
        "scheme": plan.scheme,
        "backend": backend.name,
        "backend_version": backend.version,
        "requested_backend": backend.requested,
        "torch_version": torch.__version__,
        "linear": scheme,
        "quantized": description["quantized"],
        "kept_float32": description["kept_float32"],
        "memory_bytes": description["memory_bytes"],
        "quantized_weights_sha256": digest,
        "notes": notes + list(description.get("notes") or []),
        "warnings": list(backend.warnings),
    }
    return qmodel, device, record


def _int4_quantize(model: nn.Module, device: torch.device) -> tuple[nn.Module, dict]:
    """torchao 4-bit weight-only on CUDA (bf16). Not exercised on the project's CPU-only machines."""
    float_bytes = _float_bytes(model)
    linears = [name for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and m.in_features % INT4_GROUP_SIZE == 0]
    if not linears:
        raise InputError(f"{type(model).__name__} has no Linear layer whose input width is a multiple of "
                         f"{INT4_GROUP_SIZE} (4-bit groups)")
    if device.type != "cuda":
        device = torch.device("cuda")
    model = model.to(device=device, dtype=torch.bfloat16).eval()
    with _quiet_torchao():
        from torchao.quantization import Int4WeightOnlyConfig, quantize_

        try:
            config = Int4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, int4_packing_format="tile_packed_to_4d",
                                          set_inductor_config=False)
        except TypeError:  # an older torchao (version-1 config, tinygemm layout by default)
            config = Int4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, set_inductor_config=False)
        wanted = set(linears)
        try:
            quantize_(model, config, filter_fn=lambda m, fqn: fqn in wanted)
        except Exception as exc:
            raise InputError(f"--quantize int4: torchao could not quantize the teacher ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''})") from None
    with_params = {name.rpartition(".")[0] for name, _ in model.named_parameters()}
    description = {"quantized": {"linear": linears, "embedding_bag": []},
                   "kept_float32": sorted(with_params - set(linears)),  # kept in bf16, in fact
                   "memory_bytes": {"float32": float_bytes, "int4": _subclass_bytes(model)},
                   "notes": ["layers not quantized run in bf16"]}
    return model, description


def _plain_parts(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors inside a (torchao) tensor subclass, recursively; a plain tensor is itself."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is None or type(tensor) is torch.Tensor or type(tensor) is nn.Parameter:
        return [tensor]
    names, _ = flatten()
    return [part for name in names for part in _plain_parts(getattr(tensor, name))]


def _subclass_sha256(model: nn.Module) -> str:
    parts = {}
    for key, value in model.state_dict().items():
        for i, part in enumerate(_plain_parts(value)):
            parts[f"{key}.{i}"] = part.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return tensors_sha256(parts)


def _subclass_bytes(model: nn.Module) -> int:
    return int(sum(p.numel() * p.element_size() for v in model.state_dict().values() for p in _plain_parts(v)))
