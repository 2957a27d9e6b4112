"""Students trained under a controlled comparison: same seed, data order and settings; only the loss differs.

Python API (what ``distillab train`` / ``distillab grid`` wrap)::

    from distillab.train import TrainConfig, train_arms, run_grid
    config = TrainConfig(student="bow", epochs=3, batch_size=64)
    train_arms(dataset, ["vanilla", "kd:T=4,alpha=0.7"], config, "runs/r52", cache="runs/cache")

Attributes are imported lazily so that ``import distillab.train`` (done by the CLI) stays free of torch.
"""

from __future__ import annotations

from distillab.lazy import lazy_exports

_LAZY = {
    "TrainConfig": "distillab.train.config",
    "Arm": "distillab.train.arms",
    "parse_arm": "distillab.train.arms",
    "make_arm": "distillab.train.arms",
    "train_arm": "distillab.train.trainer",
    "train_arms": "distillab.train.trainer",
    "prepare": "distillab.train.trainer",
    "run_grid": "distillab.train.grid",
    "grid_arms": "distillab.train.grid",
    "load_student": "distillab.train.students",
    "DistillationTrainer": "distillab.train.hf_trainer",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
