"""Score a model on every held-out set, by the app's decision rule (dpu_app/scoring.py).

    sign_mnist_test   the Kaggle test CSV (7,172 images)
    sign_mnist_val    the validation rows split off the training CSV
    photos_val        hand crops of the validation photos (split by source photo), cut exactly
                      as the app cuts its guide box
    no_hand_val       squares of the validation photos away from the hand box

One function for the trainer, freeze, quantize and the ladder; `logits_fn` is whatever runs
the artifact (Keras, the frozen graph, the quantized model) on uint8 (N, S, S) images.
"""
from __future__ import annotations

import numpy as np

from dpu_app import scoring
from dpu_app.contract import softmax


def _loss(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def confusion(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y), np.asarray(pred)), 1)
    return cm


def score_letters(logits: np.ndarray, y: np.ndarray, classes, threshold: float) -> dict:
    """Accuracy (top class = truth; 'nothing' counts as wrong), top-3, loss, per letter, and
    what the app would do (shown right / shown wrong / 'no hand') at `threshold`."""
    if len(y) == 0:
        return {"images": 0}
    out = scoring.score_hands(softmax(logits), y, list(classes), threshold)
    out["accuracy"] = out.pop("top1")
    out["loss"] = round(_loss(logits, y), 5)
    return out


def heldout_arrays(data) -> dict:
    """The held-out sets as arrays (for heldout.npz): <set>_x uint8 (N, S, S), <set>_y."""
    out = {"sign_mnist_test_x": data.kaggle_test.x, "sign_mnist_test_y": data.kaggle_test.y}
    if data.photos is not None:
        out.update(photos_val_x=data.photos.val.x, photos_val_y=data.photos.val.y,
                   no_hand_val_x=data.photos.bg_val.x)
    return out


def load_heldout(path) -> tuple[tuple, dict]:
    """(classes, {set name: (x, y or None)}) from a heldout.npz the trainer wrote."""
    import os
    from toolchain.errors import UserError
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist: run 'make train' first")
    with np.load(path) as z:
        classes = tuple(str(c) for c in z["classes"])
        sets = {}
        for name in ("sign_mnist_test", "photos_val", "no_hand_val"):
            if f"{name}_x" in z.files and len(z[f"{name}_x"]):
                sets[name] = (z[f"{name}_x"], z[f"{name}_y"] if f"{name}_y" in z.files else None)
    return classes, sets


def app_logits(logits_fn, x: np.ndarray, mirror: bool) -> np.ndarray:
    """What the app's decision sees, as logits: the model's output, or with mirror averaging
    (recognition.mirror) the log of the app's mirror-averaged probabilities (scoring.app_probs)."""
    if not mirror:
        return logits_fn(x)
    p = scoring.app_probs(lambda b: softmax(logits_fn(b)), x, True)
    return np.log(np.maximum(p, 1e-12))


def predict_heldout(logits_fn, sets: dict, mirror: bool = False) -> dict:
    return {name: (app_logits(logits_fn, x, mirror), y) for name, (x, y) in sets.items()}


def predict_sets(logits_fn, data, sets=None, mirror: bool = False) -> dict:
    """{set name: (logits, truth or None)} for the held-out sets that have images."""
    avail = {"sign_mnist_test": (data.kaggle_test.x, data.kaggle_test.y),
             "sign_mnist_val": (data.kaggle_val.x, data.kaggle_val.y)}
    if data.photos is not None:
        avail["photos_val"] = (data.photos.val.x, data.photos.val.y)
        if data.nothing is not None:
            avail["no_hand_val"] = (data.photos.bg_val.x, None)
    return predict_heldout(logits_fn, {k: v for k, v in avail.items()
                                        if (sets is None or k in sets) and len(v[0])}, mirror)


def score_sets(preds: dict, classes, threshold: float) -> dict:
    out = {}
    for name, (logits, y) in preds.items():
        if y is None:
            out[name] = scoring.score_backgrounds(softmax(logits), list(classes), threshold)
        else:
            out[name] = score_letters(logits, y, classes, threshold)
    return out


def calibrate(preds: dict, classes, rcfg) -> tuple[float, str]:
    """(threshold, how it was chosen): recognition.threshold when set, else the highest that
    keeps 'no hand' on validation hand crops within recognition.max_hand_rejection."""
    if rcfg.threshold is not None:
        return float(rcfg.threshold), "set by recognition.threshold"
    if "photos_val" not in preds:
        return 0.5, "default 0.5 (no photo validation split to calibrate on)"
    logits, _ = preds["photos_val"]
    probs = softmax(logits)
    t = scoring.calibrate_threshold(probs, list(classes), rcfg.max_hand_rejection)
    how = (f"calibrated on {len(logits)} validation hand crops: the highest threshold that "
           f"reads at most {rcfg.max_hand_rejection:.0%} of them as 'no hand'")
    _, shown = scoring.decide(probs, list(classes), t)
    if (~shown).mean() > rcfg.max_hand_rejection:
        how += (f" (none does: the 'nothing' class itself wins on {(~shown).mean():.0%} of "
                f"them, so the threshold is {t:.2f})")
    return t, how


def headline(scores: dict) -> str:
    """One line with the figures that matter, for stage output."""
    parts = []
    t = scores.get("sign_mnist_test")
    if t and t.get("images"):
        parts.append(f"Sign MNIST test {t['accuracy'] * 100:.2f}% ({t['images']:,})")
    p = scores.get("photos_val")
    if p and p.get("images"):
        parts.append(f"real photos (validation, unseen source photos) top-1 "
                     f"{p['accuracy'] * 100:.1f}%, top-3 {p['top3'] * 100:.1f}% ({p['images']}); "
                     f"hands read as no hand {p['no_hand'] * 100:.1f}%")
    b = scores.get("no_hand_val")
    if b and b.get("images"):
        parts.append(f"backgrounds read as no hand {b['no_hand'] * 100:.1f}% ({b['images']})")
    return "; ".join(parts)
