"""The hand pipeline: one set of rules for training, evaluation and the live app.

No palm detector (it is not DPU material). A hand is read in passes of one landmark network:

    guide square  -> cut a 224 px square (the camera's BGR, no colour conversion)
                  -> landmark network (DPU on the board, TFLite/TF on a PC): 21 landmarks,
                     hand presence, handedness
                  -> a rotated square re-cut from the landmarks (MediaPipe's own
                     landmarks-to-ROI rule: wrist -> middle of the index, middle and ring
                     knuckles points up, the box of 12 palm/finger-base landmarks in that
                     frame, shifted up by 0.1 of its height, squared on its long side,
                     x2.0)
                  -> the network again on that square (`passes` in all)
                  -> letter classifier on the landmarks (numpy) -> a letter, or "no hand"

In live video the next frame starts from this frame's re-cut square (tracking: one pass a
frame) and falls back to the guide box when presence drops.

The network is any callable `net(crops)` taking uint8 BGR crops (N, 224, 224, 3) and
returning raw outputs (N, 65): 63 landmark values (x, y, z per landmark, in crop pixels),
then the presence and handedness logits (the sigmoids run here, so the whole network is
DPU-supported). numpy and cv2 only: this runs on the board.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import AppError

NET_SIZE = 224                     # the landmark network's input side
N_LANDMARKS = 21
RAW_WIDTH = 3 * N_LANDMARKS + 2    # landmarks, presence logit, handedness logit
# The deployed network's outputs are scaled to fit int8 (one output tensor, one fix point):
# x, y as (pixels - 112) / 112, z as z / 112, the two logits / 16 (model/handnet.py folds
# these into its last Dense layer; `decode` undoes them).
LM_SCALE = NET_SIZE / 2
LOGIT_SCALE = 16.0
# Pixels go in as pixel / 258, not / 255: [0, 0.988] fits int8 at fix point 7 (1/128 steps;
# the quantizer's non-overflow rule needs 255 * scale * 128 <= 127); 255/255 = 1.0 would need
# fix point 6 and halve the input's precision on the DPU. The network's first convolution is
# scaled by 258/255 to match (model/hand_train.py).
INPUT_SCALE = 1.0 / 258.0


def to_input(crops: np.ndarray) -> np.ndarray:
    """uint8 crops -> the network's float input."""
    return crops.astype(np.float32) * np.float32(INPUT_SCALE)
ROI_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)     # MediaPipe's landmarks-to-ROI
SKELETON = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10),
            (10, 11), (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17),
            (17, 18), (18, 19), (19, 20))


@dataclass(frozen=True)
class Square:
    """A square of the image the network reads: centre (cx, cy) and side in pixels, and its
    rotation in radians (0: upright; positive turns the square's 'up' clockwise)."""
    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def corners(self) -> np.ndarray:
        """The 4 corners (top-left, top-right, bottom-right, bottom-left of the crop) in image
        pixels, for drawing."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        h = self.side / 2
        pts = np.array([[-h, -h], [h, -h], [h, h], [-h, h]], np.float64)
        rot = np.array([[c, -s], [s, c]])
        return pts @ rot.T + [self.cx, self.cy]


def guide_square(box, scale: float) -> Square:
    """The upright square the first pass reads for a hand box (x0, y0, x1, y1) in pixels:
    centred on it, `scale` times its long side."""
    x0, y0, x1, y1 = box
    return Square((x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0), 0.0)


def jitter_square(box, scale: float, rng, shift: float = 0.2, size=(0.8, 1.6)) -> Square:
    """The guide square of a misplaced hand: the box's centre moved by up to +-`shift` of its
    long side in x and y, the square's side times `size` (uniform); seeded by `rng`."""
    sq = guide_square(box, scale)
    long_side = sq.side / scale
    return Square(sq.cx + rng.uniform(-shift, shift) * long_side,
                  sq.cy + rng.uniform(-shift, shift) * long_side,
                  sq.side * rng.uniform(*size), 0.0)


def _crop_to_image(sq: Square, size: int) -> np.ndarray:
    """2x3 affine: crop pixel (centre convention) -> image pixel (centre convention)."""
    k = sq.side / size
    c, s = math.cos(sq.angle), math.sin(sq.angle)
    a = np.array([[k * c, -k * s], [k * s, k * c]])
    # crop pixel u has its centre at (u + 0.5) / size of the square; image pixel i at i + 0.5
    off = np.array([sq.cx, sq.cy]) - 0.5 + a @ np.array([0.5 - size / 2, 0.5 - size / 2])
    return np.hstack([a, off[:, None]])


def cut(image: np.ndarray, sq: Square, size: int = NET_SIZE, out: np.ndarray | None = None
        ) -> np.ndarray:
    """The square's pixels as a size x size crop of the image (bilinear; black outside the
    image, as MediaPipe pads)."""
    import cv2
    m = _crop_to_image(sq, size)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if out is None:
        return cv2.warpAffine(image, m, (size, size), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    cv2.warpAffine(image, m, (size, size), dst=out, flags=flags,
                   borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out


def to_image(lm: np.ndarray, sq: Square, size: int = NET_SIZE) -> np.ndarray:
    """Landmarks (21, 3) in crop pixels -> image pixels (x, y; z scaled like x and y)."""
    k = sq.side / size
    c, s = math.cos(sq.angle), math.sin(sq.angle)
    u = lm[:, 0] - size / 2
    v = lm[:, 1] - size / 2
    out = np.empty_like(lm, dtype=np.float64)
    out[:, 0] = sq.cx + k * (c * u - s * v)
    out[:, 1] = sq.cy + k * (s * u + c * v)
    out[:, 2] = lm[:, 2] * k
    return out


def _norm_angle(a: float) -> float:
    return a - 2 * math.pi * math.floor((a + math.pi) / (2 * math.pi))


def hand_rotation(lm: np.ndarray) -> float:
    """MediaPipe's rotation of a hand: 0 when wrist -> knuckles points up, +pi/2 pointing
    right (image pixels, y down)."""
    x0, y0 = lm[0, 0], lm[0, 1]
    x1 = ((lm[5, 0] + lm[13, 0]) / 2 + lm[9, 0]) / 2
    y1 = ((lm[5, 1] + lm[13, 1]) / 2 + lm[9, 1]) / 2
    return _norm_angle(math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0))


def square_from_landmarks(lm: np.ndarray, scale: float = 2.0, shift_y: float = -0.1) -> Square:
    """The rotated square the next pass reads, from landmarks in image pixels (MediaPipe's
    hand_landmarks_to_rect + rect_transformation: scale 2.0, shift_y -0.1, square_long)."""
    pts = lm[list(ROI_LANDMARKS), :2].astype(np.float64)
    rot = hand_rotation(lm)
    c, s = math.cos(rot), math.sin(rot)
    centre = (pts.max(0) + pts.min(0)) / 2
    d = pts - centre
    px = d[:, 0] * c + d[:, 1] * s            # rotate by -rot
    py = -d[:, 0] * s + d[:, 1] * c
    w, h = px.max() - px.min(), py.max() - py.min()
    pcx, pcy = (px.max() + px.min()) / 2, (py.max() + py.min()) / 2
    pcy += shift_y * h
    cx = centre[0] + pcx * c - pcy * s
    cy = centre[1] + pcx * s + pcy * c
    return Square(float(cx), float(cy), float(max(w, h) * scale), float(rot))


def sane_square(sq: Square, fallback: Square, shape) -> Square:
    """`sq`, unless landmarks of no hand made it absurd (not finite, under 8 px, or far larger
    than the image): then `fallback`."""
    h, w = shape[:2]
    vals = (sq.cx, sq.cy, sq.side, sq.angle)
    if not all(math.isfinite(v) for v in vals) or not 8 <= sq.side <= 4 * max(h, w) \
            or not (-w <= sq.cx <= 2 * w and -h <= sq.cy <= 2 * h):
        return fallback
    return sq


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def decode(raw: np.ndarray, size: int = NET_SIZE):
    """Raw network outputs (N, 65) -> landmarks (N, 21, 3) in crop pixels, presence (N,),
    handedness (N,: probability of a left hand as MediaPipe names it)."""
    raw = np.asarray(raw, np.float32).reshape(len(raw), -1)
    if raw.shape[1] != RAW_WIDTH:
        raise AppError(f"the landmark network gave {raw.shape[1]} outputs, expected "
                       f"{RAW_WIDTH} (63 landmarks + presence + handedness): wrong model file")
    lm = raw[:, :63].reshape(-1, N_LANDMARKS, 3) * np.float32(LM_SCALE * size / NET_SIZE)
    lm[:, :, :2] += np.float32(size / 2)
    return (lm, sigmoid(raw[:, 63] * LOGIT_SCALE), sigmoid(raw[:, 64] * LOGIT_SCALE))


def encode(landmarks: np.ndarray, presence_logit, handedness_logit) -> np.ndarray:
    """The inverse of `decode` (the deployed network's output layout from natural units):
    for tests and for wrapping a network that gives natural units."""
    lm = np.asarray(landmarks, np.float32).reshape(-1, N_LANDMARKS, 3).copy()
    lm[:, :, :2] -= NET_SIZE / 2
    lm /= LM_SCALE
    return np.concatenate([lm.reshape(len(lm), -1),
                           np.asarray(presence_logit, np.float32).reshape(-1, 1) / LOGIT_SCALE,
                           np.asarray(handedness_logit, np.float32).reshape(-1, 1) / LOGIT_SCALE],
                          axis=1)


@dataclass
class Hand:
    """What the passes found for one image."""
    landmarks: np.ndarray          # (21, 3) image pixels
    presence: float
    handedness: float
    square: Square                 # the square of the last pass
    next_square: Square            # re-cut from the landmarks: where the next frame looks
    passes: int


def read_hands(images: list, starts: list, net, passes: int, batch: int = 32,
               size: int = NET_SIZE, roi: tuple = (2.0, -0.1), on_pass=None) -> list:
    """Run `passes` passes for many (image, start square) pairs, batched pass by pass (the
    trainer and --eval-photos). Returns one Hand per pair."""
    n = len(images)
    squares = list(starts)
    lms = np.zeros((n, N_LANDMARKS, 3))
    pres = np.zeros(n)
    handed = np.zeros(n)
    nxt = list(starts)
    buf = np.empty((batch, size, size, 3), np.uint8)
    for p in range(passes):
        for i in range(0, n, batch):
            m = min(batch, n - i)
            for j in range(m):
                cut(images[i + j], squares[i + j], size, out=buf[j])
            lm, pr, hd = decode(net(buf[:m]), size)
            for j in range(m):
                k = i + j
                lms[k] = to_image(lm[j], squares[k], size)
                pres[k], handed[k] = pr[j], hd[j]
                nxt[k] = sane_square(square_from_landmarks(lms[k], *roi), starts[k],
                                     images[k].shape)
        if on_pass:
            on_pass(p + 1)
        if p < passes - 1:
            squares = list(nxt)
    return [Hand(lms[k], float(pres[k]), float(handed[k]), squares[k], nxt[k], passes)
            for k in range(n)]


# ---------------------------------------------------------------------------- features
def features(lm: np.ndarray) -> np.ndarray:
    """What the letter classifier reads, from landmarks (..., 21, 3) in image pixels: every
    landmark relative to the wrist, divided by the hand's size (the longest wrist-to-landmark
    distance in the image plane). Upright in the image, not in the hand's frame: a letter's
    direction matters (G/H point sideways, P/Q down)."""
    lm = np.asarray(lm, np.float32)
    d = lm - lm[..., :1, :]
    size = np.sqrt((d[..., :2] ** 2).sum(-1)).max(-1)
    size = np.maximum(size, 1e-6)
    f = d / size[..., None, None]
    return f[..., 1:, :].reshape(*lm.shape[:-2], 3 * (N_LANDMARKS - 1))


def mirror_landmarks(lm: np.ndarray) -> np.ndarray:
    """The same hand seen in a mirror (x negated: only relative positions matter)."""
    out = np.array(lm, dtype=np.float32, copy=True)
    out[..., 0] = -out[..., 0]
    return out


class LetterClassifier:
    """A small MLP on `features` (numpy only): ReLU hidden layers, softmax out. Its weights
    live in an .npz beside the network: W0, b0, W1, b1, ... and `letters`."""

    def __init__(self, weights: list, letters: list):
        self.weights = [(np.asarray(w, np.float32), np.asarray(b, np.float32))
                        for w, b in weights]
        self.letters = list(letters)

    @classmethod
    def load(cls, path: str) -> "LetterClassifier":
        try:
            with np.load(path, allow_pickle=False) as z:
                n = sum(1 for k in z.files if k.startswith("W"))
                weights = [(z[f"W{i}"], z[f"b{i}"]) for i in range(n)]
                letters = [str(s) for s in z["letters"]]
        except FileNotFoundError:
            raise AppError(f"letter classifier {path} not found: it is written beside the "
                           f"network by make train; copy it with the model") from None
        except (OSError, ValueError, KeyError) as e:
            raise AppError(f"letter classifier {path} is damaged or not a classifier "
                           f"({str(e)[:120]}): run make train again") from None
        if not weights or weights[0][0].shape[0] != 3 * (N_LANDMARKS - 1) \
                or weights[-1][0].shape[1] != len(letters):
            raise AppError(f"letter classifier {path} does not fit the landmark features "
                           f"(inputs {weights[0][0].shape[0] if weights else 0}, outputs vs "
                           f"{len(letters)} letters): run make train again")
        return cls(weights, letters)

    def save_arrays(self) -> dict:
        d = {"letters": np.array(self.letters)}
        for i, (w, b) in enumerate(self.weights):
            d[f"W{i}"], d[f"b{i}"] = w, b
        return d

    def logits(self, f: np.ndarray) -> np.ndarray:
        h = np.asarray(f, np.float32)
        for i, (w, b) in enumerate(self.weights):
            h = h @ w + b
            if i < len(self.weights) - 1:
                np.maximum(h, 0, out=h)
        return h

    def probs(self, lm: np.ndarray, mirror: bool = True) -> np.ndarray:
        """Letter probabilities for landmarks (N, 21, 3); with `mirror` the mean of the hand's
        and its mirror image's (people sign with either hand)."""
        from .contract import softmax
        p = softmax(self.logits(features(lm)))
        if mirror:
            p = (p + softmax(self.logits(features(mirror_landmarks(lm))))) / 2
        return p


# ---------------------------------------------------------------------------- the pipeline
@dataclass(frozen=True)
class Constants:
    """The pipeline's constants, as the trainer wrote them into the manifest ("hands")."""
    passes: int = 3
    guide_scale: float = 1.5
    roi_scale: float = 2.0
    roi_shift: float = -0.1
    presence: float = 0.5
    retry_scales: tuple = (1.4, 0.75)     # untracked: guide square sizes tried when no hand

    @classmethod
    def from_manifest(cls, d: dict, where: str) -> "Constants":
        try:
            c = cls(passes=int(d.get("passes", 3)), guide_scale=float(d.get("guide_scale", 1.5)),
                    roi_scale=float(d.get("roi_scale", 2.0)),
                    roi_shift=float(d.get("roi_shift", -0.1)),
                    presence=float(d.get("presence", 0.5)),
                    retry_scales=tuple(float(v) for v in d.get("retry_scales", (1.4, 0.75))))
        except (TypeError, ValueError, AttributeError) as e:
            raise AppError(f"{where}: 'hands' has a bad value ({e}); run make train again"
                           ) from None
        if not (1 <= c.passes <= 6 and 0.5 <= c.guide_scale <= 8 and 0 <= c.presence <= 1):
            raise AppError(f"{where}: 'hands' values out of range (passes {c.passes}, "
                           f"guide_scale {c.guide_scale}, presence {c.presence})")
        return c


class HandPipeline:
    """The landmark network (any backend, raw outputs) + the letter classifier + the
    constants: what --eval-photos, the live app, the trainer's reports and the ladder run."""

    def __init__(self, net, classifier: LetterClassifier, labels: list, consts: Constants,
                 mirror: bool = True):
        self.net = net
        self.classifier = classifier
        self.labels = list(labels)
        self.c = consts
        self.mirror = mirror
        missing = [x for x in classifier.letters if x not in self.labels]
        if missing:
            raise AppError(f"the letter classifier knows {''.join(missing)}, which the "
                           f"model's labels lack: classifier.npz and labels.txt are from "
                           f"different trainings")
        self._cols = [self.labels.index(x) for x in classifier.letters]

    def read(self, images: list, starts: list, passes: int | None = None,
             batch: int = 32) -> list:
        return read_hands(images, starts, self.net, passes or self.c.passes, batch=batch,
                          roi=(self.c.roi_scale, self.c.roi_shift))

    def read_boxes(self, images: list, boxes: list, batch: int = 32) -> list:
        """Still images with a guide box each (x0, y0, x1, y1): `passes` passes from the guide
        square; where no hand is present, the same again from a larger and a smaller square
        (the sizes a person misjudges), keeping the first read that finds the hand."""
        out = self.read(images, [guide_square(b, self.c.guide_scale) for b in boxes],
                        batch=batch)
        for s in self.c.retry_scales:
            miss = [i for i, h in enumerate(out) if h.presence < self.c.presence]
            if not miss:
                break
            again = self.read([images[i] for i in miss],
                              [guide_square(boxes[i], self.c.guide_scale * s) for i in miss],
                              batch=batch)
            for i, h in zip(miss, again):
                if h.presence >= self.c.presence:
                    out[i] = h
        return out

    def probs(self, found: list) -> np.ndarray:
        """The app's probabilities over the labels for each Hand (scoring.hand_probs)."""
        from .scoring import hand_probs
        if not found:
            return np.zeros((0, len(self.labels)), np.float32)
        lm = np.stack([h.landmarks for h in found])
        pres = np.array([h.presence for h in found])
        return hand_probs(self.classifier.probs(lm, self.mirror), pres, self.c.presence,
                          self.labels, cols=self._cols)
