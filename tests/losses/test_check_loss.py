"""distillab check-loss: matches, bug identification, calling forms, CLI exit codes."""

import itertools
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F

from distillab import cli
from distillab.errors import InputError
from distillab.losses import check, kd

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "buggy_kd_loss.py"


def with_bugs(*bugs):
    def loss(student_logits, teacher_logits, labels, T, alpha):
        return check.buggy_kd_loss(student_logits, teacher_logits, labels, T, alpha, frozenset(bugs))

    return loss


def test_buggy_variant_without_bugs_is_the_reference_loss():
    for case in check.DEFAULT_CASES:
        s, t, y = check.make_batch(case)
        assert check.buggy_kd_loss(s, t, y, case.T, case.alpha).item() == pytest.approx(
            kd.kd_loss(s, t, y, case.T, case.alpha).item(), rel=1e-12
        )


def test_every_bug_combination_is_distinguishable_on_the_default_cases():
    """Otherwise the checker could name the wrong bug: all 64 variants differ in value on some case."""
    signatures = {}
    for size in range(len(check.BUGS) + 1):
        for bugs in itertools.combinations(check.BUGS, size):
            values = []
            for case in check.DEFAULT_CASES:
                s, t, y = check.make_batch(case)
                values.append(check.buggy_kd_loss(s, t, y, case.T, case.alpha, frozenset(bugs)).item())
            signatures[bugs] = np.array(values)
    for (a, va), (b, vb) in itertools.combinations(signatures.items(), 2):
        assert not check._close(va, vb), f"{a} and {b} give the same values"


@pytest.mark.parametrize("fn", [kd.kd_loss, kd.chunked_kd_loss, with_bugs()], ids=["kd_loss", "chunked", "variant"])
def test_correct_losses_match(fn):
    result = check.check_loss(fn)
    assert result.matches and result.bugs == []
    assert "OK: matches the reference" in check.format_report(result, "x:y")


@pytest.mark.parametrize("bug", list(check.BUGS))
def test_each_single_bug_is_named(bug):
    result = check.check_loss(with_bugs(bug))
    assert not result.matches
    assert result.bugs == [(bug,)]
    assert check.BUGS[bug] in check.format_report(result, "x:y")


def test_combination_of_two_bugs():
    result = check.check_loss(with_bugs("reversed_kl", "mean_reduction"))
    assert result.bugs == [("reversed_kl", "mean_reduction")]


def test_course_colleague_has_three_bugs(capsys):
    code = cli.main(["check-loss", f"{EXAMPLE}:distillation_loss"])
    out = capsys.readouterr().out
    assert code == 1
    assert "these 3 known bugs at once" in out
    for bug in ("probs_as_logprobs", "missing_T2", "swapped_alpha"):
        assert check.BUGS[bug] in out
    for bug in ("reversed_kl", "mean_reduction", "softened_ce"):
        assert check.BUGS[bug] not in out


def test_fixed_course_loss_passes_cli(capsys):
    assert cli.main(["check-loss", f"{EXAMPLE}:fixed_distillation_loss"]) == 0
    assert "matches the reference" in capsys.readouterr().out


# --------------------------------------------------------------------------- calling forms


def test_keyword_temperature_and_tuple_return():
    def loss(logits, teacher, labels, alpha=0.5, temperature=1.0):  # T and alpha in another order
        value = kd.kd_loss(logits, teacher, labels, T=temperature, alpha=alpha)
        return value, {"kd": value}

    result = check.check_loss(loss)
    assert result.matches and "temperature=T, alpha=alpha" in result.call


def test_dict_return():
    assert check.check_loss(lambda s, t, y, T, alpha: {"loss": kd.kd_loss(s, t, y, T, alpha)}).matches


def test_three_argument_function_with_fixed_values():
    def loss(s, t, y):
        return kd.kd_loss(s, t, y, T=2.0, alpha=0.5)

    assert check.check_loss(loss, fixed=(2.0, 0.5)).matches
    with pytest.raises(InputError, match="give --T and --alpha"):
        check.check_loss(loss)


def test_float32_only_loss_still_matches():
    def loss(s, t, y, T, alpha):
        return kd.kd_loss(s.float(), t.float(), y, T, alpha)

    assert check.check_loss(loss).matches


def test_value_without_gradient_is_a_mismatch():
    result = check.check_loss(lambda s, t, y, T, alpha: kd.kd_loss(s, t, y, T, alpha).item())
    assert not result.matches and result.values_match and not result.has_grad
    assert "no gradient" in check.format_report(result, "x:y")


def test_detached_teacher_branch_with_wrong_gradient():
    def loss(s, t, y, T, alpha):  # right value, but the KL term is detached
        soft = kd.kl_loss(s, t, T).detach()
        return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(s, y)

    result = check.check_loss(loss)
    assert not result.matches and result.values_match
    assert "gradients do not" in check.format_report(result, "x:y")


def test_unknown_bug_reports_constant_factor():
    result = check.check_loss(lambda s, t, y, T, alpha: 2.0 * kd.kd_loss(s, t, y, T, alpha))
    report = check.format_report(result, "x:y")
    assert not result.matches and result.bugs == []
    assert "constant 2x the reference" in report and "fits none of the known silent bugs" in report


# --------------------------------------------------------------------------- CLI errors


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")  # the very bug under test
def test_dotted_module_from_cwd(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_losses.py").write_text(
        textwrap.dedent(
            """
            import torch.nn.functional as F

            def kd(student_logits, teacher_logits, labels, T, alpha):
                kl = F.kl_div(F.log_softmax(student_logits / T, -1), F.softmax(teacher_logits / T, -1), reduction="mean")
                return alpha * T * T * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check-loss", "my_losses:kd"]) == 1
    assert check.BUGS["mean_reduction"] in capsys.readouterr().out


@pytest.mark.parametrize(
    "target,message",
    [
        ("no_colon", "expected MODULE:FUNCTION"),
        ("surely_not_a_module_xyz:f", "cannot import module 'surely_not_a_module_xyz'"),
        (f"{EXAMPLE}:nope", "has no attribute 'nope'"),
        ("missing/file.py:f", "no such file"),
        (f"{EXAMPLE}:F", "not a function"),
    ],
)
def test_bad_target_is_one_line_exit_2(target, message, capsys):
    assert cli.main(["check-loss", target]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_function_that_crashes_is_exit_2(tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text("def kd(s, t, y, T, alpha):\n    raise RuntimeError('boom')\n")
    assert cli.main(["check-loss", f"{path}:kd"]) == 2
    assert "raised RuntimeError: boom" in capsys.readouterr().err


def test_bad_fixed_values_exit_2(capsys):
    assert cli.main(["check-loss", f"{EXAMPLE}:distillation_loss", "--T", "0", "--alpha", "0.5"]) == 2
    assert "temperature T must be" in capsys.readouterr().err


def test_docs_show_the_current_output():
    """docs/check-loss.md quotes the checker on the colleague's loss; keep it true."""
    doc = (EXAMPLE.parents[1] / "docs" / "check-loss.md").read_text()
    quoted = doc.split("$ distillab check-loss examples/buggy_kd_loss.py:distillation_loss\n", 1)[1].split("\n$ echo", 1)[0]
    fn, _ = check.load_function(f"{EXAMPLE}:distillation_loss")
    result = check.check_loss(fn, "distillation_loss")
    assert check.format_report(result, "examples/buggy_kd_loss.py:distillation_loss") == quoted


def test_cli_import_stays_light():
    import subprocess
    import sys

    code = "import sys, distillab.losses, distillab.losses.command; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
