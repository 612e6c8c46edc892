"""Reports people look at: history CSV/JSON, curves, confusion matrix, overfitting notes."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from toolchain.artifacts import atomic_file, atomic_write_text


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def per_class_accuracy(cm: np.ndarray, names) -> dict:
    totals = cm.sum(axis=1)
    return {name: (float(cm[i, i] / totals[i]) if totals[i] else float("nan"))
            for i, name in enumerate(names)}


def overfit_notes(history: list[dict], val: dict | None, test: dict, gap: float) -> list[str]:
    """Plain-language notes when train and validation diverge, or test lags validation."""
    notes = []
    if not history:
        return notes
    last = history[-1]
    d = last["train_accuracy"] - last["val_accuracy"]
    if d > gap:
        notes.append(f"overfitting: train accuracy {last['train_accuracy']:.4f} is {d:.4f} above "
                     f"validation {last['val_accuracy']:.4f} in the last epoch; more dropout or "
                     f"augmentation, or fewer epochs")
    vl = [r["val_loss"] for r in history]
    best_i = int(np.argmin(vl))
    if len(vl) - 1 - best_i >= 2 and history[-1]["train_loss"] < history[best_i]["train_loss"]:
        notes.append(f"overfitting: validation loss was lowest at epoch {best_i + 1} and rose for "
                     f"{len(vl) - 1 - best_i} epochs while training loss kept falling")
    if val and test and val["accuracy"] - test["accuracy"] > 0.01:
        notes.append(f"validation accuracy {val['accuracy']:.4f} is above test "
                     f"{test['accuracy']:.4f}: the validation rows are near-twins of training "
                     f"rows (train is augmented from 1,704 photos), so trust the test figure")
    return notes


def write_history(history: list[dict], csv_path: Path, json_path: Path) -> None:
    if history:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
        atomic_write_text(csv_path, buf.getvalue())
    else:
        atomic_write_text(csv_path, "")
    atomic_write_text(json_path, json.dumps(history, indent=2) + "\n")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(history: list[dict], path: Path, best_epoch: int | None = None) -> None:
    plt = _plt()
    ep = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(ep, [r["train_loss"] for r in history], "o-", label="train")
    a1.plot(ep, [r["val_loss"] for r in history], "o-", label="validation")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.set_yscale("log"), a1.set_title("loss")
    a2.plot(ep, [r["train_accuracy"] for r in history], "o-", label="train (augmented)")
    a2.plot(ep, [r["val_accuracy"] for r in history], "o-", label="validation")
    a2.set_xlabel("epoch"), a2.set_ylabel("accuracy"), a2.set_title("accuracy")
    for a in (a1, a2):
        if best_epoch:
            a.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best (epoch {best_epoch})")
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, names, path: Path, accuracy: float) -> None:
    plt = _plt()
    n = len(names)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted letter"), ax.set_ylabel("true letter")
    ax.set_title(f"test confusion matrix ({cm.sum():,} images, accuracy {accuracy * 100:.2f}%)")
    for i in range(n):
        for j in range(n):
            if cm[i, j] and (i != j or norm[i, j] < 0.995):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_lr_find(lrs, losses, smoothed, suggestion: float, path: Path, steepest: float) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(lrs, losses, color="lightgrey", lw=1, label="loss per batch")
    ax.plot(lrs, smoothed, lw=2, label="smoothed loss")
    ax.axvline(suggestion, color="red", ls="--", label=f"suggested max lr {suggestion:.2g}")
    ax.axvline(steepest, color="green", ls=":", label=f"steepest descent {steepest:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate"), ax.set_ylabel("training loss")
    lo, hi = np.nanmin(smoothed), np.nanpercentile(smoothed, 95)
    ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.3 * (hi - lo))
    ax.set_title("LR range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
