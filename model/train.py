"""The training stage: config + Kaggle CSVs -> float model (.h5), labels, reports.

Plain function `train(cfg, build_dir)`; the CLI and the runner seam decide where it runs.

- Per-batch lr/momentum policy (constant, time_decay, 1cycle), on-the-fly augmentation,
  early stopping on validation, best-checkpoint keeping.
- A per-epoch line in the style of Chainer's PrintReport plus a progress bar within the epoch.
- Resume: every finished epoch writes a checkpoint (model + optimizer + RNG + history) under
  `<build>/train.resume/`. After Ctrl-C or a kill, the next run with the same config and data
  carries on from there; otherwise it says why not and starts over.
- Outputs are built in a staging dir and swapped in at the end: `<build>/train/` either holds a
  complete, evaluated result or the previous one.
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

from model import data as D
from model import reports
from model.augment import AugmentSampler, apply_tf
from model.schedules import Schedule
from toolchain.artifacts import (atomic_file, atomic_write_json, atomic_write_text,
                                 clean_stale_partials, provenance, staged_dir)
from toolchain.config import config_hash, to_dict
from toolchain.errors import UserError

MODEL_FILE = "model.h5"
LABELS_FILE = "labels.txt"


# --------------------------------------------------------------------------- TF set-up

def configure_tf(cfg):
    """Import TensorFlow quietly, seeded and deterministic, with the configured threads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    if cfg.train.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(cfg.train.threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(cfg.train.threads, 2))
        except RuntimeError:
            pass  # already initialised in this process (tests); keep what is there
    tf.keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    return tf


def make_optimizer(ocfg, scfg):
    """Legacy Keras optimizers: their hyper-parameters are variables, so the schedule can
    change lr and momentum/beta_1 every batch inside the compiled step."""
    import tensorflow as tf
    opts = tf.keras.optimizers.legacy
    cycle = scfg.policy == "onecycle" and scfg.momentum_range is not None
    hi = scfg.momentum_range[1] if cycle else None
    if ocfg.name == "adam":
        opt = opts.Adam(learning_rate=scfg.lr, beta_1=hi if cycle else ocfg.beta_1,
                        beta_2=ocfg.beta_2, epsilon=ocfg.epsilon)
        mom_attr = "beta_1"
    elif ocfg.name == "sgd":
        m = hi if cycle else ocfg.momentum
        opt = opts.SGD(learning_rate=scfg.lr, momentum=m, nesterov=ocfg.nesterov)
        mom_attr = "momentum" if m > 0 else None
    else:
        m = hi if cycle else ocfg.momentum
        opt = opts.RMSprop(learning_rate=scfg.lr, rho=ocfg.rho, momentum=m, epsilon=ocfg.epsilon)
        mom_attr = "momentum" if m > 0 else None
    return opt, mom_attr


def make_loss(tcfg):
    import tensorflow as tf
    if tcfg.loss == "sparse_categorical_crossentropy":
        fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return lambda y, logits: fn(y, logits)
    fn = tf.keras.losses.CategoricalCrossentropy(from_logits=True,
                                                 label_smoothing=tcfg.label_smoothing)
    return lambda y, logits: fn(tf.one_hot(y, D.NUM_CLASSES), logits)


class Steps:
    """The compiled train and eval steps for one model/optimizer pair."""

    def __init__(self, model, opt, loss_fn):
        import tensorflow as tf
        self.model, self.opt, self.loss_fn = model, opt, loss_fn

        @tf.function(reduce_retracing=True)
        def train_step(x, y, tr, con, bri, noise):
            x = apply_tf(x, tr, con, bri, noise)
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = loss_fn(y, logits)
                total = loss + tf.add_n(model.losses) if model.losses else loss
            grads = tape.gradient(total, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), y), tf.float32))
            return loss, correct

        @tf.function(reduce_retracing=True)
        def logits_step(x):
            return model(x, training=False)

        self.train_step = train_step
        self.logits_step = logits_step

    def predict_logits(self, x: np.ndarray, batch: int = 1024) -> np.ndarray:
        out = [self.logits_step(x[i:i + batch]).numpy() for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros((0, D.NUM_CLASSES), np.float32)

    def evaluate(self, ds: D.Dataset) -> dict:
        if len(ds) == 0:
            return {"loss": float("nan"), "accuracy": float("nan")}
        logits = self.predict_logits(ds.x)
        return score_logits(logits, ds.y)


def score_logits(logits: np.ndarray, y: np.ndarray) -> dict:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = float(-logp[np.arange(len(y)), y].mean())
    pred = logits.argmax(axis=1)
    top3 = np.argsort(-logits, axis=1)[:, :3]
    return {"loss": loss, "accuracy": float((pred == y).mean()),
            "top3_accuracy": float((top3 == y[:, None]).any(axis=1).mean()), "pred": pred}


# --------------------------------------------------------------------------- console

class Progress:
    """A one-line progress bar within an epoch (stderr, only when it is a terminal)."""

    def __init__(self, mode: str, stream=sys.stderr):
        self.enabled = mode == "bar" or (mode == "auto" and stream.isatty())
        self.stream = stream
        self.last = 0.0

    def update(self, done: int, total: int, loss: float, acc: float, rate: float, force=False):
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        width = 24
        fill = int(width * done / max(total, 1))
        eta = (total - done) / max(rate, 1e-9) if rate > 0 else 0
        self.stream.write(f"\r  [{'#' * fill}{'.' * (width - fill)}] {done}/{total} "
                          f"loss {loss:.4f} acc {acc:.4f} {rate:,.0f} img/s eta {eta:4.0f}s ")
        self.stream.flush()

    def clear(self):
        if self.enabled:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


COLUMNS = ["epoch", "lr", "train/loss", "train/acc", "val/loss", "val/acc", "img/s", "elapsed"]


def epoch_line(row: dict) -> str:
    return (f"{row['epoch']:<7d}{row['lr']:<10.2e}{row['train_loss']:<12.4f}"
            f"{row['train_accuracy']:<11.4f}{row['val_loss']:<10.4f}{row['val_accuracy']:<9.4f}"
            f"{row['images_per_s']:<8.0f}{row['elapsed_s']:.1f}s")


def header_line() -> str:
    widths = [7, 10, 12, 11, 10, 9, 8, 8]
    return "".join(f"{c:<{w}}" for c, w in zip(COLUMNS, widths))


# --------------------------------------------------------------------------- resume state

class ResumeState:
    """Epoch checkpoints under <build>/train.resume/ (model+optimizer, best weights, state)."""

    def __init__(self, build_dir: Path, identity: dict):
        self.dir = Path(build_dir) / "train.resume"
        self.identity = identity
        self.state_file = self.dir / "state.json"

    def load(self) -> dict | None:
        """The saved state when it belongs to this exact run, else None (and say why)."""
        if not self.state_file.exists():
            if self.dir.exists():
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
        state = dict(state, identity=self.identity, checkpoint=os.path.basename(prefix))
        atomic_write_json(self.state_file, state)
        # drop older epoch checkpoints
        keep = os.path.basename(prefix)
        for p in self.dir.glob("epoch-*"):
            if not p.name.startswith(keep):
                p.unlink(missing_ok=True)

    def clear(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def _set_rng_state(rng: np.random.Generator, st: dict) -> None:
    rng.bit_generator.state = st


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- the stage

def train(cfg, build_dir: str | Path) -> dict:
    """Train, evaluate and write `<build_dir>/train/`. Returns metrics."""
    t_start = time.monotonic()
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(build_dir)
    print(f"loading data: {cfg.data.train_csv}, {cfg.data.test_csv}", flush=True)
    splits = D.load_splits(cfg.data, cfg.seed)
    print(f"  train {len(splits.train):,}  val {len(splits.val):,}  test {len(splits.test):,} "
          f"images, {D.NUM_CLASSES} classes", flush=True)
    tf = configure_tf(cfg)
    from model.net import build_model, dpu_violations

    model = build_model(cfg.model, seed=cfg.seed)
    problems = dpu_violations(model)
    if problems:
        raise UserError("model config gives a network the DPU cannot run: " + "; ".join(problems))
    opt, mom_attr = make_optimizer(cfg.train.optimizer, cfg.train.lr_schedule)
    steps = Steps(model, opt, make_loss(cfg.train))

    tcfg = cfg.train
    n_train = len(splits.train)
    bs = tcfg.batch_size
    batches_per_epoch = -(-n_train // bs)
    schedule = Schedule(tcfg.lr_schedule, tcfg.epochs * batches_per_epoch,
                        base_momentum=getattr(opt, mom_attr) if mom_attr else None)
    rng = np.random.default_rng(cfg.seed)
    sampler = AugmentSampler(tcfg.augment, rng)

    identity = {"config": config_hash(cfg, "seed", "data", "model", "train"),
                "train_data": splits.train.sha256, "test_data": splits.test.sha256}
    resume = ResumeState(build_dir, identity)
    ckpt = tf.train.Checkpoint(model=model, optimizer=opt)
    state = resume.load()
    history: list[dict] = []
    start_epoch, step = 0, 0
    best = {"value": None, "epoch": None}
    bad_epochs = 0
    best_weights = resume.dir / "best-weights.h5"
    if state:
        ckpt.read(str(resume.dir / state["checkpoint"])).expect_partial()
        history = state["history"]
        start_epoch, step = state["epoch"], state["step"]
        best, bad_epochs = state["best"], state["bad_epochs"]
        _set_rng_state(rng, state["rng"])
        print(f"resuming after epoch {start_epoch} of {tcfg.epochs} "
              f"(checkpoint in {resume.dir})", flush=True)

    monitor = tcfg.early_stopping.monitor
    better = (lambda a, b: a < b - tcfg.early_stopping.min_delta) if monitor == "val_loss" \
        else (lambda a, b: a > b + tcfg.early_stopping.min_delta)
    has_val = len(splits.val) > 0
    progress = Progress(tcfg.progress)
    stopped_early = False
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    epoch = start_epoch
    try:
        if start_epoch < tcfg.epochs and not state_says_stopped(state):
            print(f"training {tcfg.epochs} epochs max, batch {bs}, {tcfg.optimizer.name}, "
                  f"lr policy {tcfg.lr_schedule.policy} (lr {tcfg.lr_schedule.lr:g})", flush=True)
            print(header_line(), flush=True)
            for row in history:
                print(epoch_line(row), flush=True)
        for epoch in range(start_epoch + 1, tcfg.epochs + 1):
            if state_says_stopped(state):
                break
            t0 = time.monotonic()
            order = rng.permutation(n_train) if tcfg.shuffle else np.arange(n_train)
            loss_sum = correct = seen = 0.0
            lr = schedule.lr(step)
            for b in range(batches_per_epoch):
                idx = order[b * bs:(b + 1) * bs]
                lr = schedule.lr(step)
                opt.learning_rate = lr
                mom = schedule.momentum(step)
                if mom is not None:
                    setattr(opt, mom_attr, mom)
                tr, con, bri, noise = sampler.sample(len(idx))
                loss, corr = steps.train_step(splits.train.x[idx], splits.train.y[idx],
                                              tr, con, bri, noise)
                step += 1
                loss_sum += float(loss) * len(idx)
                correct += float(corr)
                seen += len(idx)
                progress.update(int(seen), n_train, loss_sum / seen, correct / seen,
                                seen / (time.monotonic() - t0))
            train_time = time.monotonic() - t0
            progress.clear()
            val = steps.evaluate(splits.val) if has_val else {"loss": loss_sum / seen,
                                                              "accuracy": correct / seen}
            row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / seen,
                   "train_accuracy": correct / seen, "val_loss": val["loss"],
                   "val_accuracy": val["accuracy"], "images_per_s": seen / train_time,
                   **({"val_top3_accuracy": val.get("top3_accuracy")}
                      if "top3_accuracy" in tcfg.metrics else {}),
                   "epoch_s": time.monotonic() - t0,
                   "elapsed_s": (history[-1]["elapsed_s"] if history else 0.0)
                   + time.monotonic() - t0}
            history.append(row)
            print(epoch_line(row), flush=True)
            current = row["val_loss"] if monitor == "val_loss" else row["val_accuracy"]
            if best["value"] is None or better(current, best["value"]):
                best = {"value": current, "epoch": epoch}
                bad_epochs = 0
                resume.dir.mkdir(parents=True, exist_ok=True)
                with atomic_file(best_weights, suffix=".h5") as tmp:
                    model.save_weights(str(tmp))
            else:
                bad_epochs += 1
            if tcfg.early_stopping.enabled and bad_epochs >= tcfg.early_stopping.patience:
                stopped_early = True
            resume.save(ckpt, {"epoch": epoch, "step": step, "history": history, "best": best,
                               "bad_epochs": bad_epochs, "rng": _rng_state(rng),
                               "stopped_early": stopped_early})
            if stopped_early:
                print(f"early stop: {monitor} has not improved for {bad_epochs} epochs "
                      f"(best {best['value']:.4f} at epoch {best['epoch']})", flush=True)
                break
    except KeyboardInterrupt:
        progress.clear()
        done = history[-1]["epoch"] if history else 0
        raise UserError(f"training interrupted in epoch {epoch}; "
                        + (f"epochs 1-{done} are checkpointed in {resume.dir}: run the same "
                           f"command again to resume" if done else
                           "no epoch had finished, so the next run starts over"),
                        exit_code=130) from None
    finally:
        signal.signal(signal.SIGTERM, old_term)
    if state_says_stopped(state):
        stopped_early = True
    train_seconds = history[-1]["elapsed_s"] if history else 0.0

    if tcfg.restore_best and best_weights.exists():
        model.load_weights(str(best_weights))
        print(f"restored the best weights: epoch {best['epoch']} ({monitor} {best['value']:.4f})")
    out_dir = build_dir / "train"
    metrics = _finish(cfg, tf, model, splits, history, best, stopped_early, train_seconds,
                      t_start, out_dir)
    resume.clear()
    return metrics


def state_says_stopped(state) -> bool:
    return bool(state and state.get("stopped_early"))


def _finish(cfg, tf, model, splits, history, best, stopped_early, train_seconds, t_start,
            out_dir: Path) -> dict:
    """Save, reload, evaluate and report, into a staging dir swapped in at the end."""
    with staged_dir(out_dir) as stage:
        model_path = stage / MODEL_FILE
        model.save(str(model_path), include_optimizer=False, save_format="h5")
        atomic_write_text(stage / LABELS_FILE, "\n".join(D.LETTERS) + "\n")
        # Evaluate the file as saved, so the figures are those of the artifact.
        saved = tf.keras.models.load_model(str(model_path), compile=False)
        steps = Steps(saved, None, None)
        test = steps.evaluate(splits.test)
        val = steps.evaluate(splits.val) if len(splits.val) else None
        pred = test.pop("pred")
        if val:
            val.pop("pred")
        cm = reports.confusion_matrix(splits.test.y, pred, D.NUM_CLASSES)
        per_letter = reports.per_class_accuracy(cm, D.LETTERS)
        notes = reports.overfit_notes(history, val, test, cfg.train.overfit_gap)
        metrics = {
            "test_accuracy": test["accuracy"], "test_loss": test["loss"],
            **({"test_top3_accuracy": test["top3_accuracy"]}
               if "top3_accuracy" in cfg.train.metrics else {}),
            "test_images": len(splits.test),
            "val_accuracy": val["accuracy"] if val else None,
            "val_loss": val["loss"] if val else None,
            "per_letter_accuracy": per_letter,
            "worst_letters": sorted(per_letter, key=per_letter.get)[:3],
            "epochs_run": len(history), "best_epoch": best["epoch"],
            "stopped_early": stopped_early,
            "train_seconds": round(train_seconds, 1),
            "stage_seconds": round(time.monotonic() - t_start, 1),
            "params": int(model.count_params()),
            "notes": notes,
        }
        reports.write_history(history, stage / "history.csv", stage / "history.json")
        reports.plot_curves(history, stage / "curves.png", best["epoch"])
        reports.plot_confusion(cm, D.LETTERS, stage / "confusion.png", test["accuracy"])
        atomic_write_json(stage / "metrics.json", metrics)
        import yaml
        atomic_write_text(stage / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        atomic_write_json(stage / "provenance.json", provenance(
            "train", cfg, inputs={
                "train_csv": {"path": cfg.data.train_csv, "sha256": splits.train.sha256},
                "test_csv": {"path": cfg.data.test_csv, "sha256": splits.test.sha256}},
            extra={"outputs": sorted(p.name for p in stage.iterdir())}))
    print(f"\ntest accuracy {test['accuracy'] * 100:.2f}% on {len(splits.test):,} test images "
          f"(val {val['accuracy'] * 100:.2f}%)" if val else
          f"\ntest accuracy {test['accuracy'] * 100:.2f}% on {len(splits.test):,} test images")
    if "top3_accuracy" in metrics:
        print(f"test top-3 accuracy {metrics['test_top3_accuracy'] * 100:.2f}%")
    if any(v < 1.0 for v in per_letter.values()):
        worst = ", ".join(f"{k} {per_letter[k] * 100:.1f}%" for k in metrics["worst_letters"])
        print(f"weakest letters: {worst}")
    for n in notes:
        print(f"note: {n}")
    print(f"training {train_seconds:.0f}s, whole stage {metrics['stage_seconds']:.0f}s; "
          f"outputs in {out_dir}/")
    return metrics
