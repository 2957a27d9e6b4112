"""Kill a real teacher run with SIGKILL mid-way, run it again: the cache ends byte-identical to an unbroken run
(logits alone, and logits with pooled hidden-state features in the same shards)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from teacher_helpers import make_dataset

from distillab.teacher.cache import MANIFEST, PROGRESS, TeacherCache
from distillab.teacher.hf_classifier import cache_classifier

SETTINGS = dict(shard_rows=4, batch_size=2, max_length=16, temperature=1.3)
WITH_FEATURES = dict(SETTINGS, features="pooled.last,pooled.0")

# The child runs the same call; once 3 shards are on disk its forward pass hangs, so the kill
# always lands in the middle of computing a shard, however fast or slow this machine is.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from teacher_helpers import make_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from distillab.teacher.hf_classifier import cache_classifier
    out = Path({out!r})

    def stall(*args):
        if len(list(out.glob("shard-*.safetensors"))) >= 3:
            time.sleep(600)

    model = AutoModelForSequenceClassification.from_pretrained({model!r})
    model.register_forward_hook(stall)
    cache_classifier(model, make_dataset(), out, tokenizer=AutoTokenizer.from_pretrained({model!r}),
                     progress=False, **{settings!r})
""")


def shards_in(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("shard-*.safetensors")) if path.exists() else []


@pytest.mark.parametrize("settings", [SETTINGS, WITH_FEATURES], ids=["logits", "features"])
def test_sigkill_then_resume_is_byte_identical(tmp_path, tiny_bert, settings):
    out = tmp_path / "killed"
    script = CHILD.format(tests=str(Path(__file__).parent), model=tiny_bert, out=str(out), settings=settings)
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:  # the uninterrupted reference runs here while the child starts up
        reference = cache_classifier(tiny_bert, make_dataset(), tmp_path / "reference", progress=False, **settings)
        deadline = time.monotonic() + 180
        while len(shards_in(out)) < 3 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # let it get into the next shard's forward pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    written = shards_in(out)
    assert len(written) == 3 and (out / PROGRESS).exists() and not (out / MANIFEST).exists()

    # A temp file as a kill during a shard write would strand it; the resumed run must clear it.
    (out / ".shard-00010.safetensors.x1y2.tmp").write_bytes(b"half a shard")
    cache_classifier(tiny_bert, make_dataset(), out, progress=False, **settings)

    assert sorted(os.listdir(out)) == sorted(os.listdir(reference))
    for name in os.listdir(reference):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    cache = TeacherCache.open(out, verify=True)
    cache.check_matches(make_dataset())
    assert cache.feature_names == (("pooled.0", "pooled.2") if "features" in settings else ())
