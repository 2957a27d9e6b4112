"""Two uninterrupted runs of one config give byte-identical outputs, apart from named measurements.

A measurement is a JSON value under a ``measurements`` key (timings); it may differ between runs
and must never change a decision. Everything else — every file — must be byte-identical. The
tiny experiment (tiny_experiment.py) runs twice into the same path (the first result is moved
aside), so paths recorded inside files are the same too.
"""

import json
import shutil

import pytest
from tiny_experiment import tiny_config, write_config

from distillab.cli import main

MEASUREMENTS = "measurements"

def without_measurements(value):
    if isinstance(value, dict):
        return {k: without_measurements(v) for k, v in value.items() if k != MEASUREMENTS}
    if isinstance(value, list):
        return [without_measurements(v) for v in value]
    return value


def same(first, second) -> bool:
    if first.read_bytes() == second.read_bytes():
        return True
    if first.suffix != ".json":
        return False
    return without_measurements(json.loads(first.read_text())) == without_measurements(json.loads(second.read_text()))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("determinism")
    config = write_config(tmp_path, tiny_config(tmp_path))
    assert main(["run", str(config)]) == 0
    shutil.move(tmp_path / "run", tmp_path / "first")
    assert main(["run", str(config)]) == 0
    return tmp_path / "first", tmp_path / "run"


def files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_two_runs_write_the_same_files_with_the_same_content(two_runs):
    first, second = two_runs
    assert files(first) == files(second)
    differ = [name for name in files(first) if not same(first / name, second / name)]
    assert differ == []
