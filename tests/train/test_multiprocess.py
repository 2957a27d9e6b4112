"""Two CPU processes (torchrun, gloo DDP) give the one-process model and exactly n prediction rows.

Also for arms whose objectives train extras outside DDP (FitNets projections, a DML peer or an online teacher with a
sparse embedding, averaged by hand) and keep a moving average (EMA): every model they save matches the one-process run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from distillab.io import load_predictions
from distillab.train.trainer import train_arms

from train_helpers import banking, bow_config, write_cache  # noqa: F401 (fixtures)

HERE = Path(__file__).parent
# eval_batch_size 16 over 50 rows and 2 processes: Accelerate pads the last round with repeated
# rows, which must not reach the file.
SETTINGS = dict(max_steps=8, eval_batch_size=16)

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from train_helpers import banking_slice, bow_config
    from distillab.train.trainer import train_arms
    summary = train_arms(banking_slice(), {arms!r}, bow_config(**{settings!r}), sys.argv[1], cache=sys.argv[2])
    assert summary["vanilla"]["world_size"] == 2, summary
    import torch.distributed
    torch.distributed.destroy_process_group()  # as the CLI does: gloo threads alive at exit can abort the process
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# hidden_mse, not rkd/crd_lite: those compare rows within a micro-batch, and each process holds half of the step's.
ARMS = ["vanilla", "kd", "kd+hidden_mse:name=fitnet", "dml:name=mutual", "ema_kd:decay=0.5,name=ema",
        "online_kd:teacher_ngrams=3,name=online"]


def test_two_processes_match_one(banking, tmp_path):
    n = len(banking.splits["train"])
    features = {2: np.random.default_rng(1).normal(size=(n, 12)).astype(np.float32)}
    banking_cache = write_cache(banking, tmp_path / "cache", features=features, teacher_layers=2)
    single = tmp_path / "single"
    train_arms(banking, ARMS, bow_config(**SETTINGS), single, cache=banking_cache)

    double = tmp_path / "double"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=str(HERE), settings=SETTINGS, arms=ARMS))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(script), str(double), str(banking_cache.path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]

    test = banking.splits["test"]
    for arm in ("vanilla", "kd_T4_a0.7", "fitnet", "mutual", "mutual/peer", "ema", "ema/ema", "online", "online/online"):
        one = load_predictions(single / arm / "predictions" / "test.npz")
        two = load_predictions(double / arm / "predictions" / "test.npz")
        assert two.n == len(test) == 50
        assert np.array_equal(two.ids, test.ids) and np.array_equal(two.labels, test.labels)
        np.testing.assert_allclose(two.logits, one.logits, rtol=1e-4, atol=1e-5, err_msg=arm)
