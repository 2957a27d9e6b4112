"""Peak memory of sparse top-k and chunked KD against dense KD at an LLM-sized vocabulary.

    python benchmarks/bench_kd_memory.py                 # CPU, V=32,000, 512 rows
    python benchmarks/bench_kd_memory.py --device cuda   # GPU: the caching allocator's own peak

What is measured: the peak of bytes allocated while computing the loss and its gradient w.r.t.
the student logits (``torch.autograd.grad(loss, logits)``), the logits and teacher targets already
in memory — what a training step pays for its loss on top of the model. The [rows, V] gradient
itself is included, so no method can go below 1x the logits: that floor is printed too.

How, on CPU: PyTorch's profiler with ``profile_memory=True`` records every allocation and free of
the CPU allocator with the running "Total Allocated" of the bytes allocated since profiling began;
its maximum is the peak above the pre-existing tensors (inputs are allocated before, so not
counted). A known-size allocation is measured first as a check of the method. On CUDA:
``torch.cuda.max_memory_allocated`` minus the allocation before the step.
Ratios are against dense KD measured in the same process, with the same inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

from distillab.losses import chunked_kd_loss, kd_loss, topk_kd_loss, topk_targets

MB = 1024 * 1024


def peak_cpu(step) -> int:
    """Peak bytes allocated by ``step`` (and not freed before the peak), from the profiler's memory events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as handle:
            events = json.load(handle)["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    return max(totals, default=0)


def peak_cuda(step) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--rows", type=int, default=512, help="rows = batch x sequence positions")
    parser.add_argument("--k", type=int, default=64, help="teacher top-k kept in the sparse cache")
    parser.add_argument("--chunk-rows", type=int, default=16, help="working memory ~ 5 x chunk_rows x V floats")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    peak = peak_cuda if device.type == "cuda" else peak_cpu
    torch.manual_seed(0)

    if device.type == "cpu":
        check_bytes = 8 * MB
        measured = peak(lambda: torch.ones(check_bytes // 4))
        print(f"method check: a {check_bytes / MB:.2f} MiB tensor measures {measured / MB:.2f} MiB")

    n, v = args.rows, args.vocab
    logits = (1.5 * torch.randn(n, v, device=device)).requires_grad_(True)
    teacher = 2.0 * torch.randn(n, v, device=device)
    labels = torch.randint(0, v, (n,), device=device)
    ids, logprobs, tails = topk_targets(teacher, args.k)
    logprobs, tails = logprobs.half(), tails.half()  # as a top-k cache stores them

    methods = {
        "dense kd_loss": lambda s: kd_loss(s, teacher, labels),
        f"chunked_kd_loss (chunk_rows={args.chunk_rows})": lambda s: chunked_kd_loss(s, teacher, labels, chunk_rows=args.chunk_rows),
        f"topk_kd_loss k={args.k} renormalize": lambda s: topk_kd_loss(s, ids, logprobs, tails, labels),
        f"topk_kd_loss k={args.k} renormalize, chunked": lambda s: topk_kd_loss(
            s, ids, logprobs, tails, labels, chunk_rows=args.chunk_rows
        ),
        f"topk_kd_loss k={args.k} bucket, chunked": lambda s: topk_kd_loss(
            s, ids, logprobs, tails, labels, tail="bucket", chunk_rows=args.chunk_rows
        ),
    }
    teacher_inputs = {
        "dense": teacher.numel() * 2,  # a dense cache stores fp16 logits
        "topk": ids.numel() * 4 + logprobs.numel() * 2 + tails.numel() * 2,
    }
    logits_bytes = n * v * 4
    print(f"V={v:,} rows={n} k={args.k} device={device}; one [rows, V] fp32 tensor = {logits_bytes / MB:.1f} MiB")
    print(f"{'method':<44} {'loss peak MiB':>13} {'x logits':>8} {'vs dense':>8} {'+teacher in':>11} {'vs dense':>8}")
    dense_peak = dense_total = None
    for name, loss_fn in methods.items():
        torch.autograd.grad(loss_fn(logits), logits)  # warm-up: first-call allocations are not the method's
        bytes_peak = peak(lambda: torch.autograd.grad(loss_fn(logits), logits))
        teacher_bytes = teacher_inputs["topk" if name.startswith("topk") else "dense"]
        total = bytes_peak + teacher_bytes
        if dense_peak is None:
            dense_peak, dense_total = bytes_peak, total
        print(
            f"{name:<44} {bytes_peak / MB:>13.1f} {bytes_peak / logits_bytes:>8.2f} {bytes_peak / dense_peak:>8.3f}"
            f" {total / MB:>11.1f} {total / dense_total:>8.3f}"
        )
    print(f"floor: the [rows, V] gradient alone = 1.00x logits = {logits_bytes / dense_peak:.3f} of dense")
    print("loss peak: bytes allocated by loss forward + gradient w.r.t. the logits (the gradient included);")
    print("+teacher in: plus the teacher targets it reads (dense fp16 logits, or top-k ids int32 + fp16 log-probs + tail).")


if __name__ == "__main__":
    main()
