"""Probabilities saved where logits belong: refused by name, with the fix (their logs) that gives the right T.

softmax(p) flattens probabilities towards uniform, so before the refusal an audit of such a file
silently fitted a temperature far below the model's (0.43 instead of 2.73 in the issue's case).
"""

import numpy as np
import pytest

from distillab.audit import audit
from distillab.audit import metrics as M
from distillab.calibrate import TemperatureScaler, cal_eval_split
from distillab.cli import main
from distillab.errors import InputError
from distillab.io import load_predictions, save_predictions

N, K, TRUE_T = 2000, 4, 2.7


@pytest.fixture(scope="module")
def overconfident():
    """Logits ``TRUE_T`` times too sharp, their labels, and their softmax probabilities."""
    rng = np.random.default_rng(0)
    calibrated = rng.normal(0.0, 2.0, (N, K))
    # Labels drawn from softmax(calibrated): those scores are calibrated, so the fitted T is about TRUE_T.
    labels = (rng.random(N)[:, None] > M.softmax(calibrated).cumsum(axis=1)).sum(axis=1)
    logits = TRUE_T * calibrated
    return logits, labels, M.softmax(logits)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_probabilities_file_is_refused_naming_it_and_the_fix(tmp_path, capsys, overconfident, dtype):
    _, labels, probs = overconfident
    path = tmp_path / "probs.npz"
    np.savez(path, logits=probs.astype(dtype), labels=labels)
    out = tmp_path / "audit"
    assert main(["audit", "--arm", f"a={path}", "--baseline", "a", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert "hold probabilities" in err and "np.log(np.clip(p, 1e-12, None))" in err
    assert not out.exists()


def test_saving_probabilities_as_logits_is_refused(tmp_path, overconfident):
    _, labels, probs = overconfident
    with pytest.raises(InputError, match="hold probabilities"):
        save_predictions(tmp_path / "p.npz", probs, labels)
    assert not (tmp_path / "p.npz").exists()


def test_logs_of_the_probabilities_give_the_logits_temperature(tmp_path, overconfident):
    logits, labels, probs = overconfident
    cal, _ = cal_eval_split(N)
    right = TemperatureScaler().fit(logits[cal], labels[cal]).temperature_
    silently_wrong = TemperatureScaler().fit(probs[cal], labels[cal]).temperature_  # what the audit fitted before
    assert right == pytest.approx(TRUE_T, rel=0.1) and silently_wrong < 1.0

    path = save_predictions(tmp_path / "logp.npz", np.log(np.clip(probs, 1e-12, None)), labels)
    result = audit({"a": path}, "a", n_resamples=5)
    assert result["calibration"]["a"]["temperature"] == pytest.approx(right, rel=1e-6)


def test_logits_that_merely_look_small_are_accepted(tmp_path, overconfident):
    _, labels, probs = overconfident
    shifted = probs.copy()
    shifted[0] *= 0.9  # one row not summing to 1: not a probabilities file
    np.savez(tmp_path / "p.npz", logits=shifted, labels=labels)
    assert load_predictions(tmp_path / "p.npz").n == N
    np.savez(tmp_path / "q.npz", logits=probs - 1e-3, labels=labels)  # a negative entry: real scores
    assert load_predictions(tmp_path / "q.npz").n == N
