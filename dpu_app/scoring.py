"""How the app decides, and how a set of crops is scored by that decision (one rule for the
live app, `--eval-photos`, the trainer's reports and the accuracy ladder).

The app shows a letter when the top class is a letter (not `nothing`) and its probability
reaches the threshold; otherwise it shows "no hand" and spells nothing.
"""
from __future__ import annotations

import numpy as np

from .contract import NO_HAND


def app_probs(infer, x: np.ndarray, mirror: bool) -> np.ndarray:
    """The probabilities the app decides on for a batch x (N, H, W, C): `infer(x)`, or with
    mirror averaging the mean of the image's and its mirror image's (people sign with either
    hand, and the model saw both in training)."""
    p = infer(x)
    if mirror:
        p = (p + infer(np.ascontiguousarray(x[:, :, ::-1]))) / 2
    return p


def hand_probs(letter_probs: np.ndarray, presence: np.ndarray, presence_threshold: float,
               labels: list, cols: list | None = None) -> np.ndarray:
    """The landmark pipeline's probabilities over `labels` (letters, then `nothing`): where the
    network's hand presence is below its threshold the row is certain "no hand"; elsewhere
    the letter classifier's probabilities. `decide` then applies the letter threshold, so one
    rule decides for the live app, --eval-photos, training and the ladder. `cols`: the
    label index of each classifier column (default: the first columns, in order)."""
    n = len(letter_probs)
    out = np.zeros((n, len(labels)), np.float32)
    cols = list(range(letter_probs.shape[1])) if cols is None else list(cols)
    present = np.asarray(presence) >= presence_threshold
    out[:, cols] = letter_probs * present[:, None]
    if NO_HAND in labels:
        out[~present, labels.index(NO_HAND)] = 1.0
    return out


def decide(probs: np.ndarray, labels: list, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(top class index, shown) per row: shown is False where the app says "no hand"."""
    top = probs.argmax(axis=1)
    conf = probs[np.arange(len(probs)), top]
    shown = conf >= threshold
    if NO_HAND in labels:
        shown &= top != labels.index(NO_HAND)
    return top, shown


def score_hands(probs: np.ndarray, truth: np.ndarray, labels: list, threshold: float) -> dict:
    """Figures for crops that hold a hand (truth = class indices of letters)."""
    n = len(truth)
    if n == 0:
        return {"images": 0}
    top, shown = decide(probs, labels, threshold)
    top3 = np.argsort(-probs, axis=1)[:, :3]
    right = top == truth
    per_letter, confused = {}, {}
    for c in sorted(set(truth.tolist())):
        m = truth == c
        per_letter[labels[c]] = round(float(right[m].mean()), 4)
        for j, k in zip(*np.unique(top[m & ~right], return_counts=True)):
            confused[f"{labels[c]}>{labels[j]}"] = int(k)
    return {
        "images": int(n),
        "top1": round(float(right.mean()), 5),
        "top3": round(float((top3 == truth[:, None]).any(axis=1).mean()), 5),
        "no_hand": round(float((~shown).mean()), 5),          # read as "no hand" (rejected)
        "shown_right": round(float((shown & right).mean()), 5),
        "shown_wrong": round(float((shown & ~right).mean()), 5),
        "threshold": float(threshold),
        "per_letter": per_letter,
        "most_confused": sorted(confused.items(), key=lambda kv: -kv[1])[:8],
    }


def weakest(per_letter: dict, n: int) -> list:
    """The n letters read worst, as (letter, accuracy), leaving out letters always read right."""
    return sorted(((k, v) for k, v in per_letter.items() if v < 1.0), key=lambda kv: kv[1])[:n]


def score_backgrounds(probs: np.ndarray, labels: list, threshold: float) -> dict:
    """Figures for crops without a hand: how many read as "no hand" (they all should)."""
    if len(probs) == 0:
        return {"images": 0}
    top, shown = decide(probs, labels, threshold)
    return {"images": int(len(probs)), "no_hand": round(float((~shown).mean()), 5),
            "threshold": float(threshold)}


def calibrate_threshold(hand_probs: np.ndarray, labels: list, max_rejection: float) -> float:
    """The highest threshold (0.01 steps) at which at most `max_rejection` of the hand crops
    read as "no hand". Higher thresholds show fewer wrong letters (and let fewer backgrounds
    through) but reject more real hands; this spends the rejection budget and no more."""
    if len(hand_probs) == 0:
        return 0.5
    best = 0.0
    for t in np.arange(0.0, 1.0, 0.01):
        _, shown = decide(hand_probs, labels, float(t))
        if (~shown).mean() <= max_rejection + 1e-9:
            best = float(round(t, 2))
    return best
