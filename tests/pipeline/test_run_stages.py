"""`distillab run` into an existing folder: stale stages re-run, locks, restarts, no partial output.

On the tiny experiment (tiny_experiment.py): each whole run takes seconds. Before these fixes a
changed teacher (another import file or temperature) was reused with every arm skipped, two runs
wrote one folder together, a stale ``in-progress.json`` blocked ``run`` for good, and a run that
failed left a half-made folder.
"""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tiny_experiment import tiny_config, write_config, write_teacher

from distillab.cli import main
from distillab.config import config_from_dict
from distillab.data import load_dataset
from distillab.errors import FingerprintMismatch
from distillab.io import read_json
from distillab.pipeline import LOCK, run_lock, teacher_stage


def mtimes(out, *paths):
    return {p: (out / p).stat().st_mtime_ns for p in paths}


def test_changed_import_file_rebuilds_the_cache_and_reruns_everything_downstream(tmp_path, capsys):
    config = write_config(tmp_path, tiny_config(tmp_path))
    out = tmp_path / "run"
    assert main(["run", str(config)]) == 0
    before_kd = read_json(out / "arms" / "kd" / "train_log.json")
    before = mtimes(out, "arms/vanilla/train_log.json", "arms/kd/train_log.json", "audit/audit.json",
                    "report/report.html", "teacher/predictions/test.npz")
    capsys.readouterr()

    write_teacher(tmp_path / "teacher.npz", tmp_path / "data", seed=1, margin=-3.0)  # same path, other logits
    assert main(["run", str(config)]) == 0
    err = capsys.readouterr().err
    assert "the teacher spec changed" in err and "kd: its inputs changed" in err
    after = mtimes(out, *before)
    # vanilla never reads the teacher: kept; everything that does, and everything after, is redone.
    assert after["arms/vanilla/train_log.json"] == before["arms/vanilla/train_log.json"]
    for path in ("arms/kd/train_log.json", "audit/audit.json", "report/report.html", "teacher/predictions/test.npz"):
        assert after[path] != before[path], path
    assert read_json(out / "arms" / "kd" / "train_log.json") != before_kd
    cached = np.load(tmp_path / "teacher.npz")["logits"]
    from distillab.teacher.cache import TeacherCache

    rebuilt = TeacherCache.open(out / "teacher-cache")
    ids = load_dataset({"path": str(tmp_path / "data")}).splits["test"].ids
    teacher_rows = np.load(out / "teacher" / "predictions" / "test.npz")["logits"]
    np.testing.assert_allclose(teacher_rows, rebuilt.logits(ids), rtol=1e-3)
    assert np.allclose(rebuilt.logits(ids), cached[-len(ids):], atol=1e-2)

    # A third run with nothing changed redoes nothing.
    stamps = mtimes(out, *before)
    assert main(["run", str(config)]) == 0
    assert mtimes(out, *before) == stamps


def test_changed_temperature_rebuilds_a_run_made_cache(tmp_path):
    values = tiny_config(tmp_path)
    dataset = load_dataset(values["data"])
    out = tmp_path / "run"
    first = teacher_stage(config_from_dict(values), dataset, out)
    assert first.temperature is None
    values["teacher"]["temperature"] = 2.0
    second = teacher_stage(config_from_dict(values), dataset, out)
    assert second.temperature == 2.0
    np.testing.assert_allclose(second.logits(), first.logits() / 2, rtol=2e-3)


def test_unstamped_cache_of_another_teacher_is_refused_naming_both(tmp_path):
    """A cache an older distillab left in the folder (no stamp) is checked against the config's teacher."""
    from distillab.teacher.importer import import_logits

    values = tiny_config(tmp_path)
    dataset = load_dataset(values["data"])
    other = write_teacher(tmp_path / "other.npz", tmp_path / "data", seed=5)
    import_logits(other, dataset, tmp_path / "run" / "teacher-cache", progress=False)
    with pytest.raises(FingerprintMismatch) as info:
        teacher_stage(config_from_dict(values), dataset, tmp_path / "run")
    message = str(info.value)
    assert "the cache holds imported other.npz (sha256" in message
    assert "the config's teacher is imported teacher.npz (sha256" in message and "--restart teacher" in message
    # --restart teacher rebuilds it from the configured file.
    cache = teacher_stage(config_from_dict(values), dataset, tmp_path / "run", rebuild=True)
    assert cache.manifest["fingerprint"]["teacher"]["source_file"] == "teacher.npz"


def test_existing_cache_with_another_temperature_is_refused(tmp_path):
    values = tiny_config(tmp_path)
    dataset = load_dataset(values["data"])
    teacher_stage(config_from_dict(values), dataset, tmp_path / "first")
    values["teacher"] = {"cache": str(tmp_path / "first" / "teacher-cache"), "temperature": 3.0}
    with pytest.raises(FingerprintMismatch, match="temperature: config 3.0, cache None"):
        teacher_stage(config_from_dict(values), dataset, tmp_path / "run")


def test_stale_in_progress_cache_does_not_block_run(tmp_path):
    """A failed import left in-progress.json (of another plan) behind: the next run starts the cache over."""
    values = tiny_config(tmp_path)
    dataset = load_dataset(values["data"])
    partial = tmp_path / "run" / "teacher-cache"
    partial.mkdir(parents=True)
    (partial / "in-progress.json").write_text('{"format": "stale plan"}')
    cache = teacher_stage(config_from_dict(values), dataset, tmp_path / "run")
    assert not (partial / "in-progress.json").exists() and len(cache) == 114


def test_partial_cache_of_another_plan_with_a_current_stamp_is_started_over(tmp_path):
    """Same config, but the partial cache's plan differs (a Hub model that moved on): no dead end."""
    from distillab.pipeline import _stamp, _teacher_inputs

    values = tiny_config(tmp_path)
    dataset = load_dataset(values["data"])
    config = config_from_dict(values)
    _stamp(tmp_path / "run" / "teacher", _teacher_inputs(config.teacher, dataset), complete=False,
           name="cache-stage.json")
    partial = tmp_path / "run" / "teacher-cache"
    partial.mkdir(parents=True)
    (partial / "in-progress.json").write_text('{"format": "another plan"}')
    assert len(teacher_stage(config, dataset, tmp_path / "run")) == 114


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from distillab.pipeline import run_lock
    with run_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(600)
""")


def test_second_run_into_the_same_folder_is_refused_naming_the_first(tmp_path, capsys):
    values = tiny_config(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", str(write_config(tmp_path, values))]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "another distillab run is writing this folder" in err
        assert f"pid {holder.pid} on host " in err and "started " in err
        assert sorted(os.listdir(out)) == [LOCK]  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel released the killed holder's lock: the stale file blocks no one.
    with run_lock(out):
        pass
    assert not (out / LOCK).exists()


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_output_that_is_or_lies_under_a_file_is_one_line(tmp_path, capsys, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "run"
    config = write_config(tmp_path, tiny_config(tmp_path))
    assert main(["run", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_is_one_line(tmp_path, capsys):
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o500)
    config = write_config(tmp_path, tiny_config(tmp_path))
    assert main(["run", str(config), "--out", str(parent / "run")]) == 2
    assert "permission denied" in capsys.readouterr().err


def test_failed_run_removes_the_folder_it_created(tmp_path, capsys):
    values = tiny_config(tmp_path, data={"path": str(tmp_path / "missing")})
    assert main(["run", str(write_config(tmp_path, values))]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

    values = tiny_config(tmp_path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, logits=np.zeros((3, 4), dtype=np.float32))  # 3 rows for 114: the import fails
    values["teacher"] = {"import_npz": str(bad)}
    assert main(["run", str(write_config(tmp_path, values))]) == 2
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_restart_redoes_the_stage_and_what_follows_and_stale_temp_files_go(tmp_path, capsys):
    config = write_config(tmp_path, tiny_config(tmp_path))
    out = tmp_path / "run"
    assert main(["run", str(config)]) == 0
    stranded = [out / "audit" / ".audit.json.x1y2.tmp", out / "arms" / "kd" / ".model.tmp"]
    stranded[0].write_text("{half")
    stranded[1].mkdir()
    before = mtimes(out, "arms/kd/train_log.json", "audit/audit.json", "report/report.html")
    assert main(["run", str(config), "--restart", "audit"]) == 0
    assert "removed 2 temporary file(s)" in capsys.readouterr().err
    after = mtimes(out, *before)
    assert after["arms/kd/train_log.json"] == before["arms/kd/train_log.json"]
    assert after["audit/audit.json"] != before["audit/audit.json"]
    assert after["report/report.html"] != before["report/report.html"]
    assert not any(path.exists() for path in stranded)


def test_restart_rejects_unknown_stage(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--restart", "nope"])
    assert info.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_file_size_limit_is_one_line_and_leaves_no_folder(tmp_path):
    """A full disk or file-size limit (here RLIMIT_FSIZE) is the user's environment: one line, exit 2."""
    import resource

    config = write_config(tmp_path, tiny_config(tmp_path))

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))

    done = subprocess.run([sys.executable, "-m", "distillab", "run", str(config)], capture_output=True, text=True,
                          preexec_fn=limit, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"error: {tmp_path / 'run'}/" in errors[0] and "File too large" in errors[0]
    assert not (tmp_path / "run").exists()


def test_disk_full_anywhere_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    """Writers that do not go through distillab.io (libraries saving files) raise a bare OSError."""
    import errno

    import distillab.pipeline

    def full(config, restart=None, verify_cache=True):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "model.safetensors"))

    monkeypatch.setattr(distillab.pipeline, "run", full)
    assert main(["run", str(write_config(tmp_path, tiny_config(tmp_path)))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'run' / 'model.safetensors'}: No space left on device" in err
