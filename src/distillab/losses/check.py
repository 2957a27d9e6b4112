"""Check a user's KD loss against the float64 reference, and name the silent bug its values fit.

"The loss goes down" is not a test: every bug below trains without an error. So the checker
evaluates the user's function on several seeded random batches (different batch sizes, K, T and
α), compares values and gradients w.r.t. the student logits with
:func:`distillab.losses.reference.kd_loss`, and, if they differ, evaluates the reference with each
known bug (and every combination of them) switched on and reports the variant the user's numbers
fit. The bugs are the ones peers ship most often (TRL #2202, the course's colleague, ...).

:func:`check_objective` / :func:`check_objective_isolated` do the same for the feature, attention
and relation objectives of :mod:`distillab.losses.features` (``check-loss --objective``), against
:mod:`distillab.losses.feature_reference`; they report the largest differences, not a bug name.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import itertools
import json
import multiprocessing
import os
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from distillab.errors import InputError
from distillab.io import write_text_atomic
from distillab.losses import reference

# Known silent bugs, in the order they are reported. Each is a switch of buggy_kd_loss below.
BUGS = {
    "probs_as_logprobs": "probabilities passed where log-probabilities are expected "
    "(F.softmax instead of F.log_softmax as the input of F.kl_div)",
    "missing_T2": "missing T² on the KL term (its gradient shrinks by 1/T² against the CE term)",
    "swapped_alpha": "α and 1−α swapped (α weights the CE term and 1−α the KL term)",
    "reversed_kl": "KL direction reversed: KL(student ‖ teacher) instead of KL(teacher ‖ student)",
    "mean_reduction": "reduction='mean' instead of 'batchmean' (the KL is divided by K·batch, not batch)",
    "softened_ce": "softened logits in the CE term: CE(s/T, y) instead of CE(s, y)",
}

T_NAMES = ("T", "temperature", "temp", "tau", "T_d", "kd_temperature")
ALPHA_NAMES = ("alpha", "kd_alpha", "alpha_kd", "kd_weight", "lam", "lmbda")

# float32 arithmetic inside a user's loss stays well within these; every bug is orders away.
RTOL, ATOL = 1e-4, 1e-6


@dataclass(frozen=True)
class Case:
    seed: int
    batch: int
    classes: int
    T: float
    alpha: float


# Varied on purpose: T ≠ 1 exposes the T² and softened-CE bugs, α ≠ 0.5 the swap, K > 1 the
# reduction; batch 1 and K = 2 are edge shapes. Every bug combination is distinguishable on these
# (tests/losses/test_check_loss.py checks that).
DEFAULT_CASES = (
    Case(seed=0, batch=8, classes=113, T=4.0, alpha=0.7),
    Case(seed=1, batch=3, classes=5, T=2.0, alpha=0.3),
    Case(seed=2, batch=16, classes=37, T=8.0, alpha=0.9),
    Case(seed=3, batch=1, classes=2, T=1.5, alpha=0.2),
    Case(seed=4, batch=5, classes=113, T=1.0, alpha=0.6),
)


@dataclass
class CaseResult:
    case: Case
    T: float  # the values used: the case's, or the fixed ones of a three-argument function
    alpha: float
    value: float
    reference: float
    grad_error: float | None  # max |grad − reference grad|; None when the user's loss has no gradient


@dataclass
class CheckResult:
    matches: bool
    call: str  # how the function was called, for the report
    cases: list[CaseResult]
    bugs: list[tuple[str, ...]] = field(default_factory=list)  # bug combinations the numbers fit
    has_grad: bool = True
    values_match: bool = False


def make_batch(case: Case, dtype=torch.float64):
    """The seeded (student_logits, teacher_logits, labels) of one case; the teacher is more peaked."""
    generator = torch.Generator().manual_seed(case.seed)
    student = 1.5 * torch.randn(case.batch, case.classes, generator=generator, dtype=torch.float64)
    teacher = 3.0 * torch.randn(case.batch, case.classes, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, case.classes, (case.batch,), generator=generator)
    return student.to(dtype), teacher.to(dtype), labels


def buggy_kd_loss(student_logits, teacher_logits, labels, T, alpha, bugs=frozenset()) -> torch.Tensor:
    """The KD loss with the named bugs from :data:`BUGS` switched on (none: the correct loss).

    Written the way the bugs are usually written, around ``F.kl_div(input, target)`` which computes
    Σ target·(log target − input) and expects ``input`` to be log-probabilities.
    """
    unknown = set(bugs) - set(BUGS)
    if unknown:
        raise ValueError(f"unknown bugs {sorted(unknown)}; known: {list(BUGS)}")
    student_logp = F.log_softmax(student_logits / T, -1)
    teacher_logp = F.log_softmax(teacher_logits / T, -1)
    target_logp, input_logp = (student_logp, teacher_logp) if "reversed_kl" in bugs else (teacher_logp, student_logp)
    kl_input = input_logp.exp() if "probs_as_logprobs" in bugs else input_logp
    pointwise = target_logp.exp() * (target_logp - kl_input)
    rows, classes = student_logits.shape
    kl = pointwise.sum() / (rows * classes if "mean_reduction" in bugs else rows)
    ce = F.cross_entropy(student_logits / T if "softened_ce" in bugs else student_logits, labels)
    kl_weight, ce_weight = (1 - alpha, alpha) if "swapped_alpha" in bugs else (alpha, 1 - alpha)
    return kl_weight * (1.0 if "missing_T2" in bugs else T * T) * kl + ce_weight * ce


# --------------------------------------------------------------------------- loading and calling


def load_function(spec: str) -> tuple[Callable, str]:
    """Resolve ``MODULE:FUNCTION`` (dotted module importable from the cwd, or a path to a .py file)."""
    module_part, colon, attr = spec.rpartition(":")
    if not colon or not module_part or not attr:
        raise InputError(f"expected MODULE:FUNCTION (e.g. my_losses:kd_loss or path/to/losses.py:kd_loss), got {spec!r}")
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        module = _import_file(Path(module_part))
    else:
        module = _import_dotted(module_part)
    target = module
    for name in attr.split("."):
        if not hasattr(target, name):
            raise InputError(f"module {module_part!r} has no attribute {attr!r}; check the name after the colon")
        target = getattr(target, name)
    if not callable(target):
        raise InputError(f"{spec!r} is a {type(target).__name__}, not a function")
    return target, attr


def _import_file(path: Path):
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    if path.suffix != ".py":
        raise InputError(f"{path} is not a Python file: give path/to/losses.py:FUNCTION or an importable module")
    name = f"_distillab_user_loss_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as a normal import would: dataclasses and pickling look it up
    sys.path.insert(0, str(path.resolve().parent))  # so the file can import its siblings
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise InputError(f"importing {path} {_describe(exc)}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _import_dotted(name: str):
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise InputError(f"cannot import module {name!r} from {cwd} or sys.path: {_one_line(exc)}") from exc
    except (Exception, SystemExit) as exc:
        raise InputError(f"importing {name!r} {_describe(exc)}") from exc
    finally:
        if added:
            sys.path.remove(cwd)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _describe(exc: BaseException) -> str:
    """``raised RuntimeError: boom``, or for a SystemExit the call that ended the program (its code means nothing here)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}) instead of returning"
    return f"raised {type(exc).__name__}: {_one_line(exc)}"


def make_caller(fn: Callable, name: str, fixed: tuple[float, float] | None = None):
    """Return (call(s, t, y, T, alpha), description) for the accepted calling forms.

    1. keywords: the function has parameters named like T (T, temperature, temp, tau, T_d) and
       alpha (alpha, kd_alpha, ...): ``fn(s, t, y, temperature=T, alpha=α)``;
    2. five positional parameters: ``fn(s, t, y, T, α)`` (the reference experiment's form);
    3. three parameters with T and α fixed inside: ``fn(s, t, y)``; needs ``fixed=(T, α)``.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        params = None
    if params is not None:
        named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        t_name = next((n for n in T_NAMES if n in named), None)
        a_name = next((n for n in ALPHA_NAMES if n in named), None)
        if t_name and a_name:
            def call(s, t, y, T, alpha):
                return fn(s, t, y, **{t_name: T, a_name: alpha})

            return call, f"{name}(student_logits, teacher_logits, labels, {t_name}=T, {a_name}=alpha)"
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        takes_five = len(positional) >= 5 or any(p.kind == p.VAR_POSITIONAL for p in params)
    else:
        takes_five = True
    if fixed is None and takes_five:
        return (lambda s, t, y, T, alpha: fn(s, t, y, T, alpha)), f"{name}(student_logits, teacher_logits, labels, T, alpha)"
    if fixed is not None:
        return (lambda s, t, y, T, alpha: fn(s, t, y)), f"{name}(student_logits, teacher_logits, labels) with T={fixed[0]:g}, alpha={fixed[1]:g} fixed inside"
    raise InputError(
        f"cannot tell how to pass T and alpha to {name}{inspect.signature(fn)}: take them as the 4th and 5th "
        "arguments, name them T/temperature and alpha, or give --T and --alpha if they are fixed inside"
    )


def _scalar(result, name: str) -> torch.Tensor | float:
    """The loss out of what the function returned: a scalar, (loss, parts), or {"loss": ...}."""
    if isinstance(result, (tuple, list)) and result:
        result = result[0]
    elif isinstance(result, dict) and "loss" in result:
        result = result["loss"]
    if isinstance(result, torch.Tensor) and result.numel() == 1:
        return result.reshape(())
    if isinstance(result, (float, int, np.floating)):
        return float(result)
    raise InputError(
        f"{name} returned {type(result).__name__}"
        + (f" of shape {tuple(result.shape)}" if isinstance(result, torch.Tensor) else "")
        + "; expected a scalar tensor, a (loss, parts) tuple or a dict with 'loss'"
    )


def _evaluate(call: Callable, name: str, case: Case, T: float, alpha: float):
    """The user's (value, grad or None) on one case, float64 inputs first, float32 as a fallback."""

    def build(dtype):
        s, t, y = make_batch(case, dtype)
        return [s], lambda: call(s, t, y, T, alpha)

    value, grads = _value_and_grads(build, name, f"calling {name} on a batch of {case.batch}x{case.classes} logits")
    return value, None if grads is None else grads[0]


def _value_and_grads(build: Callable, name: str, failure: str):
    """Run a user's loss on float64 inputs, float32 as a fallback: (value, [grad per student leaf] or None).

    ``build(dtype)`` gives (student leaves, a call of the user's function). A SystemExit is caught
    like any error: a loss that exits has not returned a value.
    """
    first_error = None
    for dtype in (torch.float64, torch.float32):
        leaves, call = build(dtype)
        for leaf in leaves:
            leaf.requires_grad_(True)
        try:
            loss = _scalar(call(), name)
        except InputError:
            raise
        except (Exception, SystemExit) as exc:
            if isinstance(exc, SystemExit):
                first_error = exc
                break
            first_error = first_error or exc
            continue
        if isinstance(loss, float) or not loss.requires_grad:
            return float(loss), None
        try:
            loss.backward()
        except (Exception, SystemExit) as exc:
            raise InputError(f"backward through the value {name} returned {_describe(exc)}") from exc
        if all(leaf.grad is None for leaf in leaves):
            return float(loss.detach()), None
        return float(loss.detach()), [np.zeros(tuple(leaf.shape)) if leaf.grad is None else leaf.grad.double().numpy()
                                      for leaf in leaves]
    raise InputError(f"{failure} {_describe(first_error)}")


def _close(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(np.abs(a - b) <= ATOL + RTOL * np.max(np.abs(b), initial=0.0)))


def _variant(case: Case, T: float, alpha: float, bugs) -> tuple[float, np.ndarray]:
    s, t, y = make_batch(case)
    s.requires_grad_(True)
    loss = buggy_kd_loss(s, t, y, T, alpha, bugs)
    loss.backward()
    return float(loss.detach()), s.grad.numpy()


def bug_combinations():
    """Every subset of :data:`BUGS`, smallest first (so the simplest explanation is listed first)."""
    for size in range(1, len(BUGS) + 1):
        yield from itertools.combinations(BUGS, size)


def check_loss(
    fn: Callable, name: str | None = None, cases=DEFAULT_CASES, fixed: tuple[float, float] | None = None
) -> CheckResult:
    """Compare ``fn`` with the reference KD loss on ``cases``; identify known bugs if it differs.

    ``fixed=(T, alpha)`` is for a function that takes only (student_logits, teacher_logits, labels):
    every case then uses those values. Runs ``fn`` in this process: a function that calls
    ``os._exit`` ends it, so the CLI uses :func:`check_loss_isolated`.
    """
    name = name or getattr(fn, "__name__", "loss")
    call, description = make_caller(fn, name, fixed)
    outputs = [_evaluate(call, name, case, T, alpha) for case, T, alpha in _settings(cases, fixed)]
    return compare_with_reference(description, outputs, cases, fixed)


def _settings(cases, fixed):
    return [(case, *(fixed or (case.T, case.alpha))) for case in cases]


def compare_with_reference(description: str, outputs: list, cases=DEFAULT_CASES,
                           fixed: tuple[float, float] | None = None) -> CheckResult:
    """Judge the user's ``outputs`` ([(value, grad or None)] per case) against the reference and the bugs."""
    settings = _settings(cases, fixed)
    ref_grads, results = [], []
    for (value, grad), (case, T, alpha) in zip(outputs, settings):
        s, t, y = make_batch(case)
        ref_value = reference.kd_loss(s, t, y, T, alpha)
        ref_grad = reference.kd_loss_grad(s, t, y, T, alpha)
        ref_grads.append(ref_grad)
        grad_error = None if grad is None else float(np.max(np.abs(grad - ref_grad)))
        results.append(CaseResult(case, T, alpha, value, ref_value, grad_error))
    has_grad = all(grad is not None for _, grad in outputs)
    values_match = _close([r.value for r in results], [r.reference for r in results])
    grads_match = has_grad and all(_close(grad, ref) for (_, grad), ref in zip(outputs, ref_grads))
    result = CheckResult(values_match and grads_match, description, results, has_grad=has_grad, values_match=values_match)
    if result.matches:
        return result
    for bugs in bug_combinations():
        fits = True
        for (value, grad), (case, T, alpha) in zip(outputs, settings):
            bug_value, bug_grad = _variant(case, T, alpha, bugs)
            if not _close(value, bug_value) or (grad is not None and not _close(grad, bug_grad)):
                fits = False
                break
        if fits:
            result.bugs.append(bugs)
    return result


# --------------------------------------------------------------------------- running the user's code apart


def check_loss_isolated(spec: str, fixed: tuple[float, float] | None = None, cases=DEFAULT_CASES) -> CheckResult:
    """:func:`check_loss` on ``MODULE:FUNCTION``, with the user's code imported and called in a child process.

    Why a process: the command's exit code is the verdict (0 = matches), so nothing the user's
    module does may end the check early with code 0. ``sys.exit`` could be caught in process,
    but ``os._exit``, a signal or a crash cannot. The child (forked where the platform allows,
    so it starts in milliseconds with torch already imported) writes its outputs to a file
    only after the last case, atomically; the parent compares them with the reference itself.
    The check passes only on a complete result from a child that exited normally; anything
    else (an exit, a kill, an error) is an :class:`InputError`.
    """
    result = _run_isolated(spec, _kd_outputs, (spec, fixed, tuple(cases)))
    outputs = [(value, None if grad is None else np.asarray(grad, dtype=np.float64)) for value, grad in result["outputs"]]
    return compare_with_reference(result["call"], outputs, cases, fixed)


def _run_isolated(spec: str, work: Callable, args: tuple) -> dict:
    """``work(*args)`` (a module-level function returning a JSON-able dict) run in a child process.

    Returns its dict; raises :class:`InputError` for an error the child reported, and for a child
    that ended without writing a complete result or with a non-zero exit code.
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with tempfile.TemporaryDirectory(prefix="distillab-check-loss-") as tmp:
        result_path = Path(tmp) / "result.json"
        sys.stdout.flush()  # a forked child flushes its copy of these buffers when it ends
        sys.stderr.flush()
        child = context.Process(target=_child_main, args=(spec, work, args, str(result_path)))
        child.start()
        child.join()
        result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else None
    if result is not None and "error" in result:
        raise InputError(result["error"])
    if result is None or child.exitcode != 0:
        code = child.exitcode
        how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        raise InputError(
            f"checking {spec}: the process {how} before the function returned on every test batch "
            "(os._exit, a signal or a crash); a loss function must return its value"
        )
    return result


def _child_main(spec: str, work: Callable, args: tuple, result_path: str) -> None:
    """In the child: ``work(*args)`` (which imports and calls the user's function); write its dict (or one error line)."""
    try:
        result = work(*args)
    except InputError as exc:
        result = {"error": str(exc)}
    except Exception as exc:  # e.g. the user's signature inspection itself failing: still one line
        result = {"error": f"checking {spec} {_describe(exc)}"}
    write_text_atomic(result_path, json.dumps(result))  # NaN stays NaN: json reads it back


def _kd_outputs(spec: str, fixed, cases) -> dict:
    fn, name = load_function(spec)
    call, description = make_caller(fn, name, fixed)
    outputs = [_evaluate(call, name, case, T, alpha) for case, T, alpha in _settings(cases, fixed)]
    return {"call": description, "outputs": [(v, None if g is None else g.tolist()) for v, g in outputs]}


# --------------------------------------------------------------------------- report

REFERENCE_FORMULA = "α·T²·KL(softmax(t/T) ‖ softmax(s/T)) [sum over classes, mean over batch] + (1−α)·CE(s, y)"


def format_report(result: CheckResult, spec: str) -> str:
    lines = [
        f"check-loss {spec}",
        f"called as {result.call} on {len(result.cases)} seeded float64 batches",
        f"reference: {REFERENCE_FORMULA}",
        "",
        f"{'batch':>5} {'K':>4} {'T':>5} {'alpha':>5} {'yours':>14} {'reference':>14} {'max|Δgrad|':>11}",
    ]
    for r in result.cases:
        grad = "no grad" if r.grad_error is None else f"{r.grad_error:.2e}"
        lines.append(
            f"{r.case.batch:>5} {r.case.classes:>4} {r.T:>5g} {r.alpha:>5g} {r.value:>14.8g} {r.reference:>14.8g} {grad:>11}"
        )
    lines.append("")
    if result.matches:
        lines.append("OK: matches the reference (values and gradients).")
        return "\n".join(lines)
    if result.values_match and not result.has_grad:
        lines.append("MISMATCH: the values match the reference but the loss has no gradient w.r.t. student_logits "
                     "(returned a float, or detached / computed outside autograd).")
    elif result.values_match:
        lines.append("MISMATCH: the values match the reference but the gradients do not "
                     "(something is detached, or a custom backward is wrong).")
    else:
        lines.append("MISMATCH: does not match the reference.")
    if result.bugs:
        first, *others = result.bugs
        lines.append(f"Its {'values' if not result.has_grad else 'values and gradients'} fit the reference with "
                     f"{'this known bug' if len(first) == 1 else f'these {len(first)} known bugs at once'}:")
        lines += [f"  - {BUGS[bug]}" for bug in first]
        for bugs in others:
            lines.append("Equally consistent: " + "; ".join(BUGS[bug] for bug in bugs))
    elif not result.values_match:
        ratios = [r.value / r.reference for r in result.cases if r.reference != 0]
        if ratios and np.allclose(ratios, ratios[0], rtol=1e-4):
            lines.append(f"Its values are a constant {ratios[0]:.6g}x the reference on every batch (a stray scale factor).")
        lines.append("It fits none of the known silent bugs (" + ", ".join(BUGS) + ") or their combinations.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the other objectives (--objective)
#
# The user's function is called exactly as distillab's own (distillab.losses.features), on small
# seeded float64 cases: padding of different lengths (down to one real token), unequal widths and
# head counts, each setting at more than one value. Its value and its gradient w.r.t. the student
# input(s) are compared with the float64 oracle of distillab.losses.feature_reference, whose
# gradient is taken by central differences (so it shares no code with any torch implementation).


@dataclass(frozen=True)
class ObjectiveCase:
    seed: int
    label: str  # what the report shows: shapes, padding, settings
    sizes: dict = field(default_factory=dict, hash=False)  # objective-specific shapes
    lengths: tuple | None = None  # real tokens per row (mask = HF attention_mask, int64); None: no mask
    settings: dict = field(default_factory=dict, hash=False)  # passed to the function by keyword


@dataclass(frozen=True)
class ObjectiveSpec:
    call: str  # how the function is called, {name} = the user's function name
    formula: str  # the reference, in one line
    student: tuple  # the inputs the gradient is taken w.r.t.
    cases: tuple
    make: Callable  # (generator, case) -> dict of float64 tensors (and "mask")
    invoke: Callable  # (fn, inputs, case) -> what fn returns; the same for the user's fn and the oracle


def _token_mask(case: ObjectiveCase, batch: int, tokens: int):
    if case.lengths is None:
        return None
    mask = torch.zeros(batch, tokens, dtype=torch.int64)
    for b, n in enumerate(case.lengths):
        mask[b, :n] = 1
    return mask


def _attention_maps(g, batch: int, heads: int, tokens: int, mask):
    """Softmax rows over keys with padded keys at probability 0, as a model's attention outputs are."""
    scores = 2.0 * torch.randn(batch, heads, tokens, tokens, generator=g, dtype=torch.float64)
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
    return scores.softmax(-1)


def _make_hidden(g, case):
    c = case.sizes
    shape = (c["B"], c["T"], c["D"]) if "T" in c else (c["B"], c["D"])
    mask = _token_mask(case, c["B"], c.get("T", 0))
    return {"student": torch.randn(*shape, generator=g, dtype=torch.float64),
            "teacher": 1.5 * torch.randn(*shape, generator=g, dtype=torch.float64), "mask": mask}


def _make_attention(g, case):
    c = case.sizes
    mask = _token_mask(case, c["B"], c["T"])
    return {"student_attn": _attention_maps(g, c["B"], c["Hs"], c["T"], mask),
            "teacher_attn": _attention_maps(g, c["B"], c["Ht"], c["T"], mask), "mask": mask}


def _make_states(g, case):
    c = case.sizes
    mask = _token_mask(case, c["student"][0], c["student"][1]) if case.lengths else None
    return {"student_states": torch.randn(*c["student"], generator=g, dtype=torch.float64),
            "teacher_states": 2.0 * torch.randn(*c["teacher"], generator=g, dtype=torch.float64), "mask": mask}


def _make_qkv(g, case):
    c = case.sizes
    inputs = {}
    for side, width in (("student", c["Ds"]), ("teacher", c["Dt"])):
        for name in "qkv":
            inputs[f"{side}_{name}"] = torch.randn(c["B"], c["T"], width, generator=g, dtype=torch.float64)
    inputs["mask"] = _token_mask(case, c["B"], c["T"])
    return inputs


def _make_pooled(g, case):
    c = case.sizes
    return {"student": torch.randn(c["B"], c["Ds"], generator=g, dtype=torch.float64),
            "teacher": torch.randn(c["B"], c["Dt"], generator=g, dtype=torch.float64)}


def _invoke_minilm(fn, x, case):
    student = {name: x[f"student_{name}"] for name in "qkv"}
    teacher = {name: x[f"teacher_{name}"] for name in "qkv"}
    return fn(student, teacher, case.settings["relation_heads"], x["mask"])


_ATTENTION_CASES = (
    ObjectiveCase(0, "[2,2,5,5] vs 4 teacher heads, real tokens 5,2", {"B": 2, "Hs": 2, "Ht": 4, "T": 5}, (5, 2)),
    ObjectiveCase(1, "[3,2,4,4] vs 2 teacher heads, real tokens 4,1,3", {"B": 3, "Hs": 2, "Ht": 2, "T": 4}, (4, 1, 3)),
    ObjectiveCase(2, "[1,4,4,4] vs 2 teacher heads, no mask", {"B": 1, "Hs": 4, "Ht": 2, "T": 4}),
)

OBJECTIVES = {
    "hidden_mse": ObjectiveSpec(
        "{name}(student, teacher, mask, normalize=...)",
        "mean over real positions of mean_D (s - t)^2; normalize: both L2-normalised along D first",
        ("student",),
        (
            ObjectiveCase(0, "[3,6,8], real tokens 6,3,1", {"B": 3, "T": 6, "D": 8}, (6, 3, 1), {"normalize": False}),
            ObjectiveCase(1, "[2,5,4], real tokens 5,2, normalize", {"B": 2, "T": 5, "D": 4}, (5, 2), {"normalize": True}),
            ObjectiveCase(2, "pooled [4,6]", {"B": 4, "D": 6}, None, {"normalize": False}),
            ObjectiveCase(3, "pooled [3,5], normalize", {"B": 3, "D": 5}, None, {"normalize": True}),
        ),
        _make_hidden,
        lambda fn, x, case: fn(x["student"], x["teacher"], x["mask"], **case.settings),
    ),
    "attention_kl": ObjectiveSpec(
        "{name}(student_attn, teacher_attn, mask)",
        "mean over real (b, head, query) of sum over real keys p_t (log max(p_t, 1e-8) - log max(p_s, 1e-8)); "
        "extra heads averaged in consecutive groups",
        ("student_attn",), _ATTENTION_CASES, _make_attention,
        lambda fn, x, case: fn(x["student_attn"], x["teacher_attn"], x["mask"]),
    ),
    "attention_mse": ObjectiveSpec(
        "{name}(student_attn, teacher_attn, mask)",
        "mean over real (b, head, query, key) of (p_s - p_t)^2; extra heads averaged in consecutive groups",
        ("student_attn",), _ATTENTION_CASES, _make_attention,
        lambda fn, x, case: fn(x["student_attn"], x["teacher_attn"], x["mask"]),
    ),
    "attention_transfer": ObjectiveSpec(
        "{name}(student_states, teacher_states, mask, p=...)",
        "a = normalize_T(mean_D |h|^p, padding 0); mean over B and all T of (a_s - a_t)^2",
        ("student_states",),
        (
            ObjectiveCase(0, "[3,6,4] vs [3,6,8], real tokens 6,3,1, p=2",
                          {"student": (3, 6, 4), "teacher": (3, 6, 8)}, (6, 3, 1), {"p": 2}),
            ObjectiveCase(1, "[2,5,3] vs [2,5,6], real tokens 5,2, p=1",
                          {"student": (2, 5, 3), "teacher": (2, 5, 6)}, (5, 2), {"p": 1}),
            ObjectiveCase(2, "conv [2,3,3,4] vs [2,5,3,4], p=2",
                          {"student": (2, 3, 3, 4), "teacher": (2, 5, 3, 4)}, None, {"p": 2}),
        ),
        _make_states,
        lambda fn, x, case: fn(x["student_states"], x["teacher_states"], x["mask"], **case.settings),
    ),
    "minilm_relations": ObjectiveSpec(
        "{name}(student_qkv, teacher_qkv, relation_heads, mask)",
        "sum over qq, kk, vv of mean over real (b, relation head, query) of KL(teacher relation || student relation)",
        ("student_q", "student_k", "student_v"),
        (
            ObjectiveCase(0, "D 4 vs 8, [2,5], 2 relation heads, real tokens 5,2",
                          {"B": 2, "T": 5, "Ds": 4, "Dt": 8}, (5, 2), {"relation_heads": 2}),
            ObjectiveCase(1, "D 6 vs 6, [2,4], 3 relation heads, real tokens 4,1",
                          {"B": 2, "T": 4, "Ds": 6, "Dt": 6}, (4, 1), {"relation_heads": 3}),
        ),
        _make_qkv, _invoke_minilm,
    ),
    "rkd": ObjectiveSpec(
        "{name}(student, teacher, distance_weight=..., angle_weight=...)",
        "dw * smooth_l1(d_s/mean d_s, d_t/mean d_t) over B^2 + aw * smooth_l1(cos_s, cos_t) over B^3 (Park et al.)",
        ("student",),
        (
            ObjectiveCase(0, "[6,5] vs [6,9], weights 1, 2", {"B": 6, "Ds": 5, "Dt": 9}, None,
                          {"distance_weight": 1.0, "angle_weight": 2.0}),
            ObjectiveCase(1, "[4,3] vs [4,3], weights 0.5, 0", {"B": 4, "Ds": 3, "Dt": 3}, None,
                          {"distance_weight": 0.5, "angle_weight": 0.0}),
            ObjectiveCase(2, "[5,4] vs [5,2], weights 0, 1", {"B": 5, "Ds": 4, "Dt": 2}, None,
                          {"distance_weight": 0.0, "angle_weight": 1.0}),
        ),
        _make_pooled,
        lambda fn, x, case: fn(x["student"], x["teacher"], **case.settings),
    ),
    "crd_lite": ObjectiveSpec(
        "{name}(student, teacher, temperature=...)",
        "mean_i CE(normalize(s) @ normalize(t)^T / temperature, target i)",
        ("student",),
        (
            ObjectiveCase(0, "[6,8], temperature 0.07", {"B": 6, "Ds": 8, "Dt": 8}, None, {"temperature": 0.07}),
            ObjectiveCase(1, "[3,4], temperature 0.5", {"B": 3, "Ds": 4, "Dt": 4}, None, {"temperature": 0.5}),
        ),
        _make_pooled,
        lambda fn, x, case: fn(x["student"], x["teacher"], **case.settings),
    ),
}


def objective_inputs(objective: str, case: ObjectiveCase, dtype=torch.float64) -> dict:
    """The seeded inputs of one case: float tensors in ``dtype``, the mask int64 (1 = real token) or None."""
    inputs = OBJECTIVES[objective].make(torch.Generator().manual_seed(case.seed), case)
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in inputs.items()}


@functools.lru_cache(maxsize=None)
def objective_reference(objective: str, case: ObjectiveCase) -> tuple[float, np.ndarray]:
    """The oracle's (value, gradient w.r.t. the student inputs, flattened in order) on one case.

    Cached: the central differences call the slow oracle twice per input entry. Do not modify the array.
    """
    from distillab.losses import feature_reference

    spec = OBJECTIVES[objective]
    oracle = getattr(feature_reference, objective)
    inputs = {k: None if v is None else v.numpy() for k, v in objective_inputs(objective, case).items()}
    inputs = {k: v.astype(np.float64) if v is not None and k != "mask" else v for k, v in inputs.items()}

    def value(x):
        return spec.invoke(oracle, x, case)

    grads = [reference.numerical_grad(lambda a, key=key: value({**inputs, key: a}), inputs[key]).ravel()
             for key in spec.student]
    return value(inputs), np.concatenate(grads)


def _evaluate_objective(fn: Callable, name: str, objective: str, case: ObjectiveCase):
    """The user's (value, flattened student gradient or None) on one case; float64 first, float32 as a fallback."""
    spec = OBJECTIVES[objective]

    def build(dtype):
        inputs = objective_inputs(objective, case, dtype)
        return [inputs[key] for key in spec.student], lambda: spec.invoke(fn, inputs, case)

    value, grads = _value_and_grads(build, name, f"calling {name} as {spec.call.format(name=name)} on the case {case.label}")
    return value, None if grads is None else np.concatenate([g.ravel() for g in grads])


@dataclass
class ObjectiveCaseResult:
    case: ObjectiveCase
    value: float
    reference: float
    grad_error: float | None  # max |grad − reference grad|; None when the user's loss has no gradient


@dataclass
class ObjectiveCheckResult:
    objective: str
    matches: bool
    call: str
    cases: list[ObjectiveCaseResult]
    has_grad: bool = True
    values_match: bool = False


def _check_objective_name(objective: str) -> ObjectiveSpec:
    if objective not in OBJECTIVES:
        raise InputError(f"--objective {objective!r} is not known; use kd or one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[objective]


def check_objective(fn: Callable, objective: str, name: str | None = None) -> ObjectiveCheckResult:
    """Compare ``fn`` with the float64 oracle of ``objective`` (a key of :data:`OBJECTIVES`), in this process."""
    spec = _check_objective_name(objective)
    name = name or getattr(fn, "__name__", "loss")
    outputs = [_evaluate_objective(fn, name, objective, case) for case in spec.cases]
    return compare_objective(objective, spec.call.format(name=name), outputs)


def check_objective_isolated(spec_string: str, objective: str) -> ObjectiveCheckResult:
    """:func:`check_objective` on ``MODULE:FUNCTION`` with the user's code in a child process (see :func:`check_loss_isolated`)."""
    _check_objective_name(objective)
    result = _run_isolated(spec_string, _objective_outputs, (spec_string, objective))
    outputs = [(value, None if grad is None else np.asarray(grad, dtype=np.float64)) for value, grad in result["outputs"]]
    return compare_objective(objective, result["call"], outputs)


def _objective_outputs(spec_string: str, objective: str) -> dict:
    fn, name = load_function(spec_string)
    outputs = [_evaluate_objective(fn, name, objective, case) for case in OBJECTIVES[objective].cases]
    return {"call": OBJECTIVES[objective].call.format(name=name),
            "outputs": [(v, None if g is None else g.tolist()) for v, g in outputs]}


def compare_objective(objective: str, description: str, outputs: list) -> ObjectiveCheckResult:
    """Judge the user's ``outputs`` ([(value, grad or None)] per case) against the oracle."""
    results, grads_match = [], True
    for (value, grad), case in zip(outputs, OBJECTIVES[objective].cases):
        ref_value, ref_grad = objective_reference(objective, case)
        grad_error = None
        if grad is not None:
            grad_error = float(np.max(np.abs(grad - ref_grad), initial=0.0)) if grad.shape == ref_grad.shape else float("inf")
            grads_match = grads_match and grad.shape == ref_grad.shape and _close(grad, ref_grad)
        results.append(ObjectiveCaseResult(case, value, ref_value, grad_error))
    has_grad = all(grad is not None for _, grad in outputs)
    values_match = _close([r.value for r in results], [r.reference for r in results])
    return ObjectiveCheckResult(objective, values_match and has_grad and grads_match, description, results,
                                has_grad=has_grad, values_match=values_match)


def format_objective_report(result: ObjectiveCheckResult, spec: str) -> str:
    rows = result.cases
    width = max(len(r.case.label) for r in rows)
    lines = [
        f"check-loss {spec} --objective {result.objective}",
        f"called as {result.call} on {len(rows)} seeded float64 cases",
        f"reference: {OBJECTIVES[result.objective].formula}",
        "",
        f"{'case':<{width}} {'yours':>14} {'reference':>14} {'|Δvalue|':>9} {'max|Δgrad|':>11}",
    ]
    for r in rows:
        grad = "no grad" if r.grad_error is None else f"{r.grad_error:.2e}"
        lines.append(f"{r.case.label:<{width}} {r.value:>14.8g} {r.reference:>14.8g} "
                     f"{abs(r.value - r.reference):>9.2e} {grad:>11}")
    lines.append("")
    if result.matches:
        lines.append("OK: matches the reference (values and gradients).")
        return "\n".join(lines)
    worst_value = max(rows, key=lambda r: _nan_last(abs(r.value - r.reference)))
    if result.values_match and not result.has_grad:
        lines.append("MISMATCH: the values match the reference but the loss has no gradient w.r.t. the student input "
                     "(returned a float, or detached / computed outside autograd).")
    elif result.values_match:
        lines.append("MISMATCH: the values match the reference but the gradients do not "
                     "(something is detached, or a custom backward is wrong).")
    else:
        lines.append(f"MISMATCH: does not match the reference; largest |Δvalue| "
                     f"{abs(worst_value.value - worst_value.reference):.3g} on the case {worst_value.case.label}.")
        ratios = [r.value / r.reference for r in rows if r.reference != 0]
        if len(ratios) > 1 and np.allclose(ratios, ratios[0], rtol=1e-4):
            lines.append(f"Its values are a constant {ratios[0]:.6g}x the reference on every case (a stray scale factor).")
    graded = [r for r in rows if r.grad_error is not None]
    if graded:
        worst_grad = max(graded, key=lambda r: _nan_last(r.grad_error))
        lines.append(f"Largest |Δgrad| {worst_grad.grad_error:.3g} on the case {worst_grad.case.label}.")
    return "\n".join(lines)


def _nan_last(x: float) -> float:
    return float("inf") if x != x else x
