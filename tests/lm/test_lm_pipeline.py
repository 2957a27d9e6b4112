"""``distillab run`` / ``validate`` on a ``kind: lm`` config, end to end on tiny models, and the bad inputs it
refuses up front (one line naming the file and row, exit 2, no output folder left)."""

import json

import pytest
import yaml

from distillab.cli import main
from lm_helpers import WORDS, make_tokenizer, save_tiny_llama, tiny_llama, write_corpus

ARMS = [{"name": "ce", "loss": "ce"},
        {"name": "kd_topk", "loss": "topk_kd", "T": 2.0, "alpha": 0.5},
        {"name": "kd_sampled", "loss": "sampled_kd"},
        {"name": "rkl", "loss": "topk_reverse_kl"},
        {"name": "seqkd", "loss": "seq_kd", "prompt_tokens": 3, "new_tokens": 4},
        {"name": "gkd", "loss": "gkd", "prompt_tokens": 3, "new_tokens": 4, "on_policy": 0.5}]


def write_config(tmp_path, out="out", arms=ARMS, corpus=None, **changes):
    teacher = tmp_path / "teacher"
    if not teacher.exists():
        save_tiny_llama(teacher, layers=4)
    config = {"kind": "lm", "name": "tiny", "output_dir": str(tmp_path / out),
              "data": corpus or write_corpus(tmp_path / "corpus"), "max_length": 12,
              "teacher": {"model": str(teacher), "topk": 5, "sampled": 8, "batch_size": 4},
              "student": {"layers": 2}, "training": {"steps": 3, "batch_size": 4, "learning_rate": 1e-3, "threads": 1},
              "arms": arms, "audit": {"baseline": "ce", "n_resamples": 20}}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(path, capsys, *extra):
    code = main(["run", str(path), *extra])
    return code, capsys.readouterr().err


def test_validate_accepts_an_lm_config_and_lists_every_problem(tmp_path, capsys):
    good = write_config(tmp_path)
    assert main(["validate", str(good)]) == 0
    assert "valid LM config (6 arms" in capsys.readouterr().out
    bad = write_config(tmp_path, out="bad", arms=[{"name": "x", "loss": "topk_kd", "alpha": 2, "bogus": 1}],
                       training={"steps": 0})
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert "training.steps" in err and "alpha must lie in [0, 1]" in err and "bogus" in err and "audit.baseline" in err


BAD_VALUES = [  # each was accepted, then crashed mid-run, trained on NaN, or wrote outside the arm's folder
    ({"arms": [ARMS[0], {"name": "..", "loss": "seq_kd", "prompt_tokens": 3, "new_tokens": 4}]}, "arms[1]: name '..'"),
    ({"arms": [ARMS[0], {"name": ".", "loss": "topk_kd"}]}, "arms[1]: name '.'"),
    ({"arms": [ARMS[0], {"name": None, "loss": "topk_kd"}]}, "arms[1]: name None"),
    ({"arms": [ARMS[0], {"name": "kd\n", "loss": "topk_kd"}]}, "arms[1]: name 'kd\\n'"),
    ({"training": {"learning_rate": float("nan")}}, "training.learning_rate"),
    ({"training": {"learning_rate": float("inf")}}, "training.learning_rate"),
    ({"arms": [ARMS[0], {"name": "kd", "loss": "topk_kd", "T": float("nan")}]}, "arms[1] (kd): T must be"),
    ({"training": {"seed": "x"}}, "training.seed"),
    ({"teacher": {"seed": -1}}, "teacher.seed"),
    ({"audit": {"seed": 2**40}}, "audit.seed"),
    ({"arms": [ARMS[0], {"name": "s", "loss": "seq_kd", "seed": "x"}]}, "arms[1] (s): seed"),
    ({"append_eos": "false"}, "append_eos"),
    ({"arms": [ARMS[0], {"name": "s", "loss": "seq_kd", "do_sample": "no"}]}, "do_sample"),
    ({"audit": {"n_resamples": 10**12}}, "audit.n_resamples: at most"),
    ({"teacher": {"model": 5}}, "teacher.model"),
    ({"teacher": {"topk_cache": 5}}, "teacher.topk_cache"),
    ({"train_split": ["train"]}, "train_split"),
    ({"name": ["a"]}, "name: must be a string"),
    ({"output_dir": 5}, "output_dir"),
    ({"report": {"title": 5}}, "report.title"),
    ({"training": []}, "training: must be a mapping"),
    ({"student": {"layers": [True, 2]}}, "student.layers"),
]


@pytest.mark.parametrize("changes, needle", BAD_VALUES, ids=[needle.split(":")[0] for _, needle in BAD_VALUES])
def test_wrong_types_and_ranges_are_refused_by_validate_in_one_line(tmp_path, capsys, changes, needle):
    path = write_config(tmp_path, **changes)
    capsys.readouterr()  # the tiny teacher's save progress
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and needle in err, err
    assert "Traceback" not in err


def test_the_lm_pipeline_runs_end_to_end_and_resumes(tmp_path, capsys):
    path = write_config(tmp_path)
    code, err = run(path, capsys)
    assert code == 0, err
    out = tmp_path / "out"
    for arm in ARMS:
        assert (out / "arms" / arm["name"] / "model" / "model.safetensors").exists()
        log = json.loads((out / "arms" / arm["name"] / "train_log.json").read_text())
        assert log["steps"] == 3 and log["trained_tokens"] > 0
    assert json.loads((out / "generations" / "seqkd" / "manifest.json").read_text())["fingerprint"]["settings"][
        "new_tokens"] == 4
    assert (out / "teacher-topk" / "manifest.json").exists() and (out / "teacher-sampled" / "manifest.json").exists()
    audit = json.loads((out / "audit" / "audit.json").read_text())
    assert set(audit["arms"]) >= {arm["name"] for arm in ARMS}
    assert (out / "report" / "report.html").exists()
    stale = out / "generations" / "seqkd" / ".generations.npz.abc123.tmp.npz"  # a write a killed run left
    stale.write_bytes(b"partial")
    code, err = run(path, capsys)  # everything up to date: nothing retrained
    assert code == 0 and err.count("up to date") == len(ARMS) and "steps" not in err.replace("up to date", "")
    assert not stale.exists() and "removed 1 temporary file(s)" in err
    changed = write_config(tmp_path, arms=ARMS[:1] + [{**ARMS[1], "T": 1.0}] + ARMS[2:])
    code, err = run(changed, capsys)
    assert code == 0 and err.count("up to date") == len(ARMS) - 1 and "arm kd_topk (topk_kd)" in err


def assert_refused(tmp_path, capsys, path, *needles):
    code, err = run(path, capsys)
    lines = [line for line in err.splitlines() if "error:" in line]  # beside progress lines of model loading
    assert code == 2 and len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_a_student_with_another_vocabulary_is_refused(tmp_path, capsys):
    other = list(WORDS)
    other[0], other[1] = other[1], other[0]
    save_tiny_llama(tmp_path / "student", layers=1, words=other)
    path = write_config(tmp_path, student={"model": str(tmp_path / "student")})
    assert_refused(tmp_path, capsys, path, str(path), "token id 2 is 'the' for the teacher but 'a' for the student")


def test_a_cache_made_for_other_text_is_refused(tmp_path, capsys):
    made = write_config(tmp_path, out="first", arms=ARMS[:2])
    assert run(made, capsys)[0] == 0
    other = write_corpus(tmp_path / "other" / "corpus", texts={"train": ["the bank said oil rose"] * 12,
                                                              "test": ["the market fell"] * 2})  # same row ids
    path = write_config(tmp_path, arms=ARMS[:2], corpus=other,
                        teacher={"topk_cache": str(tmp_path / "first" / "teacher-topk")})
    assert_refused(tmp_path, capsys, path, str(tmp_path / "first" / "teacher-topk"),
                   "texts differ on 12 row(s) (e.g. 'corpus-train-0' in shard-00000.safetensors)")


@pytest.mark.parametrize("layers, needle", [(10, "keeps between 1 and 4 layers"), ([0, 0], "got [0, 0]"),
                                            ([9], "got [9]")])
def test_a_cut_student_the_teacher_cannot_give_is_refused_before_any_output(tmp_path, capsys, layers, needle):
    path = write_config(tmp_path, student={"layers": layers})
    assert_refused(tmp_path, capsys, path, str(path), "student.layers", needle)


def test_sequences_longer_than_the_context_are_refused(tmp_path, capsys):
    path = write_config(tmp_path, max_length=200)
    assert_refused(tmp_path, capsys, path, str(path), "exceed the teacher's context of 128 positions")


def test_a_corpus_with_an_empty_document_is_refused_naming_file_and_row(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", texts={"train": ["the market rose", "  ", "oil fell"],
                                                     "test": ["the bank"]})
    path = write_config(tmp_path, corpus=corpus)
    assert_refused(tmp_path, capsys, path, "train.jsonl", "empty text")


def test_a_document_without_a_next_token_is_refused_naming_the_row(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", texts={"train": ["the market rose", "oil"], "test": ["the bank"]})
    path = write_config(tmp_path, corpus=corpus, append_eos=False)
    assert_refused(tmp_path, capsys, path, "split 'train', row 1", "tokenises to 1 token")


def test_helpers_model_shares_pad_and_eos():
    tokenizer = make_tokenizer()
    assert tiny_llama(len(tokenizer), layers=1).config.pad_token_id == tokenizer.pad_token_id == tokenizer.eos_token_id
