"""Learning-rate (and momentum) policies, evaluated per batch.

- constant:   lr_t = lr
- time_decay: lr_t = lr / (1 + decay * t)         (the tutorial's / legacy Keras `decay`)
- onecycle:   Smith 2018 ("A disciplined approach to neural network hyper-parameters"),
              with cosine annealing as popularised by fastai: lr rises from lr/div_factor to
              lr over the first pct_start of the steps, then falls to
              lr/(div_factor*final_div_factor); momentum (adam: beta_1) moves the opposite
              way, high -> low -> high.
"""
from __future__ import annotations

import math


def _cos(start: float, end: float, frac: float) -> float:
    """Cosine interpolation from start (frac=0) to end (frac=1)."""
    return end + (start - end) * (1 + math.cos(math.pi * min(max(frac, 0.0), 1.0))) / 2


class Schedule:
    """lr(step) and momentum(step) for `total_steps` optimizer steps."""

    def __init__(self, scfg, total_steps: int, base_momentum: float | None):
        self.cfg = scfg
        self.total = max(int(total_steps), 1)
        self.base_momentum = base_momentum

    def lr(self, step: int) -> float:
        c = self.cfg
        if c.policy == "constant":
            return c.lr
        if c.policy == "time_decay":
            return c.lr / (1.0 + c.decay * step)
        start = c.lr / c.div_factor
        end = start / c.final_div_factor
        warm = max(int(round(self.total * c.pct_start)), 1)
        if step < warm:
            return _cos(start, c.lr, step / warm)
        return _cos(c.lr, end, (step - warm) / max(self.total - warm - 1, 1))

    def momentum(self, step: int) -> float | None:
        """The momentum/beta_1 for this step, or None to leave the optimizer's own value."""
        c = self.cfg
        if c.policy != "onecycle" or c.momentum_range is None or self.base_momentum is None:
            return None
        lo, hi = c.momentum_range
        warm = max(int(round(self.total * c.pct_start)), 1)
        if step < warm:
            return _cos(hi, lo, step / warm)
        return _cos(lo, hi, (step - warm) / max(self.total - warm - 1, 1))
