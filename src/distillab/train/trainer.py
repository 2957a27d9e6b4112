"""Train students arm by arm: one Accelerate loop, read top to bottom. Only the loss differs per arm.

What every arm of one experiment shares (the controlled comparison):
- the student's initial weights (the global RNG is seeded with ``seed`` right before building it);
- the data order: epoch ``e`` visits the training rows in ``default_rng([seed, e]).permutation(n)``,
  a generator of its own that no arm, process count or accumulation setting can disturb;
- every hyper-parameter in :class:`~distillab.train.config.TrainConfig`.

``batch_size`` is the number of rows per optimizer step over *all* processes; each step's rows are
cut into ``gradient_accumulation_steps`` micro-batches and each micro-batch into one slice per
process. Each slice's mean loss is weighted by its share of the step's rows, so the gradient is the
step's batch mean whatever the process count (DDP averages over processes).

Checkpoints (``checkpoint_every``) hold the weights, optimizer and scheduler states, every
process's torch RNG state, the step and the loss curve; the data position follows from the step.
A rerun of the same command resumes from the newest complete checkpoint and, on CPU, ends with
the same weights and predictions as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from distillab import __version__
from distillab.errors import ConfigError, FingerprintMismatch, InputError
from distillab.io import atomic_path, check_output_dir, read_json, sha256_file, write_json_atomic
from distillab.objectives.base import Dims, Step
from distillab.train.arms import Arm, check_arms, parse_arm
from distillab.train.config import TrainConfig
from distillab.train.fake_quant import add_fake_quant, remove_fake_quant
from distillab.train.lazy_adam import LazyAdam
from distillab.train.mean_teacher import MovingAverage
from distillab.train.live_teacher import collect_qkv
from distillab.train.predict import model_logits, predict_logits, serving_cost, write_split_predictions
from distillab.train.students import count_parameters, load_student, weights_bytes, sized_student

CHECKPOINTS = "checkpoints"
# The trainable parts an arm's objectives own (e.g. FitNets projections): kept beside the student, not in it.
EXTRAS_FILE = "objective_extras.safetensors"
EMA_DIR = "ema"  # the moving average an ema_kd arm distils from: model/ and predictions/, audited as NAME-ema
PEER_DIR = "peer"  # a dml arm's second student: model/ and predictions/, audited as NAME-peer
ONLINE_DIR = "online"  # an online_kd arm's larger teacher: model/ and predictions/, audited as NAME-online


@dataclass
class Prepared:
    """What the arms of one experiment share, computed once: student, featurised splits, teacher rows."""

    dataset: object
    config: TrainConfig
    student: object
    features: dict  # split name -> the student's features for that split
    teacher: dict | None  # numpy arrays aligned with the training split's rows (logits/top-k, features)
    cache_info: dict | None
    content_sha256: str  # the dataset's, recorded in every arm's resolved config
    dims: Dims  # the student's, the cached features' and the live teacher's sizes, which objectives resolve against
    live: object = None  # a LiveTeacher when an arm reads token-level teacher outputs
    live_features: list | None = None  # the live teacher's tokens of the training rows
    # featurizer -> the splits featurised for another student (an online teacher): once for all the arms that read them
    other_features: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- public API


def prepare(dataset, config: TrainConfig, cache=None, arms: list[Arm] = ()) -> Prepared:
    """Check everything that can be wrong before any training, then featurise once for all arms.

    Raises one :class:`ConfigError`/:class:`InputError`/:class:`FingerprintMismatch` naming the
    problem: invalid settings, unknown splits, a cache made from other data or labels, a KD arm
    without a cache, a student with the wrong number of labels.
    """
    config.validate()
    check_arms(list(arms), cache)
    missing = [s for s in (config.train_split, *config.eval_splits) if s not in dataset.splits]
    if missing:
        raise ConfigError(
            f"dataset {dataset.name!r} has no split(s) {', '.join(missing)} (it has {', '.join(dataset.splits)})"
        )
    cache = open_cache(cache)
    teacher = cache_info = None
    train = dataset.splits[config.train_split]
    if cache is not None:
        if cache.num_classes != len(dataset.classes):
            raise FingerprintMismatch(
                f"teacher cache {cache.path} has {cache.num_classes} classes but dataset {dataset.name!r} "
                f"has {len(dataset.classes)}; build the cache from this dataset"
            )
        cache.check_matches(dataset)
        if cache.kind == "dense":
            teacher = {"logits": cache.logits(train.ids)}
        else:
            topk_ids, topk_logprobs, tail_logmass = cache.topk(train.ids)
            teacher = {"topk_ids": topk_ids, "topk_logprobs": topk_logprobs, "tail_logmass": tail_logmass}
        cache_info = {"path": str(cache.path), "kind": cache.kind, "temperature": cache.temperature,
                      "fingerprint_sha256": _sha256_json(cache.manifest["fingerprint"])}
    student = load_student(config, len(dataset.classes), classes=list(dataset.classes))
    live = live_features = None
    if config.live_teacher and any(term.objective.reads().live for arm in arms for term in arm.terms):
        from distillab.pypi_models import resolve_model_ref
        from distillab.train.live_teacher import LiveTeacher

        live = LiveTeacher(resolve_model_ref(config.live_teacher), config.max_length, config.live_teacher_precision)
    dims = objective_dims(student, cache, live, config.seed)
    _check_objectives(arms, dims)
    _check_warmups(arms, config, len(train))
    for name in sorted({f for arm in arms for term in arm.terms for f in term.objective.features(dims)}):
        teacher[name] = cache.features(name, train.ids)
    features = {}
    for split in dict.fromkeys((config.train_split, *config.eval_splits)):
        features[split] = student.featurize(dataset.splits[split].texts)
    if live is not None:
        from distillab.train.live_teacher import check_aligned

        live_features = live.featurize(train.texts)
        check_aligned(student.tokenizer, [row["input_ids"] for row in features[config.train_split]], live.tokenizer,
                      [row["input_ids"] for row in live_features], train.ids)
    return Prepared(dataset, config, student, features, teacher, cache_info, dataset.content_hash(), dims,
                    live, live_features)


def objective_dims(student, cache, live=None, seed: int = 0) -> Dims:
    """The sizes objectives resolve against: the student's layers, the cache's pooled features, the live teacher.

    ``seed`` is the run's: a student of another size (an online teacher) is built under it.
    """
    layers, width = student.hidden_dims()
    pooled = {}
    for name in getattr(cache, "feature_names", ()) if cache is not None else ():
        kind, _, layer = name.partition(".")
        if kind == "pooled" and layer.isdigit():
            pooled[int(layer)] = cache.feature_width(name)
    return Dims(student_layers=layers, student_width=width,
                teacher_layers=(cache.teacher_layers or 0) if pooled else 0, teacher_pooled=pooled,
                student_tokens=student.kind == "hf",
                student_heads=student.config.num_attention_heads if student.kind == "hf" else 0,
                live_layers=live.layers if live else 0, live_width=live.width if live else 0,
                live_heads=live.heads if live else 0,
                student_ngrams=student.hasher.ngrams if student.kind == "bow" else 0,
                student_buckets=student.hasher.buckets if student.kind == "bow" else 0,
                student_base_layers=student.config.num_hidden_layers if student.kind == "hf" else 0,
                new_student=student.new_model, new_sized_student=functools.partial(sized_student, student, seed))


def _check_objectives(arms: list[Arm], dims: Dims) -> None:
    """Layers outside the model, features missing from the cache: one error for all arms, before training."""
    problems = [f"arm {arm.name!r}: {problem}" for arm in arms for term in arm.terms
                for problem in term.objective.resolve(dims)]
    if problems:
        raise ConfigError("; ".join(problems))


def _check_warmups(arms: list[Arm], config: TrainConfig, rows: int) -> None:
    """An objective's warm-up (online_kd's CE-only steps) must end before training does, or it never distils."""
    total = _total_steps(config, rows)
    for arm in arms:
        for term in arm.terms:
            warmup = term.objective.values.get("warmup_steps", 0)
            if warmup >= total:
                raise ConfigError(f"arm {arm.name!r}: {term.objective.name}: warmup_steps={warmup} is not below the "
                                  f"run's {total} optimizer steps, so the student would never distil; lower it")


def train_arm(dataset, arm: Arm | str, config: TrainConfig, out_dir, cache=None) -> dict:
    """Train one arm into ``out_dir/<arm.name>/`` and return its summary (see :func:`train_arms`).

    ``arm`` is an :class:`Arm` or its text form (``"kd:T=4,alpha=0.7"``); ``cache`` a
    :class:`~distillab.teacher.cache.TeacherCache` or its directory. Writes ``model/``,
    ``predictions/<split>.npz`` + ``.json``, ``train_log.json`` and ``resolved_config.json``.
    """
    arm = parse_arm(arm) if isinstance(arm, str) else arm
    return train_arms(dataset, [arm], config, out_dir, cache=cache)[arm.name]


def train_arms(dataset, arms: list[Arm | str], config: TrainConfig, out_dir, cache=None) -> dict[str, dict]:
    """Train several arms under one controlled comparison; returns ``{arm name: summary}``.

    Everything is validated before the first arm starts; features and teacher rows are computed
    once and shared. An arm whose outputs already exist with the same settings is skipped.
    """
    arms = [parse_arm(a) if isinstance(a, str) else a for a in arms]
    check_output_dir(out_dir)  # a file in the way or a read-only folder, before any work
    prepared = prepare(dataset, config, cache, arms)
    accelerator = make_accelerator(prepared.config)
    for arm in arms:  # outputs or checkpoints of other settings: refuse before any arm trains
        _check_existing(Path(out_dir) / arm.name, _resolved_config(prepared, arm, accelerator))
    with _torch_threads(prepared.student.num_threads):
        return {arm.name: _run_arm(prepared, arm, Path(out_dir) / arm.name, accelerator) for arm in arms}


def make_accelerator(config: TrainConfig):
    """The run's Accelerator. ``cpu=True`` without CUDA lets ``torchrun`` start gloo processes on a CPU box."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision=resolve_precision(config.precision), cpu=not torch.cuda.is_available())


def resolve_precision(precision: str) -> str:
    """Accelerate's name for the autocast dtype: 'no' (fp32), 'bf16' or 'fp16'."""
    if precision == "auto":
        if not torch.cuda.is_available():
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The training rows' order in ``epoch``: the same for every arm of an experiment."""
    return np.random.default_rng([seed, epoch]).permutation(n)


# --------------------------------------------------------------------------- one arm


def _resolved_config(prepared: Prepared, arm: Arm, accelerator) -> dict:
    """Everything that determines an arm's result, as written to ``resolved_config.json``."""
    config, dataset, student = prepared.config, prepared.dataset, prepared.student
    n = len(dataset.splits[config.train_split])
    return {
        **arm.training_settings(config),
        "learning_rate": config.resolved_learning_rate(student.kind),
        "arm": arm.name,
        "recipe": arm.recipe(),
        "student_name": student.name,
        "dataset": {"name": dataset.name, "content_sha256": prepared.content_sha256,
                    "num_classes": len(dataset.classes), "train_rows": n},
        "teacher_cache": prepared.cache_info if arm.needs_teacher else None,
        "steps_per_epoch": math.ceil(n / config.batch_size),
        "total_steps": _total_steps(config, n),
        "precision_resolved": accelerator.mixed_precision,
        "tool_version": __version__,
    }


def _total_steps(config: TrainConfig, rows: int) -> int:
    """The optimizer steps an arm trains on ``rows`` training rows: ``max_steps``, else ``epochs`` of batches."""
    return config.max_steps or math.ceil(config.epochs * math.ceil(rows / config.batch_size))


def _check_existing(arm_dir: Path, resolved: dict) -> bool:
    """True if ``arm_dir`` already holds this arm's finished outputs; an error if made differently.

    Finished outputs or a checkpoint made with other settings stop the run before any training,
    rather than being silently overwritten or resumed into a different experiment.
    """
    checkpoint = _latest_checkpoint(arm_dir)
    if checkpoint is not None:
        saved = _checkpoint_state(checkpoint)["config"]
        if saved != json.loads(json.dumps(_checkpoint_key(resolved))):
            raise ConfigError(
                f"checkpoint {checkpoint} was made with other settings than this run; "
                "rerun with the original settings, or delete its checkpoints folder to start over"
            )
    if not (arm_dir / "train_log.json").exists():
        return False
    previous = read_json(arm_dir / "resolved_config.json") if (arm_dir / "resolved_config.json").exists() else {}
    before, now = _checkpoint_key(previous), json.loads(json.dumps(_checkpoint_key(resolved)))
    if before != now:
        raise ConfigError(
            f"{arm_dir} already holds arm {resolved['arm']!r} trained with other settings "
            f"(differing: {_differences(before, now)}); use another --out or delete that folder"
        )
    return True


def _run_arm(prepared: Prepared, arm: Arm, arm_dir: Path, accelerator) -> dict:
    config, dataset, student = prepared.config, prepared.dataset, prepared.student
    train = dataset.splits[config.train_split]
    n = len(train)
    resolved = _resolved_config(prepared, arm, accelerator)
    steps_per_epoch, total_steps, lr = resolved["steps_per_epoch"], resolved["total_steps"], resolved["learning_rate"]
    if _check_existing(arm_dir, resolved):
        _say(accelerator, f"{arm.name}: already trained in {arm_dir} (same settings); skipped")
        return read_json(arm_dir / "train_log.json")["summary"]

    # -- setup: the same initial weights for every arm
    torch.manual_seed(config.seed)
    model = student.new_model()
    bounds = [term.objective.bind(prepared.dims) for term in arm.terms]  # after the model: its init is unchanged
    taps = _Taps.of(arm, bounds)
    if taps.student_attentions:  # the fused attention kernels return no maps
        model.set_attn_implementation("eager")
    if prepared.live is not None and taps.live:
        prepared.live.model.to(accelerator.device)
    extras = nn.ModuleList(b.extras for b in bounds if b.extras is not None)
    # A model among the extras with inputs of its own (an online teacher) featurises the splits itself.
    online = next((b for b in bounds if b.student is not None), None)
    online_features = _features_for(prepared, online.student) if online is not None else None
    ema_decay = _ema_decay(arm)
    # The mean teacher starts as the student's initial weights; it is never optimised, only averaged.
    ema = MovingAverage(model, ema_decay, accelerator.device) if ema_decay else None
    if arm.fake_quant:  # after the mean teacher's copy (a float average); its parameters stay the same objects
        add_fake_quant(model, arm.fake_quant)
    # Extras (projections, a peer) are optimised with the student; a sparse embedding among them gets lazy Adam too.
    sparse, dense = _split_parameters(nn.ModuleList([model, extras]))
    optimizers = [torch.optim.AdamW(_decay_groups(model, dense, config.weight_decay), lr=lr)]
    if sparse:  # Adam on just the embedding rows a batch touches (bow student)
        optimizers.append(LazyAdam(sparse, lr=lr))
    warmup = math.ceil(config.warmup_ratio * total_steps)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, _linear_warmup_decay(warmup, total_steps)) for opt in optimizers]
    model, *optimizers = accelerator.prepare(model, *optimizers)
    # Not wrapped in DDP: objectives call their extras directly, so their gradients are averaged by hand.
    extras.to(accelerator.device)

    labels = torch.from_numpy(train.labels)
    teacher = None
    if arm.needs_teacher:
        wanted = _teacher_keys(arm, prepared)
        teacher = {k: torch.from_numpy(v) for k, v in prepared.teacher.items() if k in wanted}
    features = prepared.features[config.train_split]

    state = {"step": 0, "losses": [], "epoch_order_sha256": [], "train_seconds": 0.0}
    checkpoint = _latest_checkpoint(arm_dir)
    if checkpoint is not None:
        state = _load_checkpoint(checkpoint, accelerator, model, optimizers, schedulers, extras, ema)
        _say(accelerator, f"{arm.name}: resuming from {checkpoint} (step {state['step']} of {total_steps})")

    # -- loop
    world, rank = accelerator.num_processes, accelerator.process_index
    progress = tqdm(total=total_steps, initial=state["step"], desc=arm.name, unit="step", dynamic_ncols=True,
                    disable=not accelerator.is_main_process, file=sys.stderr)
    model.train()
    started = time.perf_counter() - state["train_seconds"]
    order, order_epoch = None, -1
    try:  # the bar is closed before any error is printed, so the error has a line of its own
        for step in range(state["step"], total_steps):
            epoch, position = divmod(step, steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(config.seed, epoch, n), epoch
                if len(state["epoch_order_sha256"]) == epoch:
                    state["epoch_order_sha256"].append(hashlib.sha256(order.tobytes()).hexdigest())
            rows = order[position * config.batch_size:(position + 1) * config.batch_size]
            micro_batches = [m for m in np.array_split(rows, config.gradient_accumulation_steps) if len(m)]
            step_loss = torch.zeros((), device=accelerator.device)
            for i, micro in enumerate(micro_batches):
                local = micro[rank::world]
                # A process with no rows still joins the gradient all-reduce, with a zero weight.
                weight = world * len(local) / len(rows)
                if len(local) == 0:
                    local = micro[:1]
                batch = {k: v.to(accelerator.device) for k, v in student.collate(features, local).items()}
                local_t = torch.from_numpy(local)
                targets = (None if teacher is None
                           else {k: v[local_t].to(accelerator.device) for k, v in teacher.items()})
                sync = i == len(micro_batches) - 1
                live = None
                if taps.live:  # the frozen teacher on the same rows, before the student's graph is built
                    live_batch = {k: v.to(accelerator.device)
                                  for k, v in prepared.live.collate(prepared.live_features, local).items()}
                    live = prepared.live.outputs(live_batch, taps.live_hidden, taps.live_attentions, taps.live_qkv)
                online_inputs = None
                if online is not None:
                    online_inputs = {k: v.to(accelerator.device) for k, v in
                                     online.student.collate(online_features[config.train_split], local).items()}
                ema_logits = None
                if ema is not None:
                    with torch.no_grad(), accelerator.autocast():
                        ema_logits = model_logits(ema.shadow(**batch)).float()
                with (contextlib.nullcontext() if sync else accelerator.no_sync(model)):
                    with accelerator.autocast(), collect_qkv(accelerator.unwrap_model(model), taps.student_qkv) as qkv:
                        output = model(**batch, **taps.student_kwargs) if taps.student_kwargs else model(**batch)
                    # Losses are computed in float32 whatever the autocast dtype (softmax of bf16 logits is coarse).
                    step_inputs = Step(
                        logits=model_logits(output).float(), labels=labels[local_t].to(accelerator.device),
                        teacher=targets, hidden=getattr(output, "hidden_states", None), mask=batch.get("attention_mask"),
                        attentions={s: output.attentions[s] for s in taps.student_attentions} or None,
                        qkv=qkv or None, live=live, ema_logits=ema_logits, inputs=batch, step=step,
                        online_inputs=online_inputs)
                    loss = arm.loss_of(step_inputs, bounds)
                    accelerator.backward(loss * weight)
                step_loss += loss.detach() * weight / world
            loss_value = float(accelerator.reduce(step_loss, reduction="sum"))  # the same on every process
            _average_extras_gradients(accelerator, extras)
            if not math.isfinite(loss_value):  # before its gradients reach the weights
                _diverged(arm, step + 1, total_steps, f"the training loss is {loss_value}")
            if config.max_grad_norm is not None and dense:  # the sparse embedding (bow) is not clipped; extras are
                accelerator.clip_grad_norm_(dense, config.max_grad_norm)
            if ema is not None:
                ema.before_step()
            _step_optimizers(accelerator, optimizers)
            for opt, sched in zip(optimizers, schedulers):
                sched.step()
                opt.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update()
            state["losses"].append(loss_value)
            state["step"] = step + 1
            progress.update(1)
            if step % 10 == 0 or step + 1 == total_steps:
                progress.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch)
            if config.checkpoint_every and state["step"] % config.checkpoint_every == 0 and state["step"] < total_steps:
                state["train_seconds"] = time.perf_counter() - started
                _check_finite_weights(accelerator, model, arm, state["step"], total_steps)
                with _writing(arm_dir, arm_dir / CHECKPOINTS):
                    _save_checkpoint(arm_dir, state, resolved, accelerator, model, optimizers, schedulers, extras,
                                     ema.averaged() if ema is not None else None)
    finally:
        progress.close()
    train_seconds = time.perf_counter() - started

    # -- outputs: every split predicted before anything is written, so a diverged model leaves nothing
    _check_finite_weights(accelerator, model, arm, total_steps, total_steps)  # the last update had no loss after it
    # Without Accelerate's autocast wrapper round the forward: predictions are float32 logits.
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    if arm.fake_quant:  # the float weights it trained are the student; the quantize stage converts them
        remove_fake_quant(unwrapped)
    state_dict = accelerator.get_state_dict(model)  # on every process: FSDP/DeepSpeed gather their shards here
    all_logits = {}
    for split_name in config.eval_splits:
        logits = predict_logits(accelerator, unwrapped, student, prepared.features[split_name], config.eval_batch_size)
        if not np.isfinite(logits).all():
            _diverged(arm, total_steps, total_steps, f"its logits on split {split_name!r} are NaN or infinite")
        all_logits[split_name] = logits
    if accelerator.is_main_process:
        with _writing(arm_dir, arm_dir / "model"):
            student.save(unwrapped, arm_dir / "model", state_dict)
        kept = nn.ModuleList(b.extras for t, b in zip(arm.terms, bounds)  # a peer or online teacher: as a student
                             if b.extras is not None and not (t.objective.reads().peer or b.student is not None))
        if len(kept):
            with _writing(arm_dir, arm_dir / EXTRAS_FILE):
                _save_extras(arm_dir / EXTRAS_FILE, kept, arm)
    if ema is not None:
        _write_side_student(prepared, arm, arm_dir, accelerator, ema.averaged(), EMA_DIR, total_steps,
                            {"loss": "ema", "of": arm.name, "decay": float(ema_decay)})
    for term, bound in zip(arm.terms, bounds):
        if term.objective.reads().peer:
            _write_side_student(prepared, arm, arm_dir, accelerator, bound.extras.eval(), PEER_DIR, total_steps,
                                {"loss": "dml_peer", "of": arm.name, **term.objective.recipe()})
        if bound.student is not None:
            _write_side_student(prepared, arm, arm_dir, accelerator, bound.extras.eval(), ONLINE_DIR, total_steps,
                                {"loss": "online_teacher", "of": arm.name, **term.objective.recipe()}, bound.student,
                                online_features)
    params = count_parameters(unwrapped)
    split_scores = {}
    for split_name, logits in all_logits.items():
        split = dataset.splits[split_name]
        if accelerator.is_main_process:
            meta = {
                "model": student.name,
                "arm": arm.name,
                "recipe": arm.recipe(),
                "params": params,
                "model_bytes": weights_bytes(arm_dir / "model"),
                # Timings vary between identical runs: kept under "measurements", never mixed with results.
                "measurements": {"serving": serving_cost(unwrapped, student, split.texts, accelerator.device,
                                                         accelerator.autocast)},
                "temperature": None,
                "classes": list(dataset.classes),
                "dataset": dataset.name,
                "split": split_name,
                "seed": config.seed,
            }
            if arm.needs_teacher:  # which cache taught it: the run's teacher, or a born-again/chain stage's
                meta["teacher_cache"] = prepared.cache_info["fingerprint_sha256"]
            with _writing(arm_dir, arm_dir / "predictions" / f"{split_name}.npz"):
                write_split_predictions(arm_dir / "predictions" / f"{split_name}.npz", logits, split, meta)
        split_scores[split_name] = _scores(logits, split.labels, len(dataset.classes))

    summary = {
        "arm": arm.name,
        "recipe": arm.recipe(),
        "steps": total_steps,
        # Timings differ between identical runs: named measurements, never compared byte for byte.
        "measurements": {"train_seconds": train_seconds, "steps_per_second": total_steps / max(train_seconds, 1e-9)},
        "final_loss": state["losses"][-1] if state["losses"] else None,
        "eval": split_scores,
        "params": params,
        "world_size": accelerator.num_processes,
    }
    if accelerator.is_main_process:
        with _writing(arm_dir, arm_dir / "resolved_config.json"):
            write_json_atomic(arm_dir / "resolved_config.json", resolved)
        with _writing(arm_dir, arm_dir / "train_log.json"):  # last: its presence marks the arm as done
            write_json_atomic(arm_dir / "train_log.json", {
                "summary": summary,
                "loss": state["losses"],
                "epoch_order_sha256": state["epoch_order_sha256"],
                "resolved_config_sha256": _sha256_json(resolved),
            })
        shutil.rmtree(arm_dir / CHECKPOINTS, ignore_errors=True)
    accelerator.wait_for_everyone()
    first = next(iter(split_scores.items()), None)
    scores = f", {first[0]} accuracy {first[1]['accuracy']:.3f} macro-F1 {first[1]['macro_f1']:.3f}" if first else ""
    _say(accelerator, f"{arm.name}: {total_steps} steps in {train_seconds:.1f}s "
                      f"({total_steps / max(train_seconds, 1e-9):.1f} steps/s), final loss {summary['final_loss']:.4f}{scores}")
    return summary


# --------------------------------------------------------------------------- pieces


def open_cache(cache):
    """A :class:`TeacherCache` from a cache or its directory (None stays None)."""
    if cache is None or hasattr(cache, "check_matches"):
        return cache
    from distillab.teacher.cache import TeacherCache

    return TeacherCache.open(cache)


@contextlib.contextmanager
def _torch_threads(count: int | None):
    """Run with ``count`` intra-op CPU threads (None: unchanged), restoring the caller's setting."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# What an arm writes after training, train_log.json (written last) aside.
_OUTPUTS = ("model", EXTRAS_FILE, EMA_DIR, PEER_DIR, ONLINE_DIR, "predictions", "resolved_config.json")


@contextlib.contextmanager
def _writing(arm_dir: Path, target: Path):
    """A failed write (disk full, file-size limit, read-only) is one line naming ``target``, and leaves no outputs.

    This attempt's earlier outputs are removed: without train_log.json they were never a finished
    arm. Checkpoints stay, so a rerun after freeing space resumes.
    """
    from safetensors import SafetensorError  # safetensors reports I/O errors as its own type

    try:
        yield
    except (OSError, SafetensorError, InputError) as exc:  # io's atomic writers report the disk as InputError
        for name in _OUTPUTS:
            path = arm_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if isinstance(exc, InputError):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
        raise InputError(f"{target}: cannot write ({reason}); nothing was kept for this arm - free space or "
                         "choose another --out, then rerun") from None


@dataclass
class _Taps:
    """Which outputs an arm's objectives read from the student's forward pass and the live teacher's."""

    student_hidden: bool
    student_attentions: set[int]
    student_qkv: set[int]
    live_hidden: bool
    live_attentions: set[int]
    live_qkv: set[int]

    @classmethod
    def of(cls, arm: Arm, bounds: list) -> "_Taps":
        reads = [(term.objective.reads(), bound.pairs) for term, bound in zip(arm.terms, bounds)]
        return cls(
            student_hidden=any(r.student_hidden for r, _ in reads),
            student_attentions={s for r, pairs in reads if r.student_attentions for s, _ in pairs},
            student_qkv={s for r, pairs in reads if r.student_qkv for s, _ in pairs},
            live_hidden=any(r.live_hidden for r, _ in reads),
            live_attentions={t for r, pairs in reads if r.live_attentions for _, t in pairs},
            live_qkv={t for r, pairs in reads if r.live_qkv for _, t in pairs},
        )

    @property
    def live(self) -> bool:
        return self.live_hidden or bool(self.live_attentions) or bool(self.live_qkv)

    @property
    def student_kwargs(self) -> dict:
        kwargs = {"output_hidden_states": True} if self.student_hidden else {}
        return {**kwargs, "output_attentions": True} if self.student_attentions else kwargs


def _average_extras_gradients(accelerator, extras: nn.Module) -> None:
    """Average the extras' gradients over processes (what DDP does for the student), before the optimizer step."""
    if accelerator.num_processes == 1:
        return
    for param in extras.parameters():
        if param.grad is None:  # this process's micro-batch did not reach it: it contributes zeros
            param.grad = torch.zeros_like(param)
        sparse = param.grad.is_sparse
        mean = accelerator.reduce(param.grad.to_dense() if sparse else param.grad, reduction="mean")
        param.grad = mean.to_sparse(1) if sparse else mean  # lazy Adam reads row-sparse gradients


def _ema_decay(arm: Arm) -> float | None:
    """The decay of the arm's mean teacher (its ``ema_kd`` objective), None without one."""
    return next((t.objective.values["decay"] for t in arm.terms if t.objective.reads().ema_logits), None)


def _write_side_student(prepared: Prepared, arm: Arm, arm_dir: Path, accelerator, model: nn.Module, folder: str,
                        total_steps: int, recipe: dict, student=None, features: dict | None = None) -> None:
    """A second model an arm trained (its moving average, its peer, its online teacher) as a student of its own:
    ``folder/model`` and ``folder/predictions``, audited as arm ``NAME-folder``. ``student`` and ``features``:
    its featuriser and featurised splits when they are not the student's."""
    config, dataset = prepared.config, prepared.dataset
    student, features = student or prepared.student, features or prepared.features
    logits = {}
    for split_name in config.eval_splits:
        logits[split_name] = predict_logits(accelerator, model, student, features[split_name], config.eval_batch_size)
        if not np.isfinite(logits[split_name]).all():
            _diverged(arm, total_steps, total_steps, f"its {folder} model's logits on split {split_name!r} are NaN or infinite")
    if not accelerator.is_main_process:
        return
    with _writing(arm_dir, arm_dir / folder):
        student.save(model, arm_dir / folder / "model")
        for split_name, split_logits in logits.items():
            split = dataset.splits[split_name]
            meta = {"model": student.name, "arm": f"{arm.name}-{folder}", "recipe": recipe,
                    "params": count_parameters(model), "model_bytes": weights_bytes(arm_dir / folder / "model"),
                    "measurements": {"serving": serving_cost(model, student, split.texts, accelerator.device,
                                                             accelerator.autocast)},
                    "temperature": None, "classes": list(dataset.classes), "dataset": dataset.name,
                    "split": split_name, "seed": config.seed}
            write_split_predictions(arm_dir / folder / "predictions" / f"{split_name}.npz", split_logits, split, meta)


def _features_for(prepared: Prepared, student) -> dict:
    """The training and evaluation splits featurised for another student (the student's own when it reads the same);
    each featurizer's once per run, however many arms read it."""
    if student.featurizer == prepared.student.featurizer:
        return prepared.features
    if student.featurizer not in prepared.other_features:
        config, splits = prepared.config, prepared.dataset.splits
        prepared.other_features[student.featurizer] = {
            split: student.featurize(splits[split].texts) for split in dict.fromkeys((config.train_split,
                                                                                       *config.eval_splits))}
    return prepared.other_features[student.featurizer]


def _teacher_keys(arm: Arm, prepared: Prepared) -> set[str]:
    """The teacher rows an arm's objectives read: the cache's logit arrays and/or named features."""
    keys = {f for term in arm.terms for f in term.objective.features(prepared.dims)}
    if any(term.objective.reads().teacher_logits for term in arm.terms):
        keys |= {"logits", "topk_ids", "topk_logprobs", "tail_logmass"}
    return keys


def _save_extras(path: Path, extras: nn.Module, arm: Arm) -> None:
    """The objectives' trained extras, with the arm's recipe so a reader knows what they belong to."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in extras.state_dict().items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        # One metadata key: safetensors writes several in no fixed order, and reruns must be byte-identical.
        save_file(state, str(tmp), metadata={"distillab": json.dumps({"arm": arm.name, "recipe": arm.recipe()},
                                                                     sort_keys=True)})


def _diverged(arm: Arm, step: int, total_steps: int, what: str) -> None:
    raise ConfigError(
        f"arm {arm.name!r} diverged: {what} at step {step} of {total_steps}; no model was written for it "
        "(lower the learning rate, check the teacher cache, or train in fp32)"
    )


def _check_finite_weights(accelerator, model: nn.Module, arm: Arm, step: int, total_steps: int) -> None:
    """Refuse to save a model or checkpoint with a NaN or inf weight (every process agrees: shards differ)."""
    bad = sum(int(not bool(torch.isfinite(p).all())) for p in model.parameters())
    if float(accelerator.reduce(torch.tensor(float(bad), device=accelerator.device), reduction="sum")):
        _diverged(arm, step, total_steps, "the weights are NaN or infinite")


def _step_optimizers(accelerator, optimizers: list) -> None:
    """Step every optimizer; under fp16 loss scaling, unscale each once and update the scale once a step.

    Accelerate's optimizer wrapper runs ``scaler.step`` *and* ``scaler.update`` for each
    optimizer. With two (the bow student's AdamW + LazyAdam) the first update forgets that
    clipping already unscaled the second, which ``scaler.step`` then unscales again (gradients
    65,536x too small), and the scale is updated twice a step. This is PyTorch's recipe for
    several optimizers instead: ``scaler.step`` each (it unscales only the ones not yet
    unscaled), then one ``scaler.update``.
    """
    scaler = accelerator.scaler
    if scaler is None:
        for opt in optimizers:
            opt.step()
        return
    for opt in optimizers:
        scaler.step(opt.optimizer)  # the wrapped torch optimizer: no per-optimizer update
    scaler.update()


def _split_parameters(model: nn.Module) -> tuple[list, list]:
    """(parameters with sparse gradients, the rest): sparse ones need LazyAdam, not AdamW."""
    sparse = [m.weight for m in model.modules()
              if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse and m.weight.requires_grad]
    dense = [p for p in model.parameters() if p.requires_grad and not any(p is s for s in sparse)]
    return sparse, dense


def _decay_groups(model: nn.Module, params: list, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only; biases and norm scales (1-D) are left alone, as is standard."""
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def _linear_warmup_decay(warmup: int, total: int):
    """LR factor: 0 → 1 over ``warmup`` steps, then linearly down to 0 at ``total`` (HF's linear schedule)."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _scores(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    from distillab.audit.metrics import accuracy, macro_f1

    preds = logits.argmax(axis=1)
    return {"accuracy": accuracy(labels, preds), "macro_f1": macro_f1(labels, preds, num_classes), "n": int(len(labels))}


def _sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _say(accelerator, line: str) -> None:
    if accelerator.is_main_process:
        tqdm.write(line, file=sys.stderr)


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_key(resolved: dict) -> dict:
    """The settings a checkpoint must share with the run resuming it (not the process count).

    The teacher cache counts by its fingerprint, not by where it lies: a moved checkout or an
    installed package reads the same cache from another path.
    """
    key = {k: v for k, v in resolved.items() if k not in ("precision_resolved", "tool_version")}
    if isinstance(key.get("teacher_cache"), dict):
        key["teacher_cache"] = {k: v for k, v in key["teacher_cache"].items() if k != "path"}
    return key


def _differences(before: dict, now: dict) -> str:
    keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return ", ".join(keys) or "none"


def _latest_checkpoint(arm_dir: Path) -> Path | None:
    """The newest complete checkpoint (a directory appears only by atomic rename, so it is whole)."""
    root = arm_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and (p / "state.json").exists())
    return done[-1] if done else None


def _save_checkpoint(arm_dir: Path, state: dict, resolved: dict, accelerator, model, optimizers, schedulers,
                     extras: nn.Module, shadow: nn.Module | None = None) -> None:
    from safetensors.torch import save_file

    root = arm_dir / CHECKPOINTS
    final = root / f"step-{state['step']:08d}"
    tmp = root / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state(accelerator.device)
    save_file(rng, str(tmp / f"rng-{accelerator.process_index}.safetensors"))
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        save_file({k: v.detach().cpu().contiguous() for k, v in unwrapped.state_dict().items()},
                  str(tmp / "model.safetensors"))
        if len(extras):
            save_file({k: v.detach().cpu().contiguous() for k, v in extras.state_dict().items()},
                      str(tmp / "extras.safetensors"))
        if shadow is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in shadow.state_dict().items()}, str(tmp / "ema.safetensors"))
        for i, (opt, sched) in enumerate(zip(optimizers, schedulers)):
            torch.save(opt.state_dict(), tmp / f"optimizer-{i}.pt")
            write_json_atomic(tmp / f"scheduler-{i}.json", sched.state_dict())
    accelerator.wait_for_everyone()  # every process's rng file is written: checksum them all
    if accelerator.is_main_process:
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        write_json_atomic(tmp / "state.json",
                          {**state, "scaler": scaler, "config": _checkpoint_key(resolved), "files": files})
        tmp.rename(final)  # atomic: a checkpoint directory either is complete or does not exist
        for old in root.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_checkpoint(path: Path, accelerator, model, optimizers, schedulers, extras: nn.Module,
                     ema: MovingAverage | None = None) -> dict:
    """Restore a checkpoint; one line naming it and how to start over if any part is damaged."""
    try:
        return _restore(path, accelerator, model, optimizers, schedulers, extras, ema)
    except DamagedCheckpoint:
        raise
    except Exception as exc:  # any failure to read it back (truncated file, bad pickle, wrong keys) is damage
        raise _damaged(path, exc if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}") from None


class DamagedCheckpoint(InputError):
    """A checkpoint that cannot be read back as written; the message says how to start over."""


def _damaged(checkpoint: Path, reason) -> DamagedCheckpoint:
    reason = " ".join(str(reason).split())
    return DamagedCheckpoint(f"checkpoint {checkpoint} is damaged or incomplete ({reason}); delete "
                             f"{checkpoint.parent} to train this arm from the start")


def _checkpoint_state(checkpoint: Path) -> dict:
    """A checkpoint's state.json, checked to be the object the trainer wrote."""
    try:
        saved = read_json(checkpoint / "state.json")
    except InputError as exc:  # not JSON
        raise _damaged(checkpoint, exc) from None
    missing = [k for k in ("step", "losses", "epoch_order_sha256", "train_seconds", "config", "files")
               if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise _damaged(checkpoint, f"state.json lacks {', '.join(missing)}")
    return saved


def _restore(path: Path, accelerator, model, optimizers, schedulers, extras: nn.Module,
             ema: MovingAverage | None = None) -> dict:
    from safetensors.torch import load_file

    saved = _checkpoint_state(path)  # its settings were compared by _check_existing
    for name, digest in saved["files"].items():  # bit flips and truncation, before anything is loaded
        if sha256_file(path / name) != digest:
            raise _damaged(path, f"{name} does not match its checksum")
    accelerator.unwrap_model(model).load_state_dict(load_file(path / "model.safetensors"))
    if len(extras):
        extras.load_state_dict(load_file(path / "extras.safetensors"))
    if ema is not None:
        ema.load(load_file(path / "ema.safetensors"), saved["step"])
    for i, (opt, sched) in enumerate(zip(optimizers, schedulers)):
        # weights_only: optimizer states are plain tensors and numbers; never unpickle objects.
        opt.load_state_dict(torch.load(path / f"optimizer-{i}.pt", map_location=accelerator.device, weights_only=True))
        sched.load_state_dict(read_json(path / f"scheduler-{i}.json"))
    if saved.get("scaler") is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(saved["scaler"])
    rng_file = path / f"rng-{accelerator.process_index}.safetensors"
    if not rng_file.exists():
        rng_file = path / "rng-0.safetensors"
    rng = load_file(rng_file)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"], accelerator.device)
    return {key: saved[key] for key in ("step", "losses", "epoch_order_sha256", "train_seconds")}
