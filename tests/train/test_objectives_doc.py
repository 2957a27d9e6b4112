"""docs/objectives.md lists every registered objective with its family and every setting with its default."""

from __future__ import annotations

from pathlib import Path

from distillab.objectives import REGISTRY

DOC = (Path(__file__).parents[2] / "docs" / "objectives.md").read_text(encoding="utf-8")


def test_every_objective_and_setting_is_documented_with_its_default():
    rows = {line.split("|")[1].strip().strip("`"): line for line in DOC.splitlines() if line.startswith("| `")}
    assert set(rows) == set(REGISTRY)
    for name, objective in REGISTRY.items():
        row = rows[name]
        assert f"| {objective.family} |" in row, name
        for key, setting in objective.settings.items():
            default = setting.default if not isinstance(setting.default, bool) else str(setting.default).lower()
            assert f"`{key}` ({default:g}" in row if isinstance(default, float) else f"`{key}` ({default}" in row, \
                (name, key)
