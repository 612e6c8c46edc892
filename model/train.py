"""The training stage: config + Sign MNIST + photos -> float model (.h5), labels, reports.

Plain function `train(cfg, build_dir)`; the CLI and the runner seam decide where it runs.

- Mixed batches of Sign MNIST crops, real photo crops and "no hand" crops with webcam-style
  augmentation (model/batches.py, model/augment.py); per-batch lr/momentum policy.
- After every epoch: Sign MNIST validation and the photo validation split (unseen source
  photos); one line per epoch in the style of Chainer's PrintReport.
- Resume: every finished epoch writes a checkpoint (model + optimizer + RNG + history) under
  `<build>/train.resume/`. After Ctrl-C or a kill, the next run with the same config and data
  carries on from there; otherwise it says why not and starts over.
- Outputs are built in a staging dir and swapped in at the end: `<build>/train/` either holds a
  complete, evaluated result or the previous one. The app's threshold is calibrated here.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

from model import evaluate as E
from model import reports
from model.batches import MixedSampler, TrainingData, load_training_data
from model.schedules import Schedule
from model.steps import Steps, make_optimizer
from toolchain import stages as S
from toolchain.artifacts import atomic_file, atomic_write_json, clean_stale_partials, staged_dir
from toolchain.config import config_hash
from toolchain.errors import UserError
from toolchain.tfsetup import configure_tf

# the config sections whose change retrains (Make's dependency and the resume identity)
SECTIONS = ("seed", "data", "model", "train")


# --------------------------------------------------------------------------- console
class Progress:
    """A one-line progress bar within an epoch (stderr, only when it is a terminal)."""

    def __init__(self, mode: str, stream=sys.stderr):
        self.enabled = mode == "bar" or (mode == "auto" and stream.isatty())
        self.stream = stream
        self.last = 0.0
        self.t0 = time.monotonic()

    def start(self):
        """The epoch starts: the ETA is measured from here."""
        self.t0 = time.monotonic()

    def update(self, done: int, total: int, loss: float):
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        fill = int(24 * done / max(total, 1))
        eta = (total - done) * (now - self.t0) / max(done, 1)     # seconds per batch so far
        self.stream.write(f"\r  [{'#' * fill}{'.' * (24 - fill)}] {done}/{total} batches "
                          f"loss {loss:.4f} eta {eta:4.0f}s ")
        self.stream.flush()

    def clear(self):
        if self.enabled:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()


COLUMNS = [("epoch", 7), ("lr", 10), ("train/loss", 12), ("train/acc", 11), ("val/acc", 9),
           ("photo/acc", 11), ("photo/loss", 12), ("nohand", 8), ("img/s", 7), ("elapsed", 8)]


def header_line() -> str:
    return "".join(f"{c:<{w}}" for c, w in COLUMNS)


def epoch_line(r: dict) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    return (f"{r['epoch']:<7d}{r['lr']:<10.2e}{r['train_loss']:<12.4f}{r['train_accuracy']:<11.4f}"
            f"{f(r.get('val_accuracy'), '.4f'):<9}{f(r.get('photo_accuracy'), '.4f'):<11}"
            f"{f(r.get('photo_loss'), '.4f'):<12}{f(r.get('no_hand'), '.3f'):<8}"
            f"{r['images_per_s']:<7.0f}{r['elapsed_s']:.1f}s")


# --------------------------------------------------------------------------- resume state
class ResumeState:
    """Epoch checkpoints under <build>/train.resume/ (model+optimizer, best weights, state)."""

    def __init__(self, build_dir: Path, identity: dict):
        self.dir = Path(build_dir) / "train.resume"
        self.identity = identity
        self.state_file = self.dir / "state.json"
        self.best_weights = self.dir / "best-weights.h5"

    def load(self) -> dict | None:
        """The saved state when it belongs to this exact run, else None (and say why)."""
        if not self.state_file.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            return None
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            print("note: not resuming: the saved training state is unreadable; starting over")
            shutil.rmtree(self.dir, ignore_errors=True)
            return None
        old = state.get("identity", {})
        changed = sorted(k for k in set(old) | set(self.identity)
                         if old.get(k) != self.identity.get(k))
        if changed:
            print(f"note: not resuming the interrupted run from epoch {state.get('epoch')}: "
                  f"{', '.join(changed)} changed since; starting over")
            shutil.rmtree(self.dir, ignore_errors=True)
            return None
        return state

    def save(self, ckpt, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        prefix = ckpt.write(str(self.dir / f"epoch-{state['epoch']:03d}"))
        keep = os.path.basename(prefix)
        atomic_write_json(self.state_file, dict(state, identity=self.identity, checkpoint=keep))
        for p in self.dir.glob("epoch-*"):
            if not p.name.startswith(keep):
                p.unlink(missing_ok=True)

    def clear(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- the loop
class TrainRun:
    """The epochs of one training run, resumable."""

    def __init__(self, cfg, tf, model, data: TrainingData, build_dir: Path):
        self.cfg, self.tcfg, self.model, self.data = cfg, cfg.train, model, data
        self.opt, self.mom_attr = make_optimizer(cfg.train.optimizer, cfg.train.lr_schedule)
        self.steps = Steps(model, self.opt, cfg.train)
        self.rng = np.random.default_rng(cfg.seed)
        self.sampler = MixedSampler(cfg, data, self.rng)
        total = self.tcfg.epochs * self.tcfg.steps_per_epoch
        self.schedule = Schedule(self.tcfg.lr_schedule, total, base_momentum=getattr(
            self.opt, self.mom_attr) if self.mom_attr else None)
        self.resume = ResumeState(build_dir, {"config": config_hash(cfg, *SECTIONS),
                                              **data.identity()})
        self.ckpt = tf.train.Checkpoint(model=model, optimizer=self.opt)
        self.history: list[dict] = []
        self.step = 0
        self.best = {"value": None, "epoch": None}
        self.bad_epochs = 0
        self.stopped_early = False

    def restore(self) -> int:
        """Load a matching checkpoint; the epoch to start after (0 = from scratch)."""
        state = self.resume.load()
        if not state:
            return 0
        self.ckpt.read(str(self.resume.dir / state["checkpoint"])).expect_partial()
        self.history, self.step = state["history"], state["step"]
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
        self.stopped_early = bool(state.get("stopped_early"))
        self.rng.bit_generator.state = state["rng"]
        print(f"resuming after epoch {state['epoch']} of {self.tcfg.epochs} "
              f"(checkpoint in {self.resume.dir})", flush=True)
        return int(state["epoch"])

    def run_epoch(self, epoch: int, progress: Progress) -> dict:
        t0 = time.monotonic()
        n = self.tcfg.steps_per_epoch
        loss_sum = correct = seen = 0.0
        lr = self.schedule.lr(self.step)
        progress.start()
        for b in range(n):
            lr = self.schedule.lr(self.step)
            self.opt.learning_rate = lr
            mom = self.schedule.momentum(self.step)
            if mom is not None:
                setattr(self.opt, self.mom_attr, mom)
            batch = self.sampler.next()
            loss, corr = self.steps.train_step(*batch)
            self.step += 1
            k = len(batch[7])
            loss_sum, correct, seen = loss_sum + float(loss) * k, correct + float(corr), seen + k
            progress.update(b + 1, n, loss_sum / seen)
        train_time = time.monotonic() - t0
        progress.clear()
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / seen,
               "train_accuracy": correct / seen, "images_per_s": seen / train_time}
        row.update(self.validate())
        row["epoch_s"] = time.monotonic() - t0
        row["elapsed_s"] = (self.history[-1]["elapsed_s"] if self.history else 0.0) + row["epoch_s"]
        return row

    def validate(self) -> dict:
        preds = E.predict_sets(self.steps.logits, self.data,
                               ("sign_mnist_val", "photos_val", "no_hand_val"),
                               self.cfg.recognition.mirror)
        s = E.score_sets(preds, self.data.classes, 0.0)
        out = {}
        if "sign_mnist_val" in s:
            out.update(val_loss=s["sign_mnist_val"]["loss"],
                       val_accuracy=s["sign_mnist_val"]["accuracy"])
        if "photos_val" in s:
            out.update(photo_loss=s["photos_val"]["loss"],
                       photo_accuracy=s["photos_val"]["accuracy"],
                       photo_top3=s["photos_val"]["top3"])
        if "no_hand_val" in s:
            out["no_hand"] = s["no_hand_val"]["no_hand"]
        return out

    def after_epoch(self, row: dict) -> None:
        """Best-epoch bookkeeping, early stopping, the checkpoint."""
        es = self.tcfg.early_stopping
        current = row.get(es.monitor)
        if current is not None:
            lower = es.monitor.endswith("loss")
            if self.best["value"] is None or (
                    current < self.best["value"] - es.min_delta if lower
                    else current > self.best["value"] + es.min_delta):
                self.best = {"value": current, "epoch": row["epoch"]}
                self.bad_epochs = 0
                if self.tcfg.restore_best:
                    self.resume.dir.mkdir(parents=True, exist_ok=True)
                    with atomic_file(self.resume.best_weights, suffix=".h5") as tmp:
                        self.model.save_weights(str(tmp))
            else:
                self.bad_epochs += 1
        self.stopped_early = es.enabled and self.bad_epochs >= es.patience
        self.resume.save(self.ckpt, {"epoch": row["epoch"], "step": self.step,
                                     "history": self.history, "best": self.best,
                                     "bad_epochs": self.bad_epochs,
                                     "rng": self.rng.bit_generator.state,
                                     "stopped_early": self.stopped_early})

    def loop(self) -> None:
        start = self.restore()
        tcfg = self.tcfg
        if start < tcfg.epochs and not self.stopped_early:
            nk, nph, nbg = self.sampler.counts
            print(f"training {tcfg.epochs} epoch{'s' if tcfg.epochs != 1 else ''} of "
                  f"{tcfg.steps_per_epoch} batches of {tcfg.batch_size} ({nk} Sign MNIST, {nph} "
                  f"photos, {nbg} no hand), {tcfg.optimizer.name}, lr policy "
                  f"{tcfg.lr_schedule.policy} (lr {tcfg.lr_schedule.lr:g})", flush=True)
            print(header_line(), flush=True)
            for row in self.history:
                print(epoch_line(row), flush=True)
        progress = Progress(tcfg.progress)
        epoch = start
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            for epoch in range(start + 1, tcfg.epochs + 1):
                if self.stopped_early:
                    break
                row = self.run_epoch(epoch, progress)
                self.history.append(row)
                print(epoch_line(row), flush=True)
                self.after_epoch(row)
                if self.stopped_early:
                    print(f"early stop: {tcfg.early_stopping.monitor} has not improved for "
                          f"{self.bad_epochs} epochs (best {self.best['value']:.4f} at epoch "
                          f"{self.best['epoch']})", flush=True)
        except KeyboardInterrupt:
            progress.clear()
            done = self.history[-1]["epoch"] if self.history else 0
            raise UserError(f"training interrupted in epoch {epoch}; "
                            + interrupted_hint(done, self.resume.dir), exit_code=130) from None
        finally:
            signal.signal(signal.SIGTERM, old_term)


def interrupted_hint(done: int, resume_dir) -> str:
    """What an interrupted training keeps: 'epoch 1 is' / 'epochs 1-3 are' checkpointed."""
    if not done:
        return "no epoch had finished, so the next run starts over"
    kept = "epoch 1 is" if done == 1 else f"epochs 1-{done} are"
    return f"{kept} checkpointed in {resume_dir}: run the same command again to resume"


# --------------------------------------------------------------------------- the stage
def train(cfg, build_dir: str | Path) -> dict:
    """Train, evaluate and write `<build_dir>/train/`. Returns metrics."""
    if cfg.model.kind == "landmarks":
        from model.hand_train import train as train_hands
        return train_hands(cfg, build_dir)
    t_start = time.monotonic()
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(build_dir)
    photos = f", photos {', '.join(cfg.data.photos)}" if cfg.data.photos else ""
    print(f"loading data: {cfg.data.train_csv}, {cfg.data.test_csv}{photos}", flush=True)
    data = load_training_data(cfg)
    print(f"  {data.describe()}", flush=True)
    tf = configure_tf(cfg)
    from model.net import build_model, dpu_violations
    model = build_model(cfg.model, len(data.classes), seed=cfg.seed)
    problems = dpu_violations(model)
    if problems:
        raise UserError("model config gives a network the DPU cannot run: " + "; ".join(problems))
    run = TrainRun(cfg, tf, model, data, build_dir)
    run.loop()
    if cfg.train.restore_best and run.resume.best_weights.exists():
        model.load_weights(str(run.resume.best_weights))
        print(f"restored the best weights: epoch {run.best['epoch']} "
              f"({cfg.train.early_stopping.monitor} {run.best['value']:.4f})")
    from model.bundle import finish
    metrics = finish(cfg, tf, model, data, run, t_start,
                     S.out(cfg, build_dir, "train", "model").parent)
    run.resume.clear()
    return metrics
