"""LR range test (Smith 2015/2018; the fastai "lr_find"): `make lr-find`.

Trains a fresh copy of the configured model for `lr_find.num_batches` batches while the
learning rate grows exponentially from start_lr to end_lr, records the loss and stops early
once the (online, exponentially smoothed) loss explodes. The curve used for the plot and the
suggestion is smoothed forward and backward, so it does not lag behind the lr. Suggests a peak learning rate for 1cycle: one tenth of the
lr at the smoothed-loss minimum (Smith's rule of thumb, still on the descending part of the
curve); the lr of steepest descent is shown too. Writes `<build>/lr_find/`: lr_find.png,
lr_find.csv, lr_find.json.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from model import reports
from toolchain.artifacts import atomic_write_json, atomic_write_text, provenance, staged_dir


def sweep_lrs(start: float, end: float, n: int) -> np.ndarray:
    return start * (end / start) ** (np.arange(n) / max(n - 1, 1))


def smooth(losses, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average (as in fastai)."""
    out, avg = [], 0.0
    for i, v in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return np.array(out)


def smooth_zero_lag(losses, beta: float) -> np.ndarray:
    """Forward-backward EMA (like filtfilt): as smooth as `smooth`, without its lag, which at
    beta 0.98 is ~50 batches, a whole decade of lr in a 300-batch sweep."""
    return smooth(smooth(losses, beta)[::-1], beta)[::-1]


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> tuple[float, float]:
    """(suggested peak lr for 1cycle, lr of steepest descent)."""
    skip = max(len(lrs) // 10, 1)             # the first batches are noise
    i_min = skip + int(np.argmin(smoothed[skip:]))
    grads = np.gradient(smoothed, np.log(lrs))
    i_steep = skip + int(np.argmin(grads[skip:i_min + 1])) if i_min > skip else i_min
    return float(lrs[i_min] / 10), float(lrs[i_steep])


def lr_find(cfg, build_dir: str | Path) -> dict:
    from model.batches import MixedSampler, load_training_data
    from model.net import build_model
    from model.steps import Steps, make_optimizer
    from toolchain.tfsetup import configure_tf

    c = cfg.lr_find
    data = load_training_data(cfg)
    configure_tf(cfg)
    model = build_model(cfg.model, len(data.classes), seed=cfg.seed)
    opt, _ = make_optimizer(cfg.train.optimizer, cfg.train.lr_schedule)
    steps = Steps(model, opt, cfg.train)
    sampler = MixedSampler(cfg, data, np.random.default_rng(cfg.seed))
    lrs = sweep_lrs(c.start_lr, c.end_lr, c.num_batches)
    losses = []
    t0 = time.monotonic()
    print(f"LR range test: {c.num_batches} batches of {cfg.train.batch_size} (the training mix), "
          f"lr {c.start_lr:g} -> {c.end_lr:g} ({cfg.train.optimizer.name})", flush=True)
    stopped = None
    for i, lr in enumerate(lrs):
        opt.learning_rate = float(lr)
        loss, _ = steps.train_step(*sampler.next())
        loss = float(loss)
        losses.append(loss)
        sm = smooth(losses, c.smoothing)
        if not math.isfinite(loss) or (i > 10 and sm[-1] > c.diverge * sm.min()):
            stopped = i + 1
            print(f"  loss diverged at lr {lr:.3g} (batch {i + 1}); stopping", flush=True)
            break
        if (i + 1) % 50 == 0:
            print(f"  batch {i + 1:4d}  lr {lr:.3g}  loss {sm[-1]:.4f}", flush=True)
    lrs = lrs[:len(losses)]
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], np.array(losses)[finite]
    sm = smooth_zero_lag(losses, c.smoothing)
    suggestion, steepest = suggest(lrs, sm)
    out = Path(build_dir) / "lr_find"
    result = {"suggested_max_lr": suggestion, "steepest_lr": steepest,
              "min_loss_lr": float(lrs[int(np.argmin(sm))]), "batches": len(losses),
              "stopped_at_batch": stopped, "seconds": round(time.monotonic() - t0, 1)}
    with staged_dir(out) as stage:
        rows = "lr,loss,smoothed_loss\n" + "".join(
            f"{a:.6g},{b:.6f},{s:.6f}\n" for a, b, s in zip(lrs, losses, sm))
        atomic_write_text(stage / "lr_find.csv", rows)
        reports.plot_lr_find(lrs, losses, sm, suggestion, stage / "lr_find.png", steepest)
        atomic_write_json(stage / "lr_find.json", result)
        atomic_write_json(stage / "provenance.json", provenance(
            "lr_find", cfg, inputs={"data": data.identity()}))
    print(f"suggested max lr for 1cycle: {suggestion:.2g} (steepest descent at {steepest:.2g}); "
          f"set train.lr_schedule.lr, e.g. make train SET=\"train.lr_schedule.lr={suggestion:.2g}\"")
    print(f"plot: {out / 'lr_find.png'}")
    return result
