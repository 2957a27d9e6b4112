"""The mean teacher of an ``ema_kd`` arm: ``ema ← decay·ema + (1 − decay)·student`` after every optimizer step.

Averaging every weight every step is what the formula says, but the bag-of-n-grams student's table
(2^18 × 64 floats) dominated the step: 2.6x a KD step. Its rows are trained by lazy Adam, which
changes only the rows a step's gradient holds; a row the student leaves alone keeps its value ``w``,
and ``k`` averaging steps toward a constant have a closed form::

    ema_k = decay^k · ema_0 + (1 − decay^k) · w

So each sparse table's rows carry the step they were last brought up to date, and a row is caught
up (once, in closed form) when a batch reads it, before the optimizer changes it, and before the
average is read whole (predictions), saved or checkpointed. Dense parameters are averaged every
step as before. Up to float rounding this is the per-step average (tests: float64, random sparse
batches).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class MovingAverage:
    """An exponential moving average of ``model``, starting at its current weights; ``shadow`` is the averaged model.

    Rows of sparse embeddings (``sparse=True``: trained by lazy Adam, no weight decay) are averaged lazily.
    ``model`` keeps its parameter objects while it trains (moving it to a device does), so they are paired once.
    """

    def __init__(self, model: nn.Module, decay: float, device=None):
        self.decay = decay
        self.shadow = copy.deepcopy(model).requires_grad_(False).eval()
        if device is not None:
            self.shadow.to(device)
        self.steps = 0  # optimizer steps averaged in
        self._changing: dict[int, torch.Tensor] = {}  # id(shadow table) -> the rows this step's optimizer changes
        self._read: dict[int, list] = {}  # id(shadow table) -> (ids, their rows) of each batch read since the step
        self._pairs = list(zip(self.shadow.parameters(), model.parameters()))
        self._buffers = list(zip(self.shadow.buffers(), model.buffers()))
        self._source = {id(average): current for average, current in self._pairs}
        # id(shadow table) -> the step each of its rows was last brought to (0: the initial weights).
        self._last = {id(m.weight): torch.zeros(m.weight.shape[0], dtype=torch.int64, device=m.weight.device)
                      for m in self.shadow.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse}
        for module in self.shadow.modules():
            if id(getattr(module, "weight", None)) in self._last:
                # A batch the mean teacher reads: its rows first (the rest wait until they are read or saved).
                module.register_forward_pre_hook(self._reading)

    @torch.no_grad()
    def before_step(self) -> None:
        """Call when the gradients are final, before the optimizer step: bring the rows it will change up to date."""
        self._changing, read = {}, self._read
        self._read = {}
        for average, current in self._pairs:
            if id(average) not in self._last or current.grad is None:
                continue
            # The gradient's row ids as they come (repeats and all): coalescing would also sum their values.
            ids = current.grad._indices()[0]
            batches = read.get(id(average), [])
            if batches and torch.equal(ids, torch.cat([b for b, _ in batches])):
                # One process: the gradient's ids are those the shadow read (and caught up) this step.
                rows = [rows for _, rows in batches]
                self._changing[id(average)] = rows[0] if len(rows) == 1 else torch.unique(torch.cat(rows))
            else:
                self._changing[id(average)] = self._catch_up(average, ids)

    @torch.no_grad()
    def update(self) -> None:
        """After the optimizer step: average in this step (the rows it changed, and every dense parameter).

        A lazy table's other rows are now one more step behind; they catch up when read or saved.
        """
        for average, current in self._pairs:
            last = self._last.get(id(average))
            if last is None:
                average.lerp_(current.detach(), 1.0 - self.decay)
                continue
            rows = self._changing.pop(id(average), None)
            if rows is None:  # the step left this table alone: its rows fall one more step behind
                continue
            row_avg = average.index_select(0, rows).lerp_(current.detach().index_select(0, rows), 1.0 - self.decay)
            average.index_copy_(0, rows, row_avg)
            last[rows] = self.steps + 1
        for average, current in self._buffers:
            average.copy_(current)
        self.steps += 1

    @torch.no_grad()
    def averaged(self) -> nn.Module:
        """The shadow with every row up to date: before it is predicted with whole, saved or checkpointed."""
        for average, _ in self._pairs:
            if id(average) in self._last:
                self._catch_up(average, None)
        return self.shadow

    def load(self, state: dict, steps: int) -> None:
        """Restore a checkpointed (fully caught-up) shadow after ``steps`` optimizer steps."""
        self.shadow.load_state_dict(state)
        self.steps = steps
        for last in self._last.values():
            last.fill_(steps)

    def _reading(self, module: nn.Module, args: tuple) -> None:
        """Before the shadow reads a batch: its rows up to date (returns None: a value would replace the inputs)."""
        rows = self._catch_up(module.weight, args[0])
        self._read.setdefault(id(module.weight), []).append((args[0].flatten(), rows))

    @torch.no_grad()
    def _catch_up(self, average: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """Rows (None: all behind) of a lazy table brought from the step they were last averaged to ``steps``;
        returns them (sorted, once each)."""
        last = self._last[id(average)]
        rows = torch.nonzero(last != self.steps).flatten() if rows is None else torch.unique(rows)
        behind = (self.steps - last.index_select(0, rows)).to(average.dtype)
        keep = torch.pow(torch.tensor(self.decay, dtype=average.dtype, device=average.device), behind)
        current = self._source[id(average)].detach().index_select(0, rows)
        average.index_copy_(0, rows, average.index_select(0, rows).lerp_(current, (1.0 - keep)[:, None]))
        last[rows] = self.steps
        return rows
