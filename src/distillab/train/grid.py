"""The T × α grid (course §8): one KD arm per (T, α), all from one teacher cache, plus the baseline.

Every grid arm shares the seed, data order and hyper-parameters with the others and with the
vanilla baseline, so the audit's grid table compares losses and nothing else.
"""

from __future__ import annotations

from distillab.errors import ConfigError
from distillab.train.arms import Arm, make_arm, parse_arm
from distillab.train.config import TrainConfig

# The course's grid: T_d ∈ {1, 4, 8} × α ∈ {0.7, 0.9}.
DEFAULT_T = (1.0, 4.0, 8.0)
DEFAULT_ALPHA = (0.7, 0.9)


def grid_arms(T: tuple[float, ...] = DEFAULT_T, alpha: tuple[float, ...] = DEFAULT_ALPHA,
              baseline: bool = True, extra: tuple[Arm | str, ...] = ()) -> list[Arm]:
    """``vanilla`` (if ``baseline``), then ``kd_T{T}_a{α}`` for every pair, then ``extra`` arms."""
    if not T or not alpha:
        raise ConfigError("the grid needs at least one T and one alpha")
    arms = [make_arm("vanilla")] if baseline else []
    arms += [make_arm("kd", T=float(t), alpha=float(a)) for t in T for a in alpha]
    arms += [parse_arm(a) if isinstance(a, str) else a for a in extra]
    return arms


def run_grid(dataset, config: TrainConfig, out_dir, cache, T: tuple[float, ...] = DEFAULT_T,
             alpha: tuple[float, ...] = DEFAULT_ALPHA, baseline: bool = True,
             extra: tuple[Arm | str, ...] = ()) -> dict[str, dict]:
    """Train the grid into ``out_dir/<arm>/``; returns ``{arm name: summary}`` (see :func:`train_arms`)."""
    from distillab.train.trainer import train_arms

    if cache is None:
        raise ConfigError("the T x alpha grid needs a teacher cache (--cache DIR)")
    return train_arms(dataset, grid_arms(T, alpha, baseline, extra), config, out_dir, cache=cache)


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """``'1,4,8'`` → (1.0, 4.0, 8.0), with an error naming the flag."""
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated numbers like 1,4,8, got {text!r}") from None
    if not values:
        raise ConfigError(f"{what}: no values in {text!r}")
    return values
