"""Data-parallel teacher run: ``accelerate launch`` with 2 CPU processes (gloo), each writing its own shards."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from teacher_helpers import make_dataset, write_dataset_folder

from distillab.cli import main
from distillab.teacher.cache import TeacherCache


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_process_accelerate_launch_matches_single_process(tmp_path, tiny_bert):
    spec = write_dataset_folder(tmp_path / "data", make_dataset())
    args = ["teacher", "--model", tiny_bert, "--data", str(spec), "--shard-rows", "5", "--batch-size", "4",
            "--max-length", "16", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "single")]) == 0

    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "distillab",
               *args, "--out", str(tmp_path / "parallel")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on rank 0 of 2" in result.stderr

    single = TeacherCache.open(tmp_path / "single")
    parallel = TeacherCache.open(tmp_path / "parallel", verify=True)
    parallel.check_matches(make_dataset())
    assert sorted(os.listdir(tmp_path / "parallel")) == sorted(os.listdir(tmp_path / "single"))
    assert parallel.ids.tolist() == single.ids.tolist() and len(parallel.manifest["shards"]) == 9
    np.testing.assert_array_equal(parallel.labels(), single.labels())
    np.testing.assert_allclose(parallel.logits(), single.logits(), rtol=1e-3, atol=1e-3)
    for key in ("fingerprint", "classes", "rows", "dtype", "temperature"):
        assert parallel.manifest[key] == single.manifest[key], key
