"""``distillab budget``: the standard FLOP arithmetic, non-embedding counting from model folders, bad input."""

from __future__ import annotations

import json

import pytest

from distillab.budget import count_parameters, estimate, format_budget, parse_number
from distillab.cli import main
from distillab.errors import InputError

WORKED = dict(teacher_params="70e9", student_params="8e9", tokens="20e9", pretrain_tokens="2e12")


def run_cli(capsys, *argv):
    code = main(["budget", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- the worked example


def test_worked_example_is_computed_exactly():
    flops = estimate(**WORKED)["flops"]
    assert flops["teacher_forward"] == 20e9 * 2 * 70e9 == 2.8e21
    assert flops["student_train"] == 20e9 * 6 * 8e9 == 9.6e20
    assert flops["distillation"] == 3.76e21  # 20e9 x (2·70e9 + 6·8e9) = 20e9 x 188e9
    assert flops["student_pretraining"] == 9.6e22  # 2e12 x 6·8e9
    assert flops["distillation_over_pretraining"] == pytest.approx(3.76e21 / 9.6e22, rel=1e-15)
    assert round(100 * flops["distillation_over_pretraining"], 1) == 3.9


def test_the_widely_copied_slip_is_not_reproduced(capsys):
    """2.96e21 / 3.1% is 20e9 x (2·70e9 + 1·8e9): the student's training step counted as 1·N, not 6·N."""
    flops = estimate(**WORKED)["flops"]
    assert flops["distillation"] != pytest.approx(2.96e21, rel=1e-3)
    assert flops["distillation_over_pretraining"] != pytest.approx(0.031, abs=5e-4)
    code, out, err = run_cli(capsys, "--teacher-params", "70e9", "--student-params", "8e9", "--tokens", "20e9",
                             "--pretrain-tokens", "2e12")
    assert code == 0 and err == ""
    assert "3.76e21" in out and "9.60e22" in out and "3.9%" in out
    assert "2.96e21" not in out and "3.1%" not in out
    assert "non-embedding" in out and "tied" in out  # the output says what N counts


def test_json_output_and_suffixes(capsys):
    code, out, _ = run_cli(capsys, "--teacher-params", "70B", "--student-params", "8B", "--tokens", "20B",
                           "--pretrain-tokens", "2T", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["flops"]["distillation"] == 3.76e21 and result["flops"]["student_pretraining"] == 9.6e22
    assert result["teacher"] == {"source": "given", "non_embedding": 70e9}
    assert result["time"] is None and result["serving"] is None
    assert any("non-embedding" in note for note in result["notes"])
    assert parse_number("1.5k", "x") == 1500 and parse_number("2M", "x") == 2e6 and parse_number(3, "x") == 3.0


def test_costs_and_break_even_by_hand():
    result = estimate(**WORKED, capture_rows_per_s=40, tokens_per_row=500, student_step_s=2, tokens_per_step=1e6,
                      devices=8, teacher_ms_per_request=900, student_ms_per_request=100, price_per_device_hour=2)
    time = result["time"]
    teacher_h = 20e9 / (40 * 500) / 3600 * 8  # 1e6 s on 8 devices
    student_h = 20e9 / 1e6 * 2 / 3600 * 8  # 2e4 steps x 2 s on 8 devices
    assert time["teacher_capture"]["device_hours"] == pytest.approx(teacher_h)
    assert time["student_training"]["device_hours"] == pytest.approx(student_h)
    assert time["distillation_device_hours"] == pytest.approx(teacher_h + student_h)
    serving = result["serving"]
    assert serving["teacher"]["cost_per_million_requests"] == pytest.approx(900 / 3.6 * 2)  # 250 device-h x 2
    assert serving["student"]["cost_per_million_requests"] == pytest.approx(100 / 3.6 * 2)
    assert serving["distillation_cost"] == pytest.approx((teacher_h + student_h) * 2)
    # break-even: the one-off cost / the saving per request; the price cancels
    break_even = (teacher_h + student_h) * 3.6e6 / (900 - 100)
    assert serving["break_even_requests"] == pytest.approx(break_even)
    saving = (serving["teacher"]["cost_per_million_requests"] - serving["student"]["cost_per_million_requests"]) / 1e6
    assert serving["distillation_cost"] / saving == pytest.approx(break_even)
    text = format_budget(result)
    assert "break-even after" in text and "per million requests" in text


def test_break_even_is_never_when_the_student_is_not_cheaper_and_flops_estimate_fills_in():
    result = estimate(**WORKED, device_flops=1e15, mfu=0.5, teacher_ms_per_request=10, student_ms_per_request=10)
    time = result["time"]
    assert time["teacher_capture"]["device_hours"] == pytest.approx(2.8e21 / (1e15 * 0.5) / 3600)
    assert time["teacher_capture"]["source"].startswith("estimated")
    assert result["serving"]["break_even_requests"] is None
    assert result["serving"]["break_even_note"].startswith("never")


# --------------------------------------------------------------------------- counting model folders


def tiny_llama(path, tied: bool, vocab: int = 61):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=tied)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("method", ["auto", "config", "headers"])
def test_non_embedding_count_of_a_tiny_llama_matches_a_direct_count(tmp_path, tied, method):
    model = tiny_llama(tmp_path, tied)
    vocab, width = model.config.vocab_size, model.config.hidden_size
    named = dict(model.named_parameters())  # a tied head appears once, as model.embed_tokens.weight
    assert ("lm_head.weight" in named) is not tied
    body = sum(p.numel() for name, p in named.items() if "embed_tokens" not in name)
    expected = body + (vocab * width if tied else 0)  # the tied head is still a d x V matmul
    counted = count_parameters(tmp_path, method=method)
    assert counted["non_embedding"] == expected
    assert counted["embedding"] == vocab * width
    assert counted["lm_head"] == vocab * width and counted["lm_head_tied"] is tied
    assert counted["stored"] == sum(p.numel() for p in named.values())
    assert counted["weights_params"] == counted["stored"] and counted["notes"] == []
    # the folder path through the CLI gives the same N, and the FLOPs use it
    result = estimate(teacher_dir=tmp_path, student_params=1e6, tokens=1e9)
    assert result["flops"]["teacher_forward"] == 1e9 * 2 * expected


def test_a_tied_head_stored_twice_is_counted_once(tmp_path):
    from safetensors.torch import load_file, save_file

    model = tiny_llama(tmp_path, tied=True)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    expected = count_parameters(tmp_path, method="config")["non_embedding"]
    counted = count_parameters(tmp_path)
    assert counted["non_embedding"] == expected == sum(p.numel() for p in model.parameters())
    assert "counted once" in counted["notes"][0]


def test_gpt2_position_table_is_an_embedding_too(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path)
    lookups = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    for method in ("config", "headers"):
        counted = count_parameters(tmp_path, method=method)
        assert counted["embedding"] == lookups, method
        assert counted["non_embedding"] == total - lookups + model.transformer.wte.weight.numel(), method


def test_a_base_checkpoint_under_a_head_config_is_counted_without_the_head(tmp_path):
    """The sentence-transformers layout: MPNetModel weights (with a pooler) under an MPNetForMaskedLM config.

    The checkpoint holds no head, so none is counted; every lookup table (word, position, relative
    attention bias) is left out. On the real all-mpnet-base-v2 this gives 85.65M (METHODS.md).
    """
    import json as json_module

    import torch
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=20, architectures=["MPNetForMaskedLM"])
    model = MPNetModel(config)
    model.save_pretrained(tmp_path)
    saved = json_module.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json_module.dumps({**saved, "architectures": ["MPNetForMaskedLM"]}))
    lookups = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    total = sum(p.numel() for p in model.parameters())
    counted = count_parameters(tmp_path)
    assert counted["method"] == "config+safetensors-headers" and counted["architecture"] == "MPNetForMaskedLM"
    assert counted["non_embedding"] == total - lookups and counted["embedding"] == lookups
    assert counted["lm_head"] == 0 and counted["lm_head_tied"] is False
    assert "counted without the head" in counted["notes"][0]
    # the architecture alone would add the MLM head (transform layers and the tied decoder)
    assert count_parameters(tmp_path, method="config")["non_embedding"] > total - lookups + 40 * 16


def test_cli_reads_folders(tmp_path, capsys):
    tiny_llama(tmp_path / "t", tied=False)
    tiny_llama(tmp_path / "s", tied=True, vocab=61)
    code, out, err = run_cli(capsys, "--teacher", str(tmp_path / "t"), "--student", str(tmp_path / "s"),
                             "--tokens", "1e6")
    assert code == 0, err
    assert "LM head" in out and "tied to the embedding, counted" in out and "LlamaForCausalLM" in out


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "-inf", "abc", "1e400"])
@pytest.mark.parametrize("option", ["--teacher-params", "--tokens", "--pretrain-tokens", "--teacher-ms-per-request"])
def test_bad_numbers_are_one_line_exit_2(capsys, option, value):
    args = {"--teacher-params": "70e9", "--student-params": "8e9", "--tokens": "20e9", "--pretrain-tokens": "2e12"}
    args[option] = value
    code, out, err = run_cli(capsys, *[f"{key}={number}" for key, number in args.items()])  # "=": -inf is a value
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and option in err


def test_bad_folders_and_missing_sizes_are_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = [
        (["--teacher", str(tmp_path / "missing"), "--student-params", "8e9", "--tokens", "1e9"], "does not exist"),
        (["--teacher", str(tmp_path / "empty"), "--student-params", "8e9", "--tokens", "1e9"], "no config.json"),
        (["--student-params", "8e9", "--tokens", "1e9"], "exactly one of --teacher-params"),
        (["--teacher-params", "1e9", "--teacher", str(tmp_path), "--student-params", "8e9", "--tokens", "1e9"],
         "exactly one of --teacher-params"),
        (["--teacher-params", "1e9", "--student-params", "8e9"], "--tokens"),
        (["--teacher-params", "1e9", "--student-params", "8e9", "--tokens", "1e9", "--devices", "1.5"], "whole"),
        (["--teacher-params", "1e9", "--student-params", "8e9", "--tokens", "1e9", "--capture-rows-per-s", "3"],
         "--tokens-per-row"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "", argv
        assert len(err.strip().splitlines()) == 1 and message in err, (argv, err)
    with pytest.raises(InputError, match="no config.json"):
        count_parameters(tmp_path / "empty")


def test_registration_and_number_budgets_stay_light():
    """`distillab --help` imports every command module: budget's must not pull in numpy or torch."""
    import subprocess
    import sys

    code = ("import sys, distillab.budget_command, distillab.budget as b; "
            "b.estimate(teacher_params=7e10, student_params=8e9, tokens=2e10); "
            "print(sorted({'numpy', 'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
