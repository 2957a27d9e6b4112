"""A saved bag-of-n-grams student keeps only the table rows training changed (issue 11, item 14: the
demo's nine full 2^18 x 64 tables took 604 MB); loading rebuilds the others from the seed, exactly.
"""

from __future__ import annotations

import json

import pytest
import torch

from distillab.errors import InputError
from distillab.train.students import BowStudent, load_bow_model

BUCKETS, DIM = 2**12, 8


def trained_like(seed: int | None) -> tuple[BowStudent, torch.nn.Module]:
    """A model built as the trainer builds it, with a few rows and the classifier changed as training would."""
    student = BowStudent(5, buckets=BUCKETS, dim=DIM, ngrams=1, classes=list("abcde"), seed=seed)
    torch.manual_seed(3)
    model = student.new_model()
    with torch.no_grad():
        model.embedding.weight[[1, 7, 100]] += 0.5
        model.classifier.weight.mul_(2.0)
    return student, model


def test_saved_table_holds_only_changed_rows_and_loads_exactly(tmp_path):
    student, model = trained_like(seed=3)
    student.save(model, tmp_path / "model")
    table_bytes = BUCKETS * DIM * 4
    assert (tmp_path / "model" / "model.safetensors").stat().st_size < table_bytes / 20
    _, loaded = load_bow_model(tmp_path / "model")
    for (name, want), (_, got) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(want, got), name
    before = torch.get_rng_state()
    student.initial_table()  # saving rebuilds it: the caller's random stream must not move
    assert torch.equal(before, torch.get_rng_state())


def test_another_initial_table_is_refused(tmp_path):
    student, model = trained_like(seed=3)
    student.save(model, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["init_sha256"] = "0" * 64  # what another torch's random generator would give
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="rebuilds another initial table from seed 3"):
        load_bow_model(tmp_path / "model")


def test_without_a_seed_the_full_table_is_saved_and_loads(tmp_path):
    student, model = trained_like(seed=None)
    student.save(model, tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").stat().st_size > BUCKETS * DIM * 4
    _, loaded = load_bow_model(tmp_path / "model")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
