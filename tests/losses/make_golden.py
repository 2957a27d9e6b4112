"""Regenerate golden_values.json from the float64 references. Run only when a loss's definition
changes on purpose (and say so in the commit): the file exists to catch *unintended* drift.

    python tests/losses/make_golden.py
"""

import json
from pathlib import Path

import numpy as np

from distillab.losses import reference

PATH = Path(__file__).with_name("golden_values.json")

# (loss, keyword arguments); inputs are fixed below, rounded so JSON holds them exactly
CASES = [
    ("cross_entropy", {"label_smoothing": 0.0}),
    ("cross_entropy", {"label_smoothing": 0.1}),
    ("kd_loss", {"T": 4.0, "alpha": 0.7}),
    ("kd_loss", {"T": 1.0, "alpha": 1.0}),
    ("kd_loss", {"T": 2.0, "alpha": 0.0}),
    ("chunked_kd_loss", {"T": 4.0, "alpha": 0.7}),
    ("hard_kd_loss", {"alpha": 0.7}),
    ("kl_loss", {"T": 2.0}),
    ("reverse_kl_loss", {"T": 2.0}),
    ("generalized_jsd_loss", {"beta": 0.0, "T": 1.5}),
    ("generalized_jsd_loss", {"beta": 0.5, "T": 1.5}),
    ("generalized_jsd_loss", {"beta": 0.9, "T": 1.5}),
    ("generalized_jsd_loss", {"beta": 1.0, "T": 1.5}),
    ("topk_kd_loss", {"T": 2.0, "alpha": 0.6, "tail": "renormalize"}),
    ("topk_kd_loss", {"T": 2.0, "alpha": 0.6, "tail": "bucket"}),
]


def reference_value(loss, inputs, kwargs):
    s, t, y = inputs["student_logits"], inputs["teacher_logits"], inputs["labels"]
    if loss == "cross_entropy":
        return reference.cross_entropy(s, y, kwargs["label_smoothing"])
    if loss in ("kd_loss", "chunked_kd_loss"):
        return reference.kd_loss(s, t, y, kwargs["T"], kwargs["alpha"])
    if loss == "hard_kd_loss":
        return reference.hard_kd_loss(s, t, y, kwargs["alpha"])
    if loss in ("kl_loss", "reverse_kl_loss"):
        return getattr(reference, loss)(s, t, kwargs["T"])
    if loss == "generalized_jsd_loss":
        return reference.generalized_jsd_loss(s, t, kwargs["beta"], kwargs["T"])
    if loss == "topk_kd_loss":
        return reference.topk_kd_loss(
            s, inputs["topk_ids"], inputs["topk_logprobs"], inputs["tail_logmass"], y,
            kwargs["T"], kwargs["alpha"], kwargs["tail"],
        )
    raise KeyError(loss)


def main():
    rng = np.random.RandomState(20240606)
    student = np.round(1.5 * rng.randn(4, 7), 4)
    teacher = np.round(3.0 * rng.randn(4, 7), 4)
    labels = rng.randint(0, 7, size=4)
    k = 3
    topk_ids = np.argsort(-teacher, axis=1, kind="stable")[:, :k]
    logp = np.array([reference.log_softmax(row) for row in teacher])
    topk_logprobs = np.take_along_axis(logp, topk_ids, axis=1)
    tail = np.array([np.log(np.sum(np.exp(np.delete(logp[i], topk_ids[i])))) for i in range(len(logp))])
    inputs = {
        "student_logits": student.tolist(),
        "teacher_logits": teacher.tolist(),
        "labels": labels.tolist(),
        "topk_ids": topk_ids.tolist(),
        "topk_logprobs": topk_logprobs.tolist(),
        "tail_logmass": tail.tolist(),
    }
    cases = [{"loss": loss, "kwargs": kwargs, "value": reference_value(loss, inputs, kwargs)} for loss, kwargs in CASES]
    PATH.write_text(json.dumps({"inputs": inputs, "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
