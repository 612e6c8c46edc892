"""Score a labelled photo folder with the app's own pipeline (`--eval-photos DIR`).

Every photo goes through what the live app does to its guide box: the hand box's square
(contract.hand_square: 1.2x the box's long side, centred), grey, INTER_AREA to the model's
input, /255, the backend (TFLite/TF on a PC, the DPU on the board), softmax, and the app's
decision (scoring.decide: a letter only when a letter wins and reaches the threshold).
Photos with a hand box also give "no hand" squares away from the box, and photos in
`nothing/` are scored as backgrounds: both should read "no hand".
"""
from __future__ import annotations

import time

import numpy as np

from . import scoring
from .contract import NO_HAND, scale_pixels
from .datasets import photo_inputs, read_photo, scan_photo_folder
from .errors import AppError


def photo_arrays(root: str, labels: list, pp, backgrounds: int = 4):
    """(hand inputs uint8 (N,H,W,C), class indices (N,), background inputs uint8, folder)."""
    pf = scan_photo_folder(root, verify=True)
    missing = sorted({p.label for p in pf.photos} - set(labels) - {NO_HAND})
    if missing:
        raise AppError(f"{root}: letters {', '.join(missing)} are not among the model's labels "
                       f"({''.join(x for x in labels if len(x) == 1)}): wrong folder or model")
    hands, ys, bgs = [], [], []
    for p in pf.photos:
        img = read_photo(p)
        hand, bg = photo_inputs(p, img, pp, backgrounds if NO_HAND in labels else 0)
        if hand is not None:
            hands.append(hand)
            ys.append(labels.index(p.label))
        bgs += bg
    shape = (0, pp.height, pp.width, pp.channels)
    return (np.stack(hands) if hands else np.zeros(shape, np.uint8), np.array(ys, np.int64),
            np.stack(bgs) if bgs else np.zeros(shape, np.uint8), pf)


def _probs(backend, x_u8: np.ndarray, scale: float, mirror: bool, batch: int = 64) -> np.ndarray:
    out = np.zeros((len(x_u8), len(backend.labels)), np.float32)
    for i in range(0, len(x_u8), batch):
        x = scale_pixels(x_u8[i:i + batch], scale)
        out[i:i + len(x)] = scoring.app_probs(backend.infer, x, mirror)
    return out


def eval_photos(backend, root: str, threshold: float, mirror: bool = False,
                backgrounds: int = 4) -> dict:
    """{"photos_val": hand figures, "no_hand_val": background figures, ...} for a folder."""
    t0 = time.perf_counter()
    pp = backend.preprocess
    hands, y, bgs, pf = photo_arrays(root, backend.labels, pp, backgrounds)
    if not len(hands) and not len(bgs):
        raise AppError(f"{root}: no photos to score")
    out = {"folder": root, "photos": len(pf.photos), "threshold": threshold, "mirror": mirror,
           "photos_val": scoring.score_hands(_probs(backend, hands, pp.scale, mirror), y,
                                             backend.labels, threshold)}
    if len(bgs):
        out["no_hand_val"] = scoring.score_backgrounds(_probs(backend, bgs, pp.scale, mirror),
                                                       backend.labels, threshold)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def describe(res: dict) -> list[str]:
    """Human lines for an eval_photos result."""
    lines = []
    h = res.get("photos_val") or {}
    if h.get("images"):
        lines.append(f"{h['images']} hand crops from {res['folder']}: top-1 "
                     f"{h['top1'] * 100:.1f}%, top-3 {h['top3'] * 100:.1f}%; at threshold "
                     f"{res['threshold']:.2f} the app shows the right letter for "
                     f"{h['shown_right'] * 100:.1f}%, a wrong one for "
                     f"{h['shown_wrong'] * 100:.1f}%, 'no hand' for {h['no_hand'] * 100:.1f}%")
        worst = scoring.weakest(h["per_letter"], 5)
        lines.append("  weakest letters: " + (", ".join(f"{k} {v * 100:.0f}%" for k, v in worst)
                                              or "none below 100%")
                     + "; most confused: " + ", ".join(f"{k} x{n}" for k, n in
                                                        h["most_confused"][:5]))
    b = res.get("no_hand_val") or {}
    if b.get("images"):
        lines.append(f"{b['images']} background crops (away from the hand boxes): "
                     f"{b['no_hand'] * 100:.1f}% read as 'no hand'")
    return lines


# ---------------------------------------------------------------------------- hand pipeline
def hand_jobs(pf, labels: list, backgrounds: int, jitter_seed: int | None = None,
              guide_scale: float = 1.5):
    """(images, guide boxes, truth) for the hands and (images, squares) for the backgrounds
    of a scanned folder. With `jitter_seed`, each hand's guide box is misplaced the way a
    person misplaces a hand (hands.jitter_square: centre +-20 % of the box, size x0.8-1.6)."""
    from . import hands as H
    from .datasets import background_squares, box_pixels
    rng = np.random.default_rng(jitter_seed) if jitter_seed is not None else None
    images, boxes, ys, bg_images, bg_squares = [], [], [], [], []
    for p in pf.photos:
        img = read_photo(p)
        h, w = img.shape[:2]
        if p.label != NO_HAND:
            box = box_pixels(p, w, h)
            if rng is not None:
                sq = H.jitter_square(box, guide_scale, rng)
                half = sq.side / guide_scale / 2
                box = (sq.cx - half, sq.cy - half, sq.cx + half, sq.cy + half)
            images.append(img)
            boxes.append(box)
            ys.append(labels.index(p.label))
        for (x, y, s) in background_squares(p, w, h, backgrounds):
            bg_images.append(img)
            bg_squares.append(H.Square(x + s / 2, y + s / 2, s, 0.0))
    return images, boxes, np.array(ys, np.int64), bg_images, bg_squares


def eval_hands(pipe, root: str, threshold: float, backgrounds: int = 4,
               jitter_seed: int | None = None) -> dict:
    """`eval_photos` for the hand pipeline: every photo's hand box is the guide box, read as
    the app reads a still frame (hands.HandPipeline.read_boxes); backgrounds start from their
    own squares. Same figures and keys as eval_photos, plus presence and landmarks."""
    t0 = time.perf_counter()
    pf = scan_photo_folder(root, verify=True)
    labels = pipe.labels
    missing = sorted({p.label for p in pf.photos} - set(labels) - {NO_HAND})
    if missing:
        raise AppError(f"{root}: letters {', '.join(missing)} are not among the model's labels "
                       f"({''.join(x for x in labels if len(x) == 1)}): wrong folder or model")
    images, boxes, y, bg_images, bg_squares = hand_jobs(
        pf, labels, backgrounds if NO_HAND in labels else 0, jitter_seed, pipe.c.guide_scale)
    if not images and not bg_images:
        raise AppError(f"{root}: no photos to score")
    found = pipe.read_boxes(images, boxes) if images else []
    probs = pipe.probs(found)
    out = {"folder": root, "photos": len(pf.photos), "threshold": threshold,
           "mirror": pipe.mirror, "boxes": pf.manifest is not None,
           "photos_val": scoring.score_hands(probs, y, labels, threshold)}
    if found:
        pres = np.array([h.presence for h in found])
        out["photos_val"]["presence_below"] = round(float((pres < pipe.c.presence).mean()), 5)
    out["hands"] = found
    if bg_images:
        bg = pipe.read(bg_images, bg_squares)
        out["no_hand_val"] = scoring.score_backgrounds(pipe.probs(bg), labels, threshold)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
