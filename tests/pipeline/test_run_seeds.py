"""Issue 13: `training.seeds` trains the arms again per seed and the audit measures seed-to-seed variance.

On the tiny experiment (tiny_experiment.py). The first seed is the primary: its arms are the run's
arms exactly as without `seeds` (same folders, same stamps, the same audit.json byte for byte);
every other seed S trains into arms-seedS/, and audit/seeds.json plus a report table follow.
"""

import re

import pytest
import yaml
from tiny_experiment import tiny_config, write_config

from distillab.cli import main
from distillab.config import config_from_dict
from distillab.errors import ConfigError
from distillab.io import read_json, sha256_file


def with_training(values: dict, **training) -> dict:
    values = {**values, "training": {**values["training"], **training}}
    for key, value in training.items():
        if value is None:
            del values["training"][key]
    return values


# (training settings, config changes, the one line the error must hold)
BAD = [
    ({"seeds": []}, {}, "training.seeds: must list at least one seed"),
    ({"seeds": [1, 2, 1]}, {}, "training.seeds: 1 is listed twice; seeds must be distinct"),
    ({"seeds": [1, 2**32]}, {}, "training.seeds: 4294967296 is not an integer in [0, 2**32)"),
    ({"seeds": [1, -2]}, {}, "training.seeds: -2 is not an integer in [0, 2**32)"),
    ({"seeds": [1, True]}, {}, "training.seeds: must be a list of integers or null, got [1, True]"),
    ({"seeds": 42}, {}, "training.seeds: must be a list of integers or null, got 42"),
    ({"seed": 7, "seeds": [1, 2]}, {}, "training.seed: 7 disagrees with training.seeds, whose first seed (1) is the primary"),
    ({"seeds": None, "seed_arms": ["vanilla"]}, {}, "training.seed_arms: only applies with training.seeds"),
    ({"seeds": [1, 2], "seed_arms": []}, {}, "training.seed_arms: must name at least one arm"),
    ({"seeds": [1, 2], "seed_arms": ["vanilla", "vanilla"]}, {}, "training.seed_arms: 'vanilla' is listed twice"),
    ({"seeds": [1, 2], "seed_arms": ["vanilla", "kd2"]}, {}, "training.seed_arms: 'kd2' is not an arm (arms: vanilla, kd)"),
    ({"seeds": [1, 2], "seed_arms": ["kd"]}, {}, "training.seed_arms: must include the audit baseline 'vanilla'"),
    ({"seeds": [1, 2], "seed_arms": ["vanilla", "tfidf_linear"]}, {"baselines": ["tfidf_linear"]},
     "training.seed_arms: 'tfidf_linear' is a reference baseline: deterministic, never retrained per seed"),
]


@pytest.mark.parametrize("training, changes, line", BAD, ids=[m.split(":")[0] + str(i) for i, (_, _, m) in enumerate(BAD)])
def test_bad_seed_settings_are_one_line_each_caught_by_validate(tmp_path, capsys, training, changes, line):
    values = {**with_training(tiny_config(tmp_path), **training), **changes}
    with pytest.raises(ConfigError) as info:
        config_from_dict(values, source="exp.yaml")
    assert line in str(info.value)
    assert main(["validate", str(write_config(tmp_path, values))]) == 2
    err = capsys.readouterr().err
    assert any(line in one for one in err.splitlines()), err


def test_seed_and_seeds_combine_seeds_wins_and_the_primary_seed_trains_the_arms(tmp_path):
    values = tiny_config(tmp_path)
    plain = config_from_dict(values)
    assert plain.seeds() == [1] and plain.train_config().seed == 1
    both = config_from_dict(with_training(values, seed=5, seeds=[5, 6, 7]))
    assert both.seeds() == [5, 6, 7] and both.train_config().seed == 5
    only = config_from_dict(with_training(values, seed=None, seeds=[9, 3]))
    assert only.seeds() == [9, 3] and only.train_config().seed == 9
    assert only.seed_arm_names() == ["vanilla", "kd"]  # default: every arm
    some = config_from_dict(with_training(values, seeds=[1, 2], seed_arms=["vanilla"]))
    assert some.seed_arm_names() == ["vanilla"]
    # The trainer never sees the run's settings; one seed in `seeds` is the same training config as `seed`.
    one = config_from_dict(with_training(values, seed=None, seeds=[1]))
    assert one.train_config() == plain.train_config()


def files(out):
    """Every file of the run with its content hash (the lock and config.json aside)."""
    return {str(p.relative_to(out)): sha256_file(p) for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in (".distillab-run.lock", "config.json")}


# Outputs a stage writes only when it runs (stamps and temperature.json are rewritten by every run).
OUTPUTS = ("train_log.json", "test.npz", "audit.json", "seeds.json", "report.html", "report.md")


def mtimes(out):
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*"))
            if p.is_file() and p.name in OUTPUTS}


def run(tmp_path, values, capsys):
    assert main(["run", str(write_config(tmp_path, values))]) == 0
    return capsys.readouterr().err


def test_seeds_train_each_arm_per_seed_and_the_audit_and_report_show_seed_variance(tmp_path, capsys):
    out = tmp_path / "run"
    base_values = tiny_config(tmp_path)

    # 1. As before `seeds` existed.
    run(tmp_path, base_values, capsys)
    before = files(out)
    audit_json = (out / "audit" / "audit.json").read_bytes()
    assert not (out / "audit" / "seeds.json").exists() and not list(out.glob("arms-seed*"))
    assert "seeds" not in read_json(out / "audit" / "audit.json")

    # 2. `seeds: [1]` instead of `seed: 1`: the same run, nothing redone or written.
    stamps = mtimes(out)
    err = run(tmp_path, with_training(base_values, seed=None, seeds=[1]), capsys)
    assert mtimes(out) == stamps and files(out) == before, err
    assert not list(out.glob("arms-seed*")) and not (out / "audit" / "seeds.json").exists()

    # 3. Three seeds: the primary arms are kept, seeds 2 and 3 train every arm into arms-seedS/.
    seeded = with_training(base_values, seed=None, seeds=[1, 2, 3])
    err = run(tmp_path, seeded, capsys)
    assert "[train] seed 2: 2 arms: vanilla, kd" in err and "[train] seed 3: 2 arms: vanilla, kd" in err
    after = files(out)
    for path, digest in before.items():
        if path.startswith(("arms/", "teacher", "baselines")):
            assert after[path] == digest, path
    assert (out / "audit" / "audit.json").read_bytes() == audit_json  # the primary seed's audit, unchanged
    for seed in (2, 3):
        for arm in ("vanilla", "kd"):
            folder = out / f"arms-seed{seed}" / arm
            assert (folder / "predictions" / "test.npz").is_file()
            assert read_json(folder / "resolved_config.json")["seed"] == seed
        # Within a seed every arm sees the same data order; another seed, another order.
        orders = {arm: read_json(out / f"arms-seed{seed}" / arm / "train_log.json")["epoch_order_sha256"]
                  for arm in ("vanilla", "kd")}
        assert orders["vanilla"] == orders["kd"]
        assert orders["kd"] != read_json(out / "arms" / "kd" / "train_log.json")["epoch_order_sha256"]
    assert read_json(out / "arms" / "kd" / "resolved_config.json")["seed"] == 1

    seeds = read_json(out / "audit" / "seeds.json")
    audit = read_json(out / "audit" / "audit.json")
    assert seeds["seeds"] == [1, 2, 3] and seeds["primary_seed"] == 1 and seeds["baseline"] == "vanilla"
    assert list(seeds["arms"]) == ["vanilla", "kd"] and seeds["n"] == audit["n"]
    assert {t: b["classes"] for t, b in seeds["tiers"].items()} == {t: b["classes"] for t, b in audit["tiers"].items()}
    for arm in ("vanilla", "kd"):  # the primary seed's values are the audit's own, metric by metric and tier by tier
        for metric in ("accuracy", "macro_f1", "ece", "nll"):
            values = seeds["arms"][arm]["values"]
            assert values["overall"][metric]["per_seed"][0] == pytest.approx(audit["arms"][arm]["overall"][metric])
            for tier in ("head", "mid", "tail"):
                assert values[tier][metric]["per_seed"][0] == pytest.approx(audit["arms"][arm]["tiers"][tier][metric])
    f1 = seeds["arms"]["kd"]["values"]["overall"]["macro_f1"]
    assert len(set(f1["per_seed"])) > 1 and f1["sd"] > 0  # the seeds trained different students
    row = next(r for r in seeds["paired"] if (r["arm"], r["tier"], r["metric"]) == ("kd", "overall", "macro_f1"))
    assert row["n_seeds"] == 3 and row["df"] == 2 and row["ci_low"] <= row["mean"] <= row["ci_high"]
    kd, van = (seeds["arms"][a]["values"]["overall"]["macro_f1"]["per_seed"] for a in ("kd", "vanilla"))
    assert row["deltas"] == pytest.approx([k - v for k, v in zip(kd, van)])

    html = (out / "report" / "report.html").read_text()
    assert 'id="seeds"' in html and "Seed-to-seed variance" in html
    assert 'id="seeds-kd-overall-macro_f1"' in html and 'id="seeds-vanilla-overall-nll"' in html
    verdict = html[html.index('id="verdict"'):html.index("</section>")]
    assert "Noise cleared" in verdict
    for metric in ("macro-F1", "ECE", "NLL"):
        assert re.search(rf"{metric}: the Δ clears (both|test-sample noise only|seed noise only|neither)", verdict), metric
    check_cites_are_cells(html, verdict, expect=("seeds-kd-overall-macro_f1", "transfer-capacity-overall"))
    md = (out / "report" / "report.md").read_text()
    assert "### Seed-to-seed variance" in md and "Noise cleared" in md

    # 4. Nothing changed: nothing is redone.
    stamps, contents = mtimes(out), files(out)
    err = run(tmp_path, seeded, capsys)
    assert mtimes(out) == stamps and files(out) == contents, err
    assert "arms-seed2/stage.json" in contents
    assert "[audit]" in err and "is up to date" in err

    # 5. Extra seeds for vanilla only: nothing trains again; the verdict says kd's seed noise was not measured.
    err = run(tmp_path, with_training(seeded, seed_arms=["vanilla"]), capsys)
    assert "[train] seed 2: 1 arms: vanilla" in err
    seeds = read_json(out / "audit" / "seeds.json")
    assert list(seeds["arms"]) == ["vanilla"] and seeds["paired"] == []
    verdict = (out / "report" / "report.html").read_text()
    assert "seed noise not measured (kd was not trained with several seeds" in verdict

    # 6. Back to one seed: seeds.json goes, and audit.json is byte for byte the one before seeds.
    run(tmp_path, base_values, capsys)
    assert not (out / "audit" / "seeds.json").exists()
    assert (out / "audit" / "audit.json").read_bytes() == audit_json
    assert 'id="seeds"' not in (out / "report" / "report.html").read_text()


def check_cites_are_cells(html: str, verdict: str, expect: tuple[str, ...]) -> None:
    """Every number the verdict shows is the text of the table cell it links to (and the table is in the page)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
    from report_helpers import index_page, numbers_in

    page = index_page(html)
    cites = re.findall(r'<a class="cite" href="#([^"]+)">([^<]+)</a>', verdict)
    anchors = {a for a, _ in cites}
    for anchor in expect:
        assert anchor in anchors, anchor
    for anchor, text in cites:
        if anchor.startswith("scenario-"):
            continue
        assert text.replace("&gt;", ">") in page.rows[anchor], (anchor, text)
    # No number in the noise sentences outside a citation.
    noise = verdict[verdict.index("Noise cleared"):]
    noise = noise[:noise.index("</dd>")]
    plain = re.sub(r'<a class="cite"[^>]*>[^<]*</a>', " ", noise)
    assert numbers_in(re.sub(r"<[^>]+>", " ", plain)) == [], plain


def test_a_config_with_seeds_round_trips_through_yaml(tmp_path):
    values = with_training(tiny_config(tmp_path), seed=None, seeds=[42, 43, 44], seed_arms=["vanilla", "kd"])
    loaded = yaml.safe_load(write_config(tmp_path, values).read_text())
    config = config_from_dict(loaded)
    assert config.seeds() == [42, 43, 44] and config.seed_arm_names() == ["vanilla", "kd"]
