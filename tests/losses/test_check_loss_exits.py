"""Issue 9, silent #5: `check-loss` exit 0 means "matches", so a loss that exits, crashes or returns
nothing must never get it; non-modules are one line, exit 2."""

from __future__ import annotations

import textwrap

import pytest

from distillab import cli
from distillab.errors import InputError
from distillab.losses import check

BODIES = {
    "sys_exit_0": "import sys\n    sys.exit(0)",
    "sys_exit_none": "raise SystemExit",
    "os_exit_0": "import os\n    os._exit(0)",
    "killed": "import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)",
    "returns_none": "return None",
    "returns_string": "return 'ok'",
    "returns_rows": "return (s - t).pow(2).sum(-1)",  # a [batch] tensor, not the mean
    "exits_on_later_batch": "import os\n    if s.shape[0] == 16:\n        os._exit(0)\n    "
                            "from distillab.losses import kd_loss\n    return kd_loss(s, t, y, T, alpha)",
}
MESSAGES = {
    "sys_exit_0": "called sys.exit(0) instead of returning",
    "sys_exit_none": "called sys.exit(None) instead of returning",
    "os_exit_0": "the process exited with code 0 before the function returned",
    "killed": "the process was killed by signal SIGKILL before the function returned",
    "returns_none": "returned NoneType; expected a scalar tensor",
    "returns_string": "returned str; expected a scalar tensor",
    "returns_rows": "returned Tensor of shape (8,)",
    "exits_on_later_batch": "the process exited with code 0 before the function returned",
}


@pytest.mark.parametrize("kind", list(BODIES))
def test_a_loss_that_exits_crashes_or_returns_no_scalar_fails_with_one_line(kind, tmp_path, capsys):
    path = tmp_path / "user_loss.py"
    path.write_text(f"def kd(s, t, y, T, alpha):\n    {BODIES[kind]}\n")
    code = cli.main(["check-loss", f"{path}:kd"])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert MESSAGES[kind] in captured.err and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and "OK: matches" not in captured.out


@pytest.mark.parametrize("statement", ["import sys; sys.exit(0)", "import os; os._exit(0)"])
def test_a_module_that_exits_while_imported_fails(statement, tmp_path, capsys):
    (tmp_path / "exiting_module.py").write_text(f"{statement}\ndef kd(s, t, y, T, alpha):\n    return s.sum()\n")
    code = cli.main(["check-loss", f"{tmp_path / 'exiting_module.py'}:kd"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "sys.exit(0)" in err or "exited with code 0" in err


def test_exit_inside_backward_fails(tmp_path, capsys):
    (tmp_path / "custom.py").write_text(textwrap.dedent("""
        import sys, torch

        class Exit(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.sum()

            @staticmethod
            def backward(ctx, g):
                sys.exit(0)

        def kd(s, t, y, T, alpha):
            return Exit.apply(s)
    """))
    assert cli.main(["check-loss", f"{tmp_path / 'custom.py'}:kd"]) == 2
    assert "backward through the value kd returned called sys.exit(0)" in capsys.readouterr().err


def test_the_python_api_turns_sys_exit_into_an_input_error():
    def loss(s, t, y, T, alpha):
        raise SystemExit(0)

    with pytest.raises(InputError, match=r"called sys.exit\(0\) instead of returning"):
        check.check_loss(loss)


@pytest.mark.parametrize("target, message", [
    ("/etc/passwd:x", "/etc/passwd is not a Python file"),
    ("/etc:x", "no such file: /etc"),
    ("nosuchmodule_q7:f", "cannot import module 'nosuchmodule_q7'"),
    ("mod:", "expected MODULE:FUNCTION"),
    (":f", "expected MODULE:FUNCTION"),
    ("..:f", "importing '..' raised TypeError"),
])
def test_non_modules_are_one_line_exit_2(target, message, capsys):
    assert cli.main(["check-loss", target]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_correct_loss_still_matches_through_the_child_process(tmp_path, monkeypatch, capsys):
    (tmp_path / "good_loss.py").write_text(
        "from distillab.losses import kd_loss\n"
        "def kd(s, t, y, T, alpha):\n    print('hello from the loss')\n    return kd_loss(s, t, y, T, alpha)\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check-loss", "good_loss:kd"]) == 0
    assert "OK: matches the reference" in capsys.readouterr().out
