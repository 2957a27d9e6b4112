"""``distillab data list|fetch|inspect`` and how a command-line ``--data`` value becomes a spec."""

from __future__ import annotations

import argparse
import json

import pytest

from distillab.data import command
from distillab.data.load import spec_from_argument
from distillab.errors import InputError


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="distillab")
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_list_and_fetch_find_the_shared_files(shared, capsys, monkeypatch):
    monkeypatch.setenv("DISTILLAB_OFFLINE", "1")
    assert run(["data", "list", "--data-dir", str(shared)]) == 0
    out = capsys.readouterr().out
    assert f"local: {shared / 'reuters-r52' / 'raw'}" in out and "research use only" in out
    assert run(["data", "fetch", "banking77", "cfpb-issue-113", "--data-dir", str(shared)]) == 0
    assert "banking77: 3 file(s) verified" in capsys.readouterr().out


def test_inspect_json_reports_counts_drops_and_hash(shared, tmp_path, capsys):
    sample = shared / "cfpb-complaints" / "small_complaints.csv"
    spec = {"path": str(sample), "text_column": "Consumer complaint narrative", "label_column": "Issue",
            "empty_text": "drop", "min_class_count": 20}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in spec.items()))
    assert run(["data", "inspect", str(spec_file), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == {"train": sum(summary["class_counts"].values())}
    assert min(summary["class_counts"].values()) >= 20
    assert summary["dropped"]["empty_text"] == {"train": 1353}
    assert len(summary["content_hash"]) == 64
    assert run(["data", "inspect", json.dumps(spec)]) == 0  # inline JSON, text output
    assert "Incorrect information on your report" in capsys.readouterr().out


def test_spec_from_argument_forms(tmp_path):
    assert spec_from_argument("r52") == {"lab": "r52"}
    assert spec_from_argument("r52", data_dir="/d") == {"lab": "r52", "data_dir": "/d"}
    assert spec_from_argument('{"hub": "a/b"}') == {"hub": "a/b"}
    assert spec_from_argument("owner/some.data-set") == {"hub": "owner/some.data-set"}
    records = tmp_path / "train.json"
    records.write_text('[{"text": "a", "label": "x"}]')
    assert spec_from_argument(str(records)) == {"path": str(records)}  # a JSON list is data, not a spec
    spec_file = tmp_path / "spec.json"
    spec_file.write_text('{"lab": "banking77"}')
    assert spec_from_argument(str(spec_file)) == {"lab": "banking77"}
    assert spec_from_argument(str(tmp_path)) == {"path": str(tmp_path)}
    with pytest.raises(InputError, match="not a lab dataset .* or a Hub id"):
        spec_from_argument("no_such_thing")
    with pytest.raises(InputError, match="not valid JSON"):
        spec_from_argument("{lab: r52")
