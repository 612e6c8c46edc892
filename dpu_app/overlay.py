"""The annotated picture: ROI guide box, letter, confidence, top-3, spelled text, fps, stage ms.

Drawn with plain cv2 primitives on a copy of the frame (a few hundred microseconds at 640x480).
Small frames (e.g. 28x28 test images) are enlarged first so the text stays readable.
"""
from __future__ import annotations

import math

import numpy as np

GREEN = (60, 200, 60)
AMBER = (0, 170, 255)
WHITE = (255, 255, 255)
GREY = (170, 170, 170)
DARK = (30, 30, 30)
MIN_SIDE = 480


def canvas_for(frame: np.ndarray) -> tuple[np.ndarray, int]:
    """A BGR copy of the frame to draw on, enlarged by an integer factor when it is small."""
    import cv2
    img = frame
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    else:
        img = img.copy()
    k = 1
    side = min(img.shape[:2])
    if side < MIN_SIDE:
        k = int(math.ceil(MIN_SIDE / side))
        img = cv2.resize(img, (img.shape[1] * k, img.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    return img, k


def _text(img, s, org, scale, color, thick=1):
    """Text on whatever is below; callers put a dark panel behind it (an outline would double
    the cost: putText is most of the overlay's time)."""
    import cv2
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def draw_hand(img: np.ndarray, k: int, hand: dict, color, th: int) -> None:
    """The hand's skeleton and landmarks, and the square the network read (thin)."""
    import cv2
    from .hands import SKELETON
    pts = [(int(round(x * k)), int(round(y * k))) for x, y in hand["landmarks"]]
    sq = hand.get("square")
    if sq:
        cv2.polylines(img, [np.array([[int(x * k), int(y * k)] for x, y in sq], np.int32)],
                      True, GREY, 1, cv2.LINE_AA)
    for a, b in SKELETON:
        cv2.line(img, pts[a], pts[b], WHITE, max(1, th), cv2.LINE_AA)
    for p in pts:
        cv2.circle(img, p, max(2, th + 1), color, -1, cv2.LINE_AA)


def draw(frame: np.ndarray, roi: tuple[int, int, int, int], state: dict,
         model_input: np.ndarray | None = None, progress: float = 0.0,
         show_stats: bool = True, panel: bool = True) -> np.ndarray:
    """Return the annotated canvas for one frame. `state` is the per-frame state dict (see
    processing.FrameProcessor): letter, confidence, top3, text, fps, ms. The guide box is
    always drawn (green with a letter, amber for "no hand"); `panel=False` leaves out the
    letter, top-3, text and stats, for the web viewer, whose page shows them from the same
    state (two renderings of one state would disagree for a frame)."""
    import cv2
    img, k = canvas_for(frame)
    h, w = img.shape[:2]
    s = max(0.35, min(1.5, w / 640.0))                   # font scale follows the width
    th = max(1, int(round(s * 1.5)))
    x, y, rw, rh = (v * k for v in roi)
    letter = state.get("letter")
    color = GREEN if letter else AMBER
    cv2.rectangle(img, (x, y), (x + rw - 1, y + rh - 1), color, max(2, th))
    if progress > 0 and letter:                          # how close to being spelled
        cv2.rectangle(img, (x, y + rh - 1 - max(3, th * 2)), (x + int((rw - 1) * progress),
                      y + rh - 1), color, -1)
    hand = state.get("hand") or {}
    if hand.get("landmarks"):
        draw_hand(img, k, hand, color, th)
    if not letter and not hand.get("landmarks"):         # no hand found: where to hold it
        ty = y - 6 if y - 6 > int(16 * s) else y + rh + int(16 * s)
        hint = "no hand: hold your hand in the box"
        tw = cv2.getTextSize(hint, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * s, 1)[0][0]
        cv2.rectangle(img, (x, ty - int(14 * s)), (x + tw + 8, ty + int(4 * s)), DARK, -1)
        _text(img, hint, (x + 4, ty), 0.5 * s, AMBER, 1)
    if not panel:
        return img

    # top-left panel: letter, confidence, top-3
    top3 = state.get("top3") or []
    t3 = "  ".join(f"{l} {p:.2f}" for l, p in top3[:3])
    t3w = cv2.getTextSize(t3, cv2.FONT_HERSHEY_SIMPLEX, 0.55 * s, 1)[0][0]
    cv2.rectangle(img, (0, 0), (max(int(250 * s), int(78 * s) + t3w), int(68 * s)), DARK, -1)
    big = letter if letter else "-"
    conf = float(state.get("confidence", 0.0))
    _text(img, big, (int(8 * s), int(58 * s)), 2.0 * s, color, max(2, th * 2))
    _text(img, f"{conf * 100:4.0f}%", (int(70 * s), int(30 * s)), 0.7 * s, WHITE, th)
    _text(img, t3, (int(70 * s), int(56 * s)), 0.55 * s, GREY, 1)

    # model input thumbnail, top-right
    if model_input is not None:
        mi = model_input
        if mi.ndim == 3 and mi.shape[2] == 1:
            mi = mi[:, :, 0]
        mi = np.clip(mi * 255.0, 0, 255).astype(np.uint8)
        tk = max(1, int(round(3 * s)))
        t = cv2.resize(mi, (mi.shape[1] * tk, mi.shape[0] * tk), interpolation=cv2.INTER_NEAREST)
        if t.ndim == 2:
            t = cv2.cvtColor(t, cv2.COLOR_GRAY2BGR)
        th_, tw_ = t.shape[:2]
        if th_ + 4 < h and tw_ + 4 < w:
            img[4:4 + th_, w - 4 - tw_:w - 4] = t

    # bottom band: spelled text; stats line above it
    band = int(34 * s)
    cv2.rectangle(img, (0, h - band), (w - 1, h - 1), DARK, -1)
    text = state.get("text", "")
    max_chars = max(4, int(w / (16 * s)))
    shown = text[-max_chars:] + "_"
    _text(img, shown, (int(8 * s), h - int(10 * s)), 0.8 * s, WHITE, th)
    if show_stats:
        cv2.rectangle(img, (0, h - band - int(22 * s)), (w - 1, h - band), DARK, -1)
        ms = state.get("ms") or {}
        parts = [f"{state.get('fps', 0.0):.0f} fps"]
        for key, short in (("capture", "cap"), ("preprocess", "pre"), ("infer", "inf"),
                           ("network", "net"), ("classifier", "cls"), ("overlay", "ovl")):
            if key in ms:
                parts.append(f"{short} {ms[key]:.1f}")
        _text(img, " | ".join(parts) + " ms", (int(8 * s), h - band - int(8 * s)), 0.45 * s,
              GREY, 1)
    return img
