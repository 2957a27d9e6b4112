"""Check a user's KD loss against the float64 reference, and name the silent bug its values fit.

"The loss goes down" is not a test: every bug below trains without an error. So the checker
evaluates the user's function on several seeded random batches (different batch sizes, K, T and
α), compares values and gradients w.r.t. the student logits with
:func:`distillab.losses.reference.kd_loss`, and, if they differ, evaluates the reference with each
known bug (and every combination of them) switched on and reports the variant the user's numbers
fit. The bugs are the ones peers ship most often (TRL #2202, the course's colleague, ...).
"""

from __future__ import annotations

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
    """The user's (value, grad or None) on one case, float64 inputs first, float32 as a fallback.

    A SystemExit is caught like any error: a loss that exits has not returned a value.
    """
    first_error = None
    for dtype in (torch.float64, torch.float32):
        s, t, y = make_batch(case, dtype)
        s.requires_grad_(True)
        try:
            loss = _scalar(call(s, t, y, T, alpha), name)
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
        grad = None if s.grad is None else s.grad.double().numpy()
        return float(loss.detach()), grad
    raise InputError(
        f"calling {name} on a batch of {case.batch}x{case.classes} logits {_describe(first_error)}"
    )


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
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with tempfile.TemporaryDirectory(prefix="distillab-check-loss-") as tmp:
        result_path = Path(tmp) / "result.json"
        sys.stdout.flush()  # a forked child flushes its copy of these buffers when it ends
        sys.stderr.flush()
        child = context.Process(target=_child_main, args=(spec, fixed, tuple(cases), str(result_path)))
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
    outputs = [(value, None if grad is None else np.asarray(grad, dtype=np.float64)) for value, grad in result["outputs"]]
    return compare_with_reference(result["call"], outputs, cases, fixed)


def _child_main(spec: str, fixed, cases, result_path: str) -> None:
    """In the child: import and call the user's function; write its outputs (or one error line) to ``result_path``."""
    try:
        fn, name = load_function(spec)
        call, description = make_caller(fn, name, fixed)
        outputs = [_evaluate(call, name, case, T, alpha) for case, T, alpha in _settings(cases, fixed)]
        result = {"call": description, "outputs": [(v, None if g is None else g.tolist()) for v, g in outputs]}
    except InputError as exc:
        result = {"error": str(exc)}
    except Exception as exc:  # e.g. the user's signature inspection itself failing: still one line
        result = {"error": f"checking {spec} {_describe(exc)}"}
    write_text_atomic(result_path, json.dumps(result))  # NaN stays NaN: json reads it back


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
