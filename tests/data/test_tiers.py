import json
from collections import Counter

import numpy as np
import pytest

from distillab.data.tiers import assign_tiers, load_train_counts, rank_classes, tier_support
from distillab.errors import InputError


def test_rank_breaks_ties_by_class_id():
    counts = np.array([5, 9, 5, 9, 1])
    assert rank_classes(counts).tolist() == [1, 3, 0, 2, 4]


def test_cutoffs_match_most_common_slices():
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 500, size=113)
    tiers = assign_tiers(counts)
    # The course: Counter.most_common()[:20], [20:60], [60:] (counts made unique so the order is defined).
    unique_counts = counts * 1000 + (113 - np.arange(113))
    order = [c for c, _ in Counter(dict(enumerate(unique_counts))).most_common()]
    assert set(np.flatnonzero(tiers == "head")) == set(order[:20])
    assert set(np.flatnonzero(tiers == "mid")) == set(order[20:60])
    assert set(np.flatnonzero(tiers == "tail")) == set(order[60:])
    assert (tiers == "head").sum() == 20 and (tiers == "mid").sum() == 40 and (tiers == "tail").sum() == 53


def test_thresholds():
    tiers = assign_tiers(np.array([100, 99, 20, 19, 0]), thresholds=(100, 20))
    assert tiers.tolist() == ["head", "mid", "mid", "tail", "tail"]


@pytest.mark.parametrize("kwargs", [{"cutoffs": (60, 20)}, {"cutoffs": (0, 5)}, {"thresholds": (5, 10)}])
def test_bad_cut_points(kwargs):
    with pytest.raises(InputError):
        assign_tiers(np.arange(10), **kwargs)


def test_support_table_in_rank_order():
    counts = np.array([3, 10, 7])
    table = tier_support(counts, assign_tiers(counts, cutoffs=(1, 2)), ["a", "b", "c"])
    assert [(r["rank"], r["class"], r["name"], r["count"], r["tier"]) for r in table] == [
        (1, 1, "b", 10, "head"),
        (2, 2, "c", 7, "mid"),
        (3, 0, "a", 3, "tail"),
    ]


def test_load_counts_formats(tmp_path):
    classes = ["a", "b", "c"]
    (tmp_path / "l.json").write_text(json.dumps([1, 2, 3]))
    (tmp_path / "d.json").write_text(json.dumps({"c": 5, "a": 1}))
    (tmp_path / "i.json").write_text(json.dumps({"2": 5, "0": 1}))
    (tmp_path / "c.csv").write_text("class,count\nb,4\n0,2\n")
    assert load_train_counts(tmp_path / "l.json", classes).tolist() == [1, 2, 3]
    assert load_train_counts(tmp_path / "d.json", classes).tolist() == [1, 0, 5]
    assert load_train_counts(tmp_path / "i.json", classes).tolist() == [1, 0, 5]
    assert load_train_counts(tmp_path / "c.csv", classes).tolist() == [2, 4, 0]


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("short.json", "[1, 2]", "has 2 counts"),
        ("unknown.json", '{"zzz": 3}', "unknown class"),
        ("neg.json", "[1, -2, 3]", "non-negative"),
        ("range.json", '{"7": 3}', "outside"),
        ("bad.csv", "x,y\n1,2\n", "needs a 'count' column"),
        ("broken.json", "[1,", "not valid JSON"),
        ("inf.csv", "class,count\na,inf\n", "non-negative integer"),
        ("nan.json", "[1, NaN, 3]", "non-negative integer"),
        ("twice.csv", "class,count\nb,4\n1,2\n", "listed twice"),
    ],
)
def test_load_counts_errors(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=match) as err:
        load_train_counts(tmp_path / name, ["a", "b", "c"])
    assert name in str(err.value)
