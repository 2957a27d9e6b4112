"""Issue 9: `train` fails with one line and keeps nothing wrong - a diverging run, a damaged checkpoint,
out-of-range flags, an --out that cannot be written, a full disk."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from distillab.cli import main
from distillab.errors import ConfigError, InputError
from distillab.train import trainer
from distillab.train.arms import Arm
from distillab.train.trainer import train_arm

from train_helpers import DATA_DIR, banking, bow_config  # noqa: F401 (fixture)

SMALL = ["--data", "banking77", "--data-dir", DATA_DIR, "--max-steps", "3", "--bow-buckets", "4096",
         "--bow-dim", "8", "--batch-size", "16"]


class Interrupted(Exception):
    pass


def _on_call(monkeypatch, owner, name, number, action):
    """Make ``owner.name``'s ``number``-th call do ``action(result)`` (a test hook from the outside)."""
    original, calls = getattr(owner, name), {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        result = original(*args, **kwargs)
        return action(result, *args) if calls["n"] == number else result

    monkeypatch.setattr(owner, name, wrapped)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.replace("\r", "\n").splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("distillab train: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- a diverging run


def test_a_nan_loss_stops_at_its_step_and_keeps_no_nan_model_or_checkpoint(banking, tmp_path, monkeypatch):
    _on_call(monkeypatch, Arm, "loss_of", 5, lambda loss, *_: loss * float("nan"))
    with pytest.raises(ConfigError, match=r"arm 'vanilla' diverged: the training loss is nan at step 5 of 6; "
                                          r"no model was written"):
        train_arm(banking, "vanilla", bow_config(max_steps=6, checkpoint_every=2), tmp_path)
    arm_dir = tmp_path / "vanilla"
    assert sorted(p.name for p in arm_dir.iterdir()) == ["checkpoints"]
    (kept,) = (arm_dir / "checkpoints").iterdir()  # the last one before the NaN, all finite
    assert kept.name == "step-00000004"
    assert all(np.isfinite(w).all() for w in load_file(kept / "model.safetensors").values())


def _poison_weights(result, accelerator, optimizers):
    param = optimizers[0].param_groups[0]["params"][0]
    param.data.fill_(float("inf"))
    return result


@pytest.mark.parametrize("hook, message", [
    ((trainer, "_step_optimizers", 3, _poison_weights), "the weights are NaN or infinite at step 3 of 3"),
    ((trainer, "predict_logits", 1, lambda logits, *_: logits * np.inf),
     "its logits on split 'test' are NaN or infinite at step 3 of 3"),
])
def test_a_model_that_diverged_on_its_last_step_is_not_written(banking, tmp_path, monkeypatch, hook, message):
    _on_call(monkeypatch, *hook)
    with pytest.raises(ConfigError, match=message):
        train_arm(banking, "vanilla", bow_config(max_steps=3), tmp_path)
    assert not (tmp_path / "vanilla" / "model").exists()
    assert not (tmp_path / "vanilla" / "predictions").exists()


def test_the_cli_names_the_arm_and_step_on_a_line_of_its_own(tmp_path, monkeypatch, capsys):
    _on_call(monkeypatch, Arm, "loss_of", 2, lambda loss, *_: loss * float("inf"))
    assert main(["train", *SMALL, "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "arm 'vanilla' diverged: the training loss is inf at step 2 of 3" in line
    assert not (tmp_path / "o" / "vanilla" / "model").exists()


# --------------------------------------------------------------------------- damaged checkpoints


def _interrupted_run(banking, out):
    """An arm stopped after its step-4 checkpoint, as a crash would leave it."""
    config = bow_config(max_steps=6, checkpoint_every=2)
    with pytest.MonkeyPatch.context() as patch:
        _on_call(patch, Arm, "loss_of", 5, lambda *_: (_ for _ in ()).throw(Interrupted()))
        with pytest.raises(Interrupted):
            train_arm(banking, "vanilla", config, out)
    return config, out / "vanilla" / "checkpoints" / "step-00000004"


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated model": ("model.safetensors", _truncate, "model.safetensors does not match its checksum"),
    "flipped optimizer byte": ("optimizer-1.pt", _flip_a_byte, "optimizer-1.pt does not match its checksum"),
    "missing scheduler": ("scheduler-0.json", lambda p: p.unlink(), "FileNotFoundError"),
    "state not JSON": ("state.json", lambda p: p.write_text("{"), "not valid JSON"),
    "state a list": ("state.json", lambda p: p.write_text("[]"), "state.json lacks step"),
    "no checksums": ("state.json", lambda p: p.write_text(json.dumps(
        {k: v for k, v in json.loads(p.read_text()).items() if k != "files"})), "state.json lacks files"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_one_line_naming_it_and_how_to_restart(banking, tmp_path, damage):
    config, checkpoint = _interrupted_run(banking, tmp_path)
    name, harm, reason = DAMAGE[damage]
    harm(checkpoint / name)
    with pytest.raises(InputError) as info:
        train_arm(banking, "vanilla", config, tmp_path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {checkpoint} is damaged or incomplete (")
    assert reason in message and message.endswith(f"delete {checkpoint.parent} to train this arm from the start")
    assert "\n" not in message
    assert not (tmp_path / "vanilla" / "model").exists()


def test_an_intact_checkpoint_still_resumes(banking, tmp_path):
    config, checkpoint = _interrupted_run(banking, tmp_path)
    assert json.loads((checkpoint / "state.json").read_text())["files"].keys() >= {"model.safetensors", "rng-0.safetensors"}
    summary = train_arm(banking, "vanilla", config, tmp_path)
    assert summary["steps"] == 6 and not (tmp_path / "vanilla" / "checkpoints").exists()


# --------------------------------------------------------------------------- flags and --out


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "inf"], "--epochs=inf: must be a finite number"),
    (["--epochs", "1e12"], "--epochs=1000000000000.0: must be > 0 and at most 10,000"),
    (["--batch-size", "0"], "--batch-size=0: must be in [1, 1,048,576]"),
    (["--batch-size", "1.5"], "--batch-size=1.5: must be an integer"),
    (["--learning-rate", "nan"], "--learning-rate=nan: must be a finite number or null"),
    (["--learning-rate", "inf"], "--learning-rate=inf: must be a finite number or null"),
    (["--learning-rate", "1e30"], "--learning-rate=1e+30: must be in (0, 10] or None"),
    (["--seed", "-1"], "--seed=-1: must be an integer in [0, 2**32)"),
    (["--seed", "1e20"], "--seed=100000000000000000000: must be an integer in [0, 2**32)"),
    (["--bow-buckets", "1e12"], "--bow-buckets=1000000000000: must be in [1, 16,777,216]"),
    (["--bow-dim", "65536", "--bow-buckets", "65536"], "--bow-dim=65536: bow_buckets x bow_dim must be at most"),
    (["--max-steps", "abc"], "--max-steps='abc': must be an integer or null"),
    (["--max-grad-norm=-inf"], "--max-grad-norm=-inf: must be a finite number or null"),
    (["--eval-batch-size", "2e9"], "--eval-batch-size=2000000000: must be in [1, 1,048,576]"),
])
def test_out_of_range_flags_are_one_line_naming_the_flag(tmp_path, capsys, argv, message):
    assert main(["train", *SMALL, "--out", str(tmp_path / "o"), *argv]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert message in line
    assert not (tmp_path / "o").exists()


def test_every_bad_flag_is_listed_on_the_one_line(tmp_path, capsys):
    assert main(["train", *SMALL, "--out", str(tmp_path / "o"), "--seed", "-1", "--epochs", "nan"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--seed=-1" in line and "--epochs=nan" in line


def test_an_out_that_is_a_file_or_under_one_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for out, message in ((blocker, "exists and is not a folder"), (blocker / "o", f"{blocker} is a file, not a folder")):
        assert main(["train", *SMALL, "--out", str(out)]) == 2
        assert message in _one_error_line(capsys.readouterr().err)
    assert blocker.read_text() == "x"


def test_an_out_that_cannot_be_written_is_one_line(tmp_path, capsys):
    assert main(["train", *SMALL, "--out", "/proc/distillab-test/o"]) == 2  # not writable, even by root
    assert "/proc/distillab-test/o" in _one_error_line(capsys.readouterr().err)


def _disk_full_in_savez(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _disk_full_in_safetensors(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize("owner, name, fake, target", [
    ("numpy", "savez", _disk_full_in_savez, "predictions/test.npz"),
    ("safetensors.torch", "save_file", _disk_full_in_safetensors, "model"),
])
def test_a_full_disk_names_the_file_and_leaves_no_partial_arm(tmp_path, capsys, monkeypatch, owner, name, fake, target):
    monkeypatch.setattr(f"{owner}.{name}", fake)
    assert main(["train", *SMALL, "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{tmp_path / 'o' / 'vanilla' / target}: cannot write (" in line and "No space left on device" in line
    assert sorted(p.name for p in (tmp_path / "o" / "vanilla").iterdir()) == []


def test_a_transformer_student_that_cannot_be_saved_leaves_no_temporary_folder(banking, tmp_path, monkeypatch):
    from train_helpers import make_tiny_bert

    from distillab.train.students import load_student

    student = load_student(bow_config(student=str(make_tiny_bert(banking, tmp_path / "bert"))), len(banking.classes))
    monkeypatch.setattr(student.tokenizer, "save_pretrained", _disk_full_in_savez)
    with pytest.raises(OSError, match="No space left"):
        student.save(student.new_model(), tmp_path / "out" / "model")
    assert list((tmp_path / "out").iterdir()) == []
