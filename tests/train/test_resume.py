"""A run killed with SIGKILL resumes from its last checkpoint and ends bit-identical on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from distillab.io import load_predictions
from distillab.train.trainer import train_arm

from train_helpers import banking, banking_cache, bow_config  # noqa: F401 (fixtures)

HERE = Path(__file__).parent
SETTINGS = dict(max_steps=30, checkpoint_every=5)

# The child trains one arm; KILL_AT (optional) makes it SIGKILL itself at a chosen point by
# wrapping a function from the outside, so the library itself carries no test hooks.
CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {here!r})
    from train_helpers import banking_slice, bow_config
    import distillab.train.trainer as trainer
    from distillab.train.arms import Arm

    where, count = (os.environ.get("KILL_AT") or ":0").split(":")
    calls = {{"n": 0}}
    def wrap(owner, name):
        original = getattr(owner, name)
        def killing(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == int(count):
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        setattr(owner, name, killing)
    if where == "step":          # in the middle of an optimizer step, between checkpoints
        wrap(Arm, "loss_of")
    elif where == "checkpoint":  # while a checkpoint is being written (after the rng file, before the model)
        import safetensors.torch
        wrap(safetensors.torch, "save_file")
    trainer.train_arm(banking_slice(), "kd", bow_config(**{settings!r}), sys.argv[1], cache=sys.argv[2])
""")


def run_child(out: Path, cache: Path, kill_at: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KILL_AT": kill_at or ""}
    script = CHILD.format(here=str(HERE), settings=SETTINGS)
    return subprocess.run([sys.executable, "-c", script, str(out), str(cache)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_sigkill_twice_then_resume_is_identical(banking, banking_cache, tmp_path):
    reference = tmp_path / "reference"
    train_arm(banking, "kd", bow_config(**SETTINGS), reference, cache=banking_cache)

    resumed = tmp_path / "resumed"
    arm_dir = resumed / "kd_T4_a0.7"
    # 1st kill: inside the 3rd checkpoint (step 15), after its rng file and before its weights;
    # 2nd kill: resumed from step 10, in the middle of step 19 (the step-15 checkpoint is complete).
    for kill_at, newest in (("checkpoint:5", "step-00000010"), ("step:10", "step-00000015")):
        killed = run_child(resumed, banking_cache.path, kill_at)
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert not (arm_dir / "train_log.json").exists()
        complete = sorted(p.name for p in (arm_dir / "checkpoints").glob("step-*"))
        assert complete == [newest]

    done = run_child(resumed, banking_cache.path, None)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stderr and "step 15 of 30" in done.stderr

    want = load_file(reference / "kd_T4_a0.7" / "model" / "model.safetensors")
    got = load_file(arm_dir / "model" / "model.safetensors")
    assert want.keys() == got.keys()
    for name in want:
        assert np.array_equal(want[name], got[name]), name
    a = load_predictions(reference / "kd_T4_a0.7" / "predictions" / "test.npz")
    b = load_predictions(arm_dir / "predictions" / "test.npz")
    assert np.array_equal(a.logits, b.logits)
    loss_a = json.loads((reference / "kd_T4_a0.7" / "train_log.json").read_text())["loss"]
    loss_b = json.loads((arm_dir / "train_log.json").read_text())["loss"]
    assert loss_a == loss_b


def test_a_moved_teacher_cache_is_the_same_cache_but_another_fingerprint_is_not():
    from distillab.train.trainer import _checkpoint_key

    here = {"arm": "kd", "tool_version": "0.1.0", "teacher_cache": {"path": "/a/cache", "fingerprint_sha256": "f1"}}
    moved = {"arm": "kd", "tool_version": "0.2.0", "teacher_cache": {"path": "/b/cache", "fingerprint_sha256": "f1"}}
    assert _checkpoint_key(here) == _checkpoint_key(moved)
    other = {"arm": "kd", "teacher_cache": {"path": "/a/cache", "fingerprint_sha256": "f2"}}
    assert _checkpoint_key(here) != _checkpoint_key(other)
