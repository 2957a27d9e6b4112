"""Golden values: every loss on fixed inputs, pre-computed by the float64 references.

Guards against silent drift in either implementation (a changed default, a refactor of a core).
Regenerate only on purpose with tests/losses/make_golden.py.
"""

import json
from pathlib import Path

import pytest
import torch

from distillab.losses import kd

GOLDEN = json.loads(Path(__file__).with_name("golden_values.json").read_text())
INPUTS = GOLDEN["inputs"]


def call(loss, kwargs):
    s = torch.tensor(INPUTS["student_logits"], dtype=torch.float64)
    t = torch.tensor(INPUTS["teacher_logits"], dtype=torch.float64)
    y = torch.tensor(INPUTS["labels"])
    if loss == "cross_entropy":
        return kd.cross_entropy(s, y, **kwargs)
    if loss in ("kd_loss", "hard_kd_loss"):
        return getattr(kd, loss)(s, t, y, **kwargs)
    if loss == "chunked_kd_loss":
        return kd.chunked_kd_loss(s, t, y, chunk_rows=3, **kwargs)
    if loss in ("kl_loss", "reverse_kl_loss", "generalized_jsd_loss"):
        return getattr(kd, loss)(s, t, **kwargs)
    if loss == "topk_kd_loss":
        ids = torch.tensor(INPUTS["topk_ids"], dtype=torch.int32)
        logprobs = torch.tensor(INPUTS["topk_logprobs"], dtype=torch.float64)
        tails = torch.tensor(INPUTS["tail_logmass"], dtype=torch.float64)
        return kd.topk_kd_loss(s, ids, logprobs, tails, y, **kwargs)
    raise KeyError(loss)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{c['loss']}-{'-'.join(map(str, c['kwargs'].values()))}")
def test_golden_value(case):
    assert call(case["loss"], case["kwargs"]).item() == pytest.approx(case["value"], rel=1e-10, abs=1e-14)


def test_golden_file_covers_every_loss():
    assert {c["loss"] for c in GOLDEN["cases"]} == {
        "cross_entropy", "kd_loss", "chunked_kd_loss", "hard_kd_loss", "kl_loss",
        "reverse_kl_loss", "generalized_jsd_loss", "topk_kd_loss",
    }


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["loss"])
def test_references_still_produce_the_golden_values(case):
    from make_golden import reference_value  # beside this file

    assert reference_value(case["loss"], INPUTS, case["kwargs"]) == pytest.approx(case["value"], rel=1e-12, abs=1e-15)
