"""Reports people look at: history CSV/JSON, curves, confusion matrix, overfitting notes."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from toolchain.artifacts import atomic_file, atomic_write_text


def overfit_notes(history: list[dict], scores: dict, gap: float, min_epochs: int = 3) -> list[str]:
    """Plain-language notes when training and validation diverge. Nothing on runs too short to
    tell (fewer than `min_epochs` epochs, or a tiny validation set)."""
    notes = []
    if len(history) < min_epochs:
        return notes
    last = history[-1]
    val = last.get("photo_accuracy", last.get("val_accuracy"))
    what = "photo validation" if "photo_accuracy" in last else "validation"
    if val is not None and last["train_accuracy"] - val > gap:
        notes.append(f"overfitting: train accuracy {last['train_accuracy']:.4f} (augmented) is "
                     f"{last['train_accuracy'] - val:.4f} above {what} {val:.4f} in the last "
                     f"epoch; more augmentation or more photos would help")
    key = "photo_loss" if "photo_loss" in last else "val_loss"
    vl = [r[key] for r in history if r.get(key) is not None]
    if len(vl) == len(history):
        best_i = int(np.argmin(vl))
        if len(vl) - 1 - best_i >= 2 and history[-1]["train_loss"] < history[best_i]["train_loss"]:
            notes.append(f"overfitting: {what} loss was lowest at epoch {best_i + 1} and rose for "
                         f"{len(vl) - 1 - best_i} epochs while training loss kept falling")
    v, t = scores.get("sign_mnist_val", {}), scores.get("sign_mnist_test", {})
    if v.get("images", 0) >= 500 and t.get("images") and v["accuracy"] - t["accuracy"] > 0.01:
        notes.append(f"Sign MNIST validation accuracy {v['accuracy']:.4f} is above test "
                     f"{t['accuracy']:.4f}: the validation rows are near-twins of training rows "
                     f"(train is augmented from 1,704 photos), so trust the test figure")
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
    a1.plot(ep, [r["train_loss"] for r in history], "o-", label="train (augmented mix)")
    for key, label in (("val_loss", "Sign MNIST validation"), ("photo_loss", "photo validation")):
        if all(r.get(key) is not None for r in history):
            a1.plot(ep, [r[key] for r in history], "o-", label=label)
    a1.set_yscale("log")
    a2.plot(ep, [r["train_accuracy"] for r in history], "o-", label="train (augmented mix)")
    for key, label in (("val_accuracy", "Sign MNIST validation"),
                       ("photo_accuracy", "photo validation top-1"),
                       ("no_hand", "backgrounds read as no hand")):
        if all(r.get(key) is not None for r in history):
            a2.plot(ep, [r[key] for r in history], "o-", label=label)
    a2.set_ylim(0.0, 1.02)                 # a fixed axis: one epoch does not zoom to 0.96-1.04
    for a, title in ((a1, "loss"), (a2, "accuracy")):
        a.set_xlabel("epoch"), a.set_title(title)
        a.set_xticks(ep)
        if best_epoch:
            a.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best (epoch {best_epoch})")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_confusion(panels: list, names, path: Path) -> None:
    """One confusion matrix per (title, matrix, accuracy) panel; every non-zero cell shows its
    count, dark text on light cells and white on dark ones."""
    plt = _plt()
    n = len(names)
    fig, axes = plt.subplots(1, len(panels), figsize=(9 * len(panels), 8), squeeze=False)
    for ax, (title, cm, acc) in zip(axes[0], panels):
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), [str(x)[:3] for x in names], fontsize=7)
        ax.set_yticks(range(n), [str(x)[:3] for x in names], fontsize=7)
        ax.set_xlabel("predicted"), ax.set_ylabel("true")
        ax.set_title(f"{title}: {cm.sum():,} images, accuracy {acc * 100:.2f}%")
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
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
