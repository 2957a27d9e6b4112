"""A KD training step against a CE training step: same student, same batch, same optimizer. Goal ≤ 1.05×.

    python benchmarks/bench_kd_step.py                          # bow student (R52-sized) + MiniLM-L6 cut to 2 layers
    python benchmarks/bench_kd_step.py --students minilm        # the full 6-layer MiniLM
    python benchmarks/bench_kd_step.py --device cuda --precision bf16

What is timed: one optimizer step exactly as ``distillab.train.trainer`` runs it — collate the
batch, forward under autocast, the arm's loss (``Arm.compute_loss`` → ``distillab.losses``) in
float32, backward, gradient clipping, optimizer step(s), zero_grad. The teacher rows are already
in memory (the trainer reads the cache once per run). CE and KD steps alternate (ABBA) so that
machine noise hits both alike; the ratio is of the medians. Texts are real R52 documents.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from distillab.train.arms import parse_arm
from distillab.train.config import TrainConfig
from distillab.train.predict import model_logits
from distillab.train.students import load_student
from distillab.train.trainer import _decay_groups, _split_parameters
from distillab.train.lazy_adam import LazyAdam


def student_config(name: str) -> TrainConfig:
    if name == "bow":
        return TrainConfig(student="bow")
    from distillab.pypi_models import minilm_dir

    layers = {"minilm": None, "minilm2": "first:2"}[name]
    return TrainConfig(student=str(minilm_dir()), student_layers=layers, max_length=128)


def bench(name: str, texts: list[str], num_classes: int, batch_size: int, steps: int, device: str, precision: str):
    config = student_config(name)
    student = load_student(config, num_classes)
    threads = torch.get_num_threads()
    if student.num_threads is not None:  # as the trainer runs it
        torch.set_num_threads(student.num_threads)
    torch.manual_seed(0)
    model = student.new_model().to(device).train()
    sparse, dense = _split_parameters(model)
    optimizers = [torch.optim.AdamW(_decay_groups(model, dense, 0.01), lr=1e-5)]
    if sparse:
        optimizers.append(LazyAdam(sparse, lr=1e-5))
    features = student.featurize(texts[:batch_size])
    rows = np.arange(batch_size)
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, num_classes, batch_size)).to(device)
    teacher = {"logits": torch.from_numpy(rng.normal(size=(batch_size, num_classes)).astype(np.float32)).to(device)}
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def step(arm) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        batch = {k: v.to(device) for k, v in student.collate(features, rows).items()}
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            logits = model_logits(model(**batch))
        loss = arm.compute_loss(logits.float(), labels, teacher)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dense, 1.0)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    ce, kd = parse_arm("vanilla"), parse_arm("kd:T=4,alpha=0.7")
    for _ in range(3):  # warm-up both paths
        step(ce), step(kd)
    times = {"ce": [], "kd": []}
    for i in range(steps):
        # ABBA order: neither arm always runs right after the other (caches, CPU frequency).
        for key, arm in ((("ce", ce), ("kd", kd)) if i % 2 == 0 else (("kd", kd), ("ce", ce))):
            times[key].append(step(arm))
    torch.set_num_threads(threads)
    ce_ms, kd_ms = (1000 * statistics.median(times[k]) for k in ("ce", "kd"))
    print(f"{name:8s} batch {batch_size:3d} x {num_classes} classes on {device} ({precision}, "
          f"{student.num_threads or threads} CPU threads): "
          f"CE step {ce_ms:8.2f} ms, KD step {kd_ms:8.2f} ms, KD/CE = {kd_ms / ce_ms:.3f}x "
          f"(goal <= 1.05x)", flush=True)
    return kd_ms / ce_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", default="bow,minilm2", help="comma-separated: bow, minilm2, minilm")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=113, help="number of classes (course: 113)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per arm")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    args = parser.parse_args()

    from distillab.data import load_lab_dataset

    texts = load_lab_dataset("r52").splits["train"].texts
    for name in args.students.split(","):
        bench(name, texts, args.classes, args.batch_size, args.steps, args.device, args.precision)


if __name__ == "__main__":
    main()
