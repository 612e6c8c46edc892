"""Train the letter classifier of the hand pipeline: a small MLP on the landmark features
(dpu_app.hands.features), in numpy, deterministic for a seed. The app runs it with numpy
(dpu_app.hands.LetterClassifier), on the board too.

Augmentation suits landmarks, not pixels: every training hand also as its mirror image
(people sign with either hand), and copies rotated in the image plane, stretched
horizontally and jittered by a little noise (another person's hand, another camera angle).
"""
from __future__ import annotations

import numpy as np

from dpu_app import hands as H
from dpu_app.contract import softmax


def augment(lm: np.ndarray, rng, copies: int, rotation_deg: float, aspect: float,
            noise: float) -> np.ndarray:
    """`copies` augmented versions of landmarks (N, 21, 3) in image pixels."""
    out = []
    n = len(lm)
    base = lm - lm[:, :1]
    size = np.sqrt((base[..., :2] ** 2).sum(-1)).max(-1)
    for _ in range(copies):
        a = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, n))
        c, s = np.cos(a)[:, None], np.sin(a)[:, None]
        sx = np.exp(rng.uniform(-aspect, aspect, n))[:, None]
        x, y = base[..., 0] * sx, base[..., 1]
        moved = base.copy()
        moved[..., 0] = c * x - s * y
        moved[..., 1] = s * x + c * y
        moved += rng.normal(0, 1, moved.shape) * (noise * size)[:, None, None]
        out.append(moved)
    return np.concatenate(out) if out else np.zeros((0, H.N_LANDMARKS, 3))


def training_set(lm: np.ndarray, y: np.ndarray, ccfg, seed: int):
    """Features and labels: the hands, their mirror images, and augmented copies of both."""
    rng = np.random.default_rng(seed)
    mirrored = H.mirror_landmarks(lm)
    parts, labels = [lm, mirrored], [y, y]
    for src in (lm, mirrored):
        parts.append(augment(src, rng, ccfg.augment_copies, ccfg.rotation_deg, ccfg.aspect,
                             ccfg.noise))
        labels.append(np.tile(y, ccfg.augment_copies))
    return H.features(np.concatenate(parts)), np.concatenate(labels)


def fit(x: np.ndarray, y: np.ndarray, n_classes: int, ccfg, seed: int) -> list:
    """An MLP (ccfg.hidden ReLU layers) fitted by Adam with cosine decay on cross-entropy plus
    L2; returns [(W, b), ...] as float32."""
    rng = np.random.default_rng(seed)
    dims = [x.shape[1], *ccfg.hidden, n_classes]
    ws = [rng.normal(0, np.sqrt(2.0 / dims[i]), (dims[i], dims[i + 1])).astype(np.float32)
          for i in range(len(dims) - 1)]
    bs = [np.zeros(d, np.float32) for d in dims[1:]]
    params = ws + bs
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    x = x.astype(np.float32)
    batch = min(ccfg.batch_size, len(x))
    for t in range(1, ccfg.steps + 1):
        idx = rng.integers(0, len(x), batch)
        acts = [x[idx]]
        h = acts[0]
        for i in range(len(ws)):
            h = h @ ws[i] + bs[i]
            if i < len(ws) - 1:
                h = np.maximum(h, 0)
            acts.append(h)
        g = softmax(h)
        g[np.arange(batch), y[idx]] -= 1
        g /= batch
        gw, gb = [None] * len(ws), [None] * len(ws)
        for i in reversed(range(len(ws))):
            gw[i] = acts[i].T @ g + ccfg.weight_decay * ws[i]
            gb[i] = g.sum(0)
            if i > 0:
                g = (g @ ws[i].T) * (acts[i] > 0)
        lr = ccfg.lr * 0.5 * (1 + np.cos(np.pi * t / ccfg.steps))
        for j, grad in enumerate(gw + gb):
            m1[j] = 0.9 * m1[j] + 0.1 * grad
            m2[j] = 0.999 * m2[j] + 0.001 * grad * grad
            params[j] -= lr * (m1[j] / (1 - 0.9 ** t)) / (np.sqrt(m2[j] / (1 - 0.999 ** t)) + 1e-8)
    return list(zip(ws, bs))


def train_classifier(lm: np.ndarray, y: np.ndarray, letters: list, ccfg, seed: int
                     ) -> H.LetterClassifier:
    x, yy = training_set(lm, y, ccfg, seed)
    return H.LetterClassifier(fit(x, yy, len(letters), ccfg, seed), letters)
