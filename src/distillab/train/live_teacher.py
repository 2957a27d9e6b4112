"""A frozen teacher run inside the training loop, for objectives whose inputs are too large to cache.

Token-level hidden states, attention maps and Q/K/V projections cost ``rows × tokens × width`` per
layer (R52 at 128 tokens: ~1.5 GB a layer in fp16), so objectives that read them get them from the
teacher model itself, forwarded on the same rows as the student: eval mode, no gradient, its own
precision (``int8``: dynamic quantization of its Linear layers, recorded in the arm's settings).
Only the layers the objectives ask for are kept after each forward pass.

Token-level objectives compare position ``i`` of the student with position ``i`` of the teacher,
so both tokenizations must put the same pieces at the same positions (MPNet and MiniLM share a
WordPiece vocabulary but not their special tokens): :func:`check_aligned` refuses, naming the first
differing row, before any training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distillab.errors import InputError


@dataclass
class LiveOutputs:
    """The teacher's outputs for one micro-batch: only what the arm's objectives read."""

    hidden: tuple | None = None  # hidden_states, index 0 = embeddings, [B, T, D]
    attentions: dict | None = None  # layer -> [B, H, T, T]
    qkv: dict | None = None  # layer -> {"q", "k", "v"} [B, T, D]


class LiveTeacher:
    """A teacher model (any HF encoder) and its tokenizer, frozen."""

    def __init__(self, source: str, max_length: int, precision: str = "fp32"):
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(source)
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            # Eager attention: the fused kernels do not return attention maps.
            self.model = AutoModel.from_pretrained(source, config=config, attn_implementation="eager")
        except (OSError, ValueError) as exc:
            raise InputError(f"training.live_teacher {source!r}: cannot load it ({' '.join(str(exc).split())})") from None
        self.model.eval().requires_grad_(False)
        if precision == "int8":
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {nn.Linear}, dtype=torch.qint8)
        self.source, self.max_length, self.precision = source, max_length, precision
        self.layers = config.num_hidden_layers
        self.width = config.hidden_size
        self.heads = config.num_attention_heads

    def featurize(self, texts: list[str]) -> list[dict]:
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        return [{"input_ids": ids, "attention_mask": mask}
                for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])]

    def collate(self, features: list[dict], rows) -> dict[str, torch.Tensor]:
        from distillab.train.students import pad_token_rows

        return pad_token_rows([features[int(r)] for r in rows], self.tokenizer)

    @torch.no_grad()
    def outputs(self, batch: dict, hidden: bool, attentions: set[int], qkv: set[int]) -> LiveOutputs:
        with collect_qkv(self.model, qkv) as captured:
            out = self.model(**batch, output_hidden_states=hidden, output_attentions=bool(attentions))
        maps = {layer: out.attentions[layer] for layer in attentions} if attentions else None
        return LiveOutputs(hidden=out.hidden_states if hidden else None, attentions=maps, qkv=captured or None)


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The encoder's blocks (BERT/MPNet ``encoder.layer``, DistilBERT ``transformer.layer``, ...)."""
    total = model.config.num_hidden_layers
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == total]
    if not stacks:
        raise InputError(f"cannot find the {total}-layer stack of {type(model).__name__}")
    return stacks[0]


# Names of the query/key/value projections across architectures (BERT/MiniLM: query; MPNet: q; DistilBERT: q_lin).
_QKV_NAMES = {"q": ("query", "q", "q_lin", "q_proj"), "k": ("key", "k", "k_lin", "k_proj"),
              "v": ("value", "v", "v_lin", "v_proj")}


class collect_qkv:
    """Forward hooks on the Q/K/V projections of ``layers`` only; yields ``{layer: {"q", "k", "v"}}``."""

    def __init__(self, model: nn.Module, layers: set[int]):
        self.model, self.layers, self.captured, self.handles = model, layers, {}, []

    def __enter__(self) -> dict:
        if not self.layers:
            return self.captured
        stack = layer_stack(self.model)
        for layer in sorted(self.layers):
            for role, module in qkv_modules(stack[layer]).items():
                self.handles.append(module.register_forward_hook(self._hook(layer, role)))
        return self.captured

    def _hook(self, layer: int, role: str):
        def hook(module, args, output):
            self.captured.setdefault(layer, {})[role] = output

        return hook

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


def qkv_modules(block: nn.Module) -> dict[str, nn.Module]:
    """The Q/K/V projection modules of one encoder block, found by their conventional names."""
    found = {}
    for name, module in block.named_modules():
        last = name.rsplit(".", 1)[-1]
        for role, names in _QKV_NAMES.items():
            if last in names and role not in found:  # the projection (an int8 one has a packed-params child)
                found[role] = module
    if set(found) != {"q", "k", "v"}:
        raise InputError(f"cannot find the query/key/value projections of {type(block).__name__} "
                         f"(found {sorted(found) or 'none'}); minilm_relations needs them")
    return found


def check_aligned(student_tokenizer, student_ids: list, teacher_tokenizer, teacher_ids: list, row_ids) -> None:
    """Refuse token-level objectives when a row's pieces differ by position between student and teacher.

    Special tokens may differ ([CLS] vs <s>), but must sit at the same positions; every other
    position must hold the same piece.
    """
    s_special, t_special = set(student_tokenizer.all_special_ids), set(teacher_tokenizer.all_special_ids)
    for row, (s_row, t_row) in enumerate(zip(student_ids, teacher_ids)):
        s_row, t_row = list(s_row), list(t_row)
        s_tokens = student_tokenizer.convert_ids_to_tokens(s_row)
        t_tokens = teacher_tokenizer.convert_ids_to_tokens(t_row)
        for position in range(max(len(s_row), len(t_row))):
            s_tok = s_tokens[position] if position < len(s_row) else None
            t_tok = t_tokens[position] if position < len(t_row) else None
            s_is = position < len(s_row) and s_row[position] in s_special
            t_is = position < len(t_row) and t_row[position] in t_special
            if (s_is and t_is) or (s_tok == t_tok and not s_is and not t_is):
                continue
            raise InputError(
                f"training.live_teacher: the teacher's and the student's tokens do not align at row "
                f"{row_ids[row]!r}, position {position} (student {s_tok!r}, teacher {t_tok!r}); token-level "
                "objectives need the same pieces at the same positions (use tokenizers that share a vocabulary)")
