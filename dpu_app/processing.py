"""One frame through the recognition: ROI crop -> infer -> smoothing -> spelling -> overlay.

    Roi             where the guide box is in a frame ('auto', 'full', 'center:F', x,y,w,h)
    FrameProcessor  crop the guide box exactly as training crops the hand box (contract.py),
                    infer, EMA of the probabilities, "no hand", spelling, overlay; times stages
"""
from __future__ import annotations

import collections
import time

import numpy as np

from . import overlay
from .contract import NO_HAND, Preprocess, crop_to_input
from .errors import AppError
from .scoring import app_probs
from .spelling import Smoother, Speller

STAGES = ("capture", "preprocess", "infer", "overlay")


# ---------------------------------------------------------------------------- ROI
class Roi:
    """ROI spec: 'auto' (centred square, 60% of the short side; whole frame for small images),
    'full', 'center:F' (centred square, fraction F of the short side), 'x,y,w,h' in pixels, or
    'x,y,w,h' as fractions of the frame (all values <= 1 with a decimal point)."""

    def __init__(self, spec: str = "auto", multiple: int = 28):
        self.spec = spec.strip().lower()
        self.multiple = max(1, multiple)
        self._cache: dict = {}
        self._parsed = self._parse(self.spec)

    @staticmethod
    def _parse(spec: str):
        if spec in ("auto", "full"):
            return (spec,)
        if spec.startswith("center"):
            try:
                f = float(spec.split(":", 1)[1]) if ":" in spec else 0.6
            except ValueError:
                f = -1
            if not 0 < f <= 1:
                raise AppError(f"--roi {spec}: the centre fraction must be in (0, 1], e.g. center:0.6")
            return ("center", f)
        parts = spec.split(",")
        if len(parts) != 4:
            raise AppError(f"--roi {spec}: give auto, full, center:0.6, or x,y,w,h")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise AppError(f"--roi {spec}: x,y,w,h must be numbers") from None
        frac = all("." in p for p in parts) and all(0 <= v <= 1 for v in vals)
        if frac:
            if vals[2] <= 0 or vals[3] <= 0:
                raise AppError(f"--roi {spec}: the box is empty (w and h must be above 0)")
            return ("frac", *vals)
        if any(v != int(v) or v < 0 for v in vals):
            raise AppError(f"--roi {spec}: pixel x,y,w,h must be whole numbers >= 0 (or all "
                           f"fractions like 0.25,0.2,0.5,0.6)")
        if vals[2] < 2 or vals[3] < 2:
            raise AppError(f"--roi {spec}: the box is empty (w and h must be at least 2 pixels)")
        return ("px", *[int(v) for v in vals])

    def resolve(self, h: int, w: int) -> tuple[int, int, int, int]:
        key = (h, w)
        r = self._cache.get(key)
        if r is not None:
            return r
        p = self._parsed
        if p[0] == "full" or (p[0] == "auto" and min(h, w) < 160):
            r = (0, 0, w, h)
        elif p[0] in ("auto", "center"):
            f = 0.6 if p[0] == "auto" else p[1]
            side = max(1, int(round(min(h, w) * f)))
            if p[0] == "auto" and side >= 2 * self.multiple:
                # a whole multiple of the model input: INTER_AREA then averages exact pixel
                # blocks, and takes OpenCV's fast integer-ratio path (0.02 ms instead of 0.2)
                side -= side % self.multiple
            r = ((w - side) // 2, (h - side) // 2, side, side)
        elif p[0] == "frac":
            _, fx, fy, fw, fh = p
            r = (int(round(fx * w)), int(round(fy * h)), int(round(fw * w)), int(round(fh * h)))
        else:
            r = p[1:]
        x, y, rw, rh = r
        x2, y2 = min(w, x + rw), min(h, y + rh)
        if x >= w or y >= h or x2 - x < 2 or y2 - y < 2:
            raise AppError(f"--roi {self.spec} lies outside the {w}x{h} frame: pick a box inside it")
        r = (x, y, x2 - x, y2 - y)
        self._cache[key] = r
        return r


# ---------------------------------------------------------------------------- processing
class StageTimer:
    """Per-stage milliseconds: last value, exponential average (display) and totals (summary)."""

    def __init__(self, alpha: float = 0.1):
        self.alpha = alpha
        self.avg: dict[str, float] = {}
        self.total: dict[str, float] = collections.defaultdict(float)
        self.count: dict[str, int] = collections.defaultdict(int)

    def add(self, stage: str, ms: float) -> None:
        a = self.avg.get(stage)
        self.avg[stage] = ms if a is None else a + self.alpha * (ms - a)
        self.total[stage] += ms
        self.count[stage] += 1

    def means(self) -> dict[str, float]:
        return {k: round(self.total[k] / self.count[k], 4) for k in self.total if self.count[k]}


class FpsMeter:
    def __init__(self, window: int = 30):
        self.times: collections.deque = collections.deque(maxlen=window)

    def tick(self, t: float) -> float:
        self.times.append(t)
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(1e-9, self.times[-1] - self.times[0])


class FrameProcessor:
    """One frame through preprocess, infer, smoothing, spelling and overlay, timed.

    Subclasses change only how a frame becomes the labels' probabilities (`_probs`); the
    decision, the state, spelling and the overlay are this class's, once."""

    def __init__(self, backend, roi: Roi, threshold: float = 0.5, smooth: float = 0.5,
                 stable: int = 8, gap: int = 15, draw: bool = True, flip: bool = False,
                 mirror: bool = False):
        self.backend = backend
        self.pp: Preprocess = backend.preprocess
        self._x = np.empty((1, *backend.input_shape), np.float32)
        self._setup(backend.labels, roi, threshold, smooth, stable, gap, draw, flip, mirror)

    def _setup(self, labels, roi, threshold, smooth, stable, gap, draw, flip, mirror) -> None:
        self.labels = labels
        self.roi = roi
        self.threshold = threshold
        self.smoother = Smoother(smooth)
        self.speller = Speller(stable=stable, gap=gap)
        self.timer = StageTimer()
        self.fps = FpsMeter()
        self.draw = draw
        self.panel = True          # False: only the guide box (the web page shows the state)
        self.flip = flip
        self.mirror = mirror       # average with the mirror image's prediction (the manifest's)
        self._nothing = self.labels.index(NO_HAND) if NO_HAND in self.labels else -1
        self.frames = 0
        self.dropped = 0

    def _probs(self, image: np.ndarray, roi) -> tuple:
        """(probabilities over the labels, {stage: ms}, extra state, overlay thumbnail)."""
        t0 = time.perf_counter()
        crop_to_input(image, roi, self.pp, out=self._x[0])
        t1 = time.perf_counter()
        probs = app_probs(self.backend.infer, self._x, self.mirror)[0]
        t2 = time.perf_counter()
        return probs, {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3}, {}, self._x[0]

    def process(self, image: np.ndarray, capture_ms: float = 0.0) -> tuple[dict, np.ndarray | None]:
        import cv2
        if self.flip:
            image = cv2.flip(image, 1)
        roi = self.roi.resolve(*image.shape[:2])
        probs, stage_ms, extra, thumb = self._probs(image, roi)
        t2 = time.perf_counter()
        sm = self.smoother.update(probs)
        order = np.argsort(sm)[::-1][:3]
        top = int(order[0])
        conf = float(sm[top])
        # one decision for every view (dpu_app/scoring.py): a letter only when a letter wins
        # and reaches the threshold; otherwise "no hand", and nothing is spelled
        letter = self.labels[top] if conf >= self.threshold and top != self._nothing else None
        added = self.speller.update(letter)
        self.frames += 1
        fps = self.fps.tick(t2)
        self.timer.add("capture", capture_ms)
        for k, v in stage_ms.items():
            self.timer.add(k, v)
        state = {
            "letter": letter,
            "confidence": round(conf, 4),
            "top3": [[self.labels[int(i)], round(float(sm[int(i)]), 4)] for i in order],
            "text": self.speller.text,
            "fps": round(fps, 2),
            "ms": {k: round(v, 3) for k, v in self.timer.avg.items()},
            "frames": self.frames,
            "dropped": self.dropped,
            "threshold": self.threshold,
            "raw_letter": self.labels[int(np.argmax(probs))],
            "added": added,
            **extra,
        }
        canvas = None
        if self.draw:
            canvas = overlay.draw(image, roi, state, thumb, self.speller.progress,
                                  panel=self.panel)
            t3 = time.perf_counter()
            self.timer.add("overlay", (t3 - t2) * 1e3)
            state["ms"]["overlay"] = round(self.timer.avg["overlay"], 3)
        return state, canvas


class HandFrameProcessor(FrameProcessor):
    """FrameProcessor for the hand pipeline (dpu_app/hands.py): the guide box is the hand box
    of the first read (its square is `guide_scale` times larger); once a hand is present the
    next frame starts from this frame's re-cut square with one network pass (tracking); when
    presence drops it falls back to the guide box with `passes` passes, trying the guide
    square's other sizes (`retry_scales`) on successive frames until a hand is found."""

    def __init__(self, pipe, roi: Roi, threshold: float = 0.5, smooth: float = 0.5,
                 stable: int = 8, gap: int = 15, draw: bool = True, flip: bool = False):
        self.backend = None
        self.pipe = pipe
        self._setup(list(pipe.labels), roi, threshold, smooth, stable, gap, draw, flip,
                    pipe.mirror)
        self.track = None             # the square the next frame starts from, or None
        self._retry = 0
        self.passes_run = 0

    def reset(self) -> None:
        self.track = None

    def _read(self, image: np.ndarray, roi) -> tuple:
        from . import hands as H
        x, y, w, h = roi
        c = self.pipe.c
        if self.track is not None:
            start, passes = self.track, 1
        else:
            scales = (1.0,) + tuple(c.retry_scales)
            s = scales[self._retry % len(scales)]
            start = H.guide_square((x, y, x + w, y + h), c.guide_scale * s)
            passes = c.passes
        hand = self.pipe.read([image], [start], passes=passes, batch=1)[0]
        present = hand.presence >= c.presence
        tracked = self.track is not None and present
        if present:
            self.track = hand.next_square
            self._retry = 0
        else:
            self.track = None
            self._retry += 1
        self.passes_run += passes
        return hand, tracked, passes

    def _probs(self, image: np.ndarray, roi) -> tuple:
        t0 = time.perf_counter()
        hand, tracked, passes = self._read(image, roi)
        t1 = time.perf_counter()
        probs = self.pipe.probs([hand])[0]
        t2 = time.perf_counter()
        present = hand.presence >= self.pipe.c.presence

        def points(pts):
            return [[round(float(a), 1), round(float(b), 1)] for a, b in pts] if present else []
        extra = {"hand": {"presence": round(hand.presence, 4), "tracked": tracked,
                          "passes": passes, "landmarks": points(hand.landmarks[:, :2]),
                          "square": points(hand.square.corners())}}
        return probs, {"network": (t1 - t0) * 1e3, "classifier": (t2 - t1) * 1e3}, extra, None
