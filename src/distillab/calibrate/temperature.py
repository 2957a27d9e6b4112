"""Post-hoc temperature scaling: one scalar T fitted on a calibration split, applied as softmax(z / T).

The course fits log T (init 0, i.e. T = 1) with ``torch.optim.LBFGS(lr=0.1, max_iter=200)`` on the
mean cross-entropy of float32 logits. By default (``optimizer="exact"``) we minimise the same
objective in float64 with scipy's L-BFGS-B and an exact gradient. NLL(z/T) is convex in 1/T, hence
unimodal in log T, so both head for the same optimum, but torch stops on its float32 tolerance a
little short of it (~0.2% in T), which moves the course's printed ECE and Test B in the last digit;
``optimizer="reference"`` runs the course's torch loop itself to reproduce them. argmax is
unchanged by any T > 0, so accuracy and F1 never move; only probabilities do.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from distillab.audit.metrics import softmax
from distillab.errors import InputError

SPLIT_SEED = 1041  # course: np.random.RandomState(42 + 999)
MIN_CAL_ROWS = 10  # fewer rows make T a coin toss; the audit refuses to fit on them
# T is kept in [1e-3, 1e3]: separable data drives the optimum to T -> 0, which no caller wants.
# A fit that ends on a bound is reported (``at_bound_``), never silently clamped.
T_BOUNDS = (1e-3, 1e3)
LOG_T_BOUNDS = (float(np.log(T_BOUNDS[0])), float(np.log(T_BOUNDS[1])))
OPTIMIZERS = ("exact", "reference")
REFERENCE_LR, REFERENCE_MAX_ITER = 0.1, 200  # the course's torch.optim.LBFGS settings


class NotFittedError(ValueError, AttributeError):
    """``transform``/``predict_proba`` called before ``fit`` (same bases as scikit-learn's)."""


def _nll_and_grad(z: np.ndarray, labels: np.ndarray, log_t: float) -> tuple[float, float]:
    """Mean NLL of softmax(z / T) at T = exp(log_t), and its exact derivative in log T.

    With s = z/T, ds/dlogT = −s, so dNLL/dlogT = mean(s_y − Σ_k p_k s_k). One exp pass serves both.
    """
    s = z * np.exp(-log_t)
    top = s.max(axis=1, keepdims=True)
    e = np.exp(s - top)  # max-subtracted: no overflow for any T in bounds
    total = e.sum(axis=1)
    s_y = s[np.arange(s.shape[0]), labels]
    value = np.mean(top[:, 0] + np.log(total) - s_y)
    grad = np.mean(s_y - np.einsum("ij,ij->i", e, s) / total)
    return float(value), float(grad)


def mean_nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of softmax(logits / T), the objective T is fitted on (no probability clip)."""
    z = np.asarray(logits, dtype=np.float64)
    return _nll_and_grad(z, np.asarray(labels), float(np.log(temperature)))[0]


def _objective(log_t: np.ndarray, z: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    value, grad = _nll_and_grad(z, labels, log_t[0])
    return value, np.array([grad])


class TemperatureScaler:
    """scikit-learn style: ``fit(logits, labels)`` returns self; fitted state ends in ``_``.

    Attributes after fit: ``temperature_``, ``log_temperature_``, ``nll_before_`` (T = 1),
    ``nll_after_``, ``n_iter_``, ``n_samples_``, ``at_bound_`` (None, "lower" or "upper": the fit
    ended on a bound of ``T_BOUNDS``).

    ``optimizer``: "exact" (float64 L-BFGS-B to convergence) or "reference" (the course's torch
    LBFGS, lr 0.1, max_iter 200, float32, one ``step``; ``tol`` and ``max_iter`` do not apply).
    """

    def __init__(self, tol: float = 1e-10, max_iter: int = 200, optimizer: str = "exact"):
        self.tol = tol
        self.max_iter = max_iter
        self.optimizer = optimizer

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> "TemperatureScaler":
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown temperature optimizer {self.optimizer!r}; choose {' or '.join(OPTIMIZERS)}")
        z, labels = _check_logits_labels(logits, labels)
        if z.shape[0] < MIN_CAL_ROWS:
            raise InputError(f"cannot fit a temperature on {z.shape[0]} rows; need at least {MIN_CAL_ROWS}")
        if self.optimizer == "reference":
            log_t, temperature, self.n_iter_ = _reference_fit(logits, labels)
        else:
            result = minimize(
                _objective,
                x0=np.zeros(1),  # log T = 0, i.e. start from the raw logits as the course does
                args=(z, labels),
                jac=True,
                method="L-BFGS-B",
                bounds=[LOG_T_BOUNDS],
                options={"maxiter": self.max_iter, "ftol": self.tol, "gtol": self.tol},
            )
            log_t = float(result.x[0])
            temperature, self.n_iter_ = float(np.exp(log_t)), int(result.nit)
        # L-BFGS-B stops exactly on a bound; the unbounded reference is clipped to it here.
        self.at_bound_ = "lower" if log_t <= LOG_T_BOUNDS[0] else "upper" if log_t >= LOG_T_BOUNDS[1] else None
        if self.at_bound_ is not None:
            log_t = LOG_T_BOUNDS[0] if self.at_bound_ == "lower" else LOG_T_BOUNDS[1]
            temperature = float(np.exp(log_t))
        self.log_temperature_, self.temperature_ = log_t, temperature
        self.nll_before_ = mean_nll(z, labels, 1.0)
        self.nll_after_ = _nll_and_grad(z, labels, log_t)[0]  # the objective where the fit ended
        self.n_samples_ = int(z.shape[0])
        return self

    def bound_warning(self) -> str | None:
        """A sentence for the user when the fit ended on a bound of ``T_BOUNDS``, else None."""
        self._require_fitted()
        if self.at_bound_ is None:
            return None
        bound = T_BOUNDS[0] if self.at_bound_ == "lower" else T_BOUNDS[1]
        why = ("the cal rows are (nearly) separable: the NLL keeps falling as T shrinks" if self.at_bound_ == "lower"
               else "the logits carry (almost) no information about the labels")
        return f"the temperature hit its {self.at_bound_} bound T = {bound:g} ({why}); T was clamped there"

    def _require_fitted(self) -> float:
        if not hasattr(self, "temperature_"):
            raise NotFittedError("This TemperatureScaler is not fitted yet; call fit(logits, labels) first.")
        return self.temperature_

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Scaled logits ``logits / T`` in float64."""
        return np.asarray(logits, dtype=np.float64) / self._require_fitted()

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / T)`` in float64."""
        return softmax(self.transform(logits))

    def fit_transform(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self.fit(logits, labels).transform(logits)


def _reference_fit(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    """The course's ``fit_temperature``: (log T, T, iterations), T computed in float32 as torch does.

    ``log_T = zeros(1)``; ``LBFGS([log_T], lr=0.1, max_iter=200)``; one ``step`` of a closure
    returning ``cross_entropy(logits / log_T.exp(), labels)`` on float32 logits.
    """
    import torch  # only this optimizer needs it; the audit stays light otherwise

    z = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=REFERENCE_LR, max_iter=REFERENCE_MAX_ITER)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    value = float(log_t.detach()[0])
    if not np.isfinite(value):
        raise InputError("the reference (torch LBFGS) temperature fit diverged; use the exact optimizer")
    return value, float(log_t.detach().exp()[0]), int(optimizer.state[log_t]["n_iter"])


def _check_logits_labels(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if z.ndim != 2:
        raise InputError(f"logits must be 2-D [rows, classes], got shape {z.shape}")
    if labels.shape != (z.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be {z.shape[0]} integers, got shape {labels.shape} dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= z.shape[1]):
        raise InputError(f"labels must lie in [0, {z.shape[1]})")
    if not np.isfinite(z).all():
        raise InputError("logits contain NaN or inf")
    return z, labels.astype(np.int64)


def cal_eval_split(n: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The course's halves: ``RandomState(seed).permutation(n)``, first n//2 rows calibrate, the rest evaluate."""
    perm = np.random.RandomState(seed).permutation(n)
    return perm[: n // 2], perm[n // 2 :]


def split_from_json(spec: dict, ids: np.ndarray | None, n: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """An explicit split ``{"cal": [...], "eval": [...]}`` of row positions (ints) or row ids (strings)."""
    if not isinstance(spec, dict) or "cal" not in spec or "eval" not in spec:
        raise InputError(f"{where}: expected a JSON object with 'cal' and 'eval' lists")
    out = []
    for part in ("cal", "eval"):
        items = spec[part]
        if not isinstance(items, list) or not items:
            raise InputError(f"{where}: '{part}' must be a non-empty list of row positions or ids")
        if all(isinstance(x, str) for x in items):
            if ids is None:
                raise InputError(f"{where}: '{part}' lists row ids but the predictions have no 'ids'")
            position = {row_id: i for i, row_id in enumerate(ids.tolist())}
            missing = [x for x in items if x not in position]
            if missing:
                raise InputError(f"{where}: '{part}' id {missing[0]!r} is not in the predictions ({len(missing)} missing)")
            rows = np.array([position[x] for x in items], dtype=np.int64)
        elif all(isinstance(x, int) and not isinstance(x, bool) for x in items):
            outside = next((x for x in items if not 0 <= x < n), None)  # before int64: 10**23 would overflow it
            if outside is not None:
                raise InputError(f"{where}: '{part}' has row position {outside}, outside [0, {n})")
            rows = np.array(items, dtype=np.int64)
        else:
            raise InputError(f"{where}: '{part}' must be all integers (positions) or all strings (ids)")
        if np.unique(rows).size != rows.size:
            raise InputError(f"{where}: '{part}' lists a row twice")
        out.append(rows)
    if np.intersect1d(out[0], out[1]).size:
        raise InputError(f"{where}: 'cal' and 'eval' overlap; a temperature must be judged on rows it was not fitted on")
    return out[0], out[1]
