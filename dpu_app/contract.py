"""The board contract: what the trainer, the compiler and the app must agree on.

Owned here, in the app, because the app is what runs on the board: the deploy manifest's schema,
the labels (and the "no hand" label), the preprocessing (crop, grey/colour, resize, scale), the
int8 input/output scaling. The toolchain imports these (toolchain -> app, never the reverse);
the app imports nothing from the rest of the repository, so `scp -r dpu_app` is enough on the
board, where only python3, numpy, cv2, xir and vart exist.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from .errors import AppError

LETTERS = tuple("ABCDEFGHIKLMNOPQRSTUVWXY")     # the 24 static letters (no J, Z: they move)
NO_HAND = "nothing"                             # the label of the "no hand" class
KAGGLE_SIZE = 28                                # Sign Language MNIST images: 28x28 grey
HAND_MARGIN = 1.2       # the model sees a square 1.2x the long side of the hand's box, centred


# --------------------------------------------------------------------------- the hand crop
def hand_square(box, margin: float = HAND_MARGIN) -> tuple[float, float, float]:
    """(x, y, side) of the square the model sees for a hand box (x0, y0, x1, y1) in pixels:
    centred on the box, `margin` times its long side. The app's guide box is this square: a
    hand that fills about 1/margin of the box is what training showed the model."""
    x0, y0, x1, y1 = box
    side = margin * max(x1 - x0, y1 - y0)
    return ((x0 + x1 - side) / 2, (y0 + y1 - side) / 2, side)


def crop_square(image: np.ndarray, x: float, y: float, side: float) -> np.ndarray:
    """The pixels of a square (x, y, side); where it leaves the image the border is
    replicated (a photo's hand near its edge), never stretched."""
    import cv2
    h, w = image.shape[:2]
    x0, y0 = int(round(x)), int(round(y))
    s = max(1, int(round(side)))
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return image[y0:y0 + s, x0:x0 + s]


# --------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocess:
    """How a crop becomes the model input; the defaults are the training data's (Kaggle CSV)."""
    width: int = 28
    height: int = 28
    color: str = "gray"                    # "gray" (1 channel) or "bgr"/"rgb" (3 channels)
    scale: float = 1.0 / 255.0
    resize: str = "area"                   # cv2 interpolation: area, linear, nearest, cubic
    layout: str = "NHWC"

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "color": self.color,
                "scale": self.scale, "resize": self.resize, "layout": self.layout,
                "hand_margin": HAND_MARGIN}

    @classmethod
    def for_input(cls, shape) -> "Preprocess":
        """The preprocessing for a model input (H, W, C): grey for 1 channel, BGR for 3."""
        h, w, c = (int(v) for v in shape)
        return cls(width=w, height=h, color="gray" if c == 1 else "bgr")

    @property
    def interpolation(self) -> int:
        import cv2
        return {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST,
                "cubic": cv2.INTER_CUBIC}[self.resize]

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "Preprocess":
        if not isinstance(d, dict):
            raise AppError(f"{where}: 'preprocess' must be an object, got {type(d).__name__}")
        try:
            p = cls(width=int(d.get("width", 28)), height=int(d.get("height", 28)),
                    color=str(d.get("color", "gray")).lower(), scale=float(d.get("scale", 1 / 255)),
                    resize=str(d.get("resize", "area")).lower(),
                    layout=str(d.get("layout", "NHWC")).upper())
        except (TypeError, ValueError) as e:
            raise AppError(f"{where}: 'preprocess' has a bad value ({e})") from None
        if p.color not in ("gray", "grey", "bgr", "rgb"):
            raise AppError(f"{where}: preprocess.color {p.color!r} is not gray, bgr or rgb")
        if p.color == "grey":
            p = cls(p.width, p.height, "gray", p.scale, p.resize, p.layout)
        if p.resize not in ("area", "linear", "nearest", "cubic"):
            raise AppError(f"{where}: preprocess.resize {p.resize!r} is not area, linear, "
                           f"nearest or cubic")
        if p.layout != "NHWC":
            raise AppError(f"{where}: preprocess.layout {p.layout!r} is not supported (NHWC only)")
        if not (1 <= p.width <= 4096 and 1 <= p.height <= 4096) or p.scale <= 0:
            raise AppError(f"{where}: preprocess width/height/scale out of range")
        return p


def crop_pixels(frame: np.ndarray, roi: tuple[int, int, int, int], pp: Preprocess) -> np.ndarray:
    """Crop `roi` (x, y, w, h) from a BGR or grey frame: grey (or colour), resized to the model
    input with pp's interpolation; uint8 (H, W, C)."""
    import cv2
    x, y, w, h = roi
    crop = frame[y:y + h, x:x + w]
    if crop.size == 0:
        raise ValueError(f"ROI {roi} is outside the {frame.shape[1]}x{frame.shape[0]} frame")
    if pp.channels == 1:
        if crop.ndim == 3 and crop.shape[2] == 3:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        elif crop.ndim == 3 and crop.shape[2] == 4:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGRA2GRAY)
        elif crop.ndim == 3:
            crop = crop[:, :, 0]
    else:
        if crop.ndim == 2:
            crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
        if pp.color == "rgb":
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    if crop.shape[0] != pp.height or crop.shape[1] != pp.width:
        crop = cv2.resize(crop, (pp.width, pp.height), interpolation=pp.interpolation)
    return crop.reshape(pp.height, pp.width, pp.channels)


def crop_to_input(frame: np.ndarray, roi: tuple[int, int, int, int], pp: Preprocess,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Crop `roi` (x, y, w, h) from a frame and make one model input (H, W, C) float32: the
    training data's recipe (grey, INTER_AREA to the input size, times 1/255)."""
    pix = crop_pixels(frame, roi, pp)
    if out is None:
        out = np.empty(pix.shape, np.float32)
    return scale_pixels(pix.reshape(out.shape), pp.scale, out)


def square_pixels(image: np.ndarray, square: tuple, pp: Preprocess) -> np.ndarray:
    """crop_pixels of a square (x, y, side) that may leave the image (border replicated)."""
    sq = crop_square(image, *square)
    return crop_pixels(sq, (0, 0, sq.shape[1], sq.shape[0]), pp)


def scale_pixels(pix: np.ndarray, scale: float, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 pixels -> float32 model input. A scale of 1/k is a division by k, so 1/255 gives
    bit for bit the trainer's `pixels.astype(float32) / 255.0`."""
    inv = 1.0 / scale
    if abs(inv - round(inv)) < 1e-6 * inv:
        return np.divide(pix, np.float32(round(inv)), out=out, dtype=np.float32,
                         casting="unsafe")
    return np.multiply(pix, np.float32(scale), out=out, dtype=np.float32, casting="unsafe")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32, copy=False)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def quantize_input(x: np.ndarray, fix_point: int, out: np.ndarray | None = None) -> np.ndarray:
    """Float input -> DPU int8: clip(round_half_up(x * 2**fix), -128, 127).

    The clip matters: a white pixel (1.0) at fix_point 7 is 128, which a plain astype(int8)
    wraps to -128 (the official examples do that). Half-up is the DPU's and the quantizer's
    rounding (vitis_quantizer round_mode 1, floor(x + 0.5)).
    """
    q = np.floor(x * np.float32(2.0 ** fix_point) + np.float32(0.5))
    np.clip(q, -128, 127, out=q)
    if out is None:
        return q.astype(np.int8)
    out[...] = q
    return out


def dequantize_output(q: np.ndarray, fix_point: int) -> np.ndarray:
    return q.astype(np.float32) * np.float32(2.0 ** -fix_point)


# --------------------------------------------------------------------------- labels
def load_labels(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            labels = [ln.strip() for ln in f if ln.strip()]
    except FileNotFoundError:
        raise AppError(f"labels file {path} not found: put the trainer's labels.txt beside the "
                       f"model or pass --labels FILE") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AppError(f"labels file {path} is unreadable ({e}): expected one letter a line") from None
    if not labels:
        raise AppError(f"labels file {path} is empty: expected one letter a line (24 lines)")
    if len(set(labels)) != len(labels):
        raise AppError(f"labels file {path} lists a label twice: expected each letter once")
    return labels


# --------------------------------------------------------------------------- manifest
# A manifest (schema 1) sits beside every model bundle the toolchain writes (train/, freeze/,
# quantize/: "model"; compile/: "xmodel" plus the DPU tensors) and tells the app everything it
# must agree on with training:
#   {"schema": 1, "name", "model" | "xmodel": {"file", "sha256"}, "labels": [...],
#    "labels_file": "labels.txt", "preprocess": {width, height, color, scale, resize, layout,
#    hand_margin}, "recognition": {"threshold", "no_hand_label", "mirror", "how"},
#    compile only: "input"/"output": {name, shape, dtype, fix_point}, "board", "target", ...}
# Extra keys may be added; the app ignores what it does not know.
SCHEMA = 1
MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
DEFAULT_THRESHOLD = 0.5          # a model without a manifest (no calibration known)


def make_manifest(*, model_file: str, sha256: str, labels: list, preprocess: Preprocess,
                  threshold: float, how: str = "", mirror: bool = False,
                  name: str = "signnet", xmodel: bool = False,
                  extra: dict | None = None) -> dict:
    """The manifest the app reads beside a model (see above)."""
    return {"schema": SCHEMA, "name": name,
            ("xmodel" if xmodel else "model"): {"file": model_file, "sha256": sha256},
            "labels": list(labels), "labels_file": LABELS_FILE,
            "preprocess": preprocess.to_dict(),
            "recognition": {"threshold": round(float(threshold), 4),
                            "no_hand_label": NO_HAND if NO_HAND in labels else None,
                            "mirror": bool(mirror), "how": how},
            **(extra or {})}


@dataclass
class Manifest:
    path: str
    data: dict
    xmodel_path: str | None
    labels: list[str] | None
    preprocess: Preprocess
    input_fix: int | None
    output_fix: int | None
    threshold: float | None = None
    model_path: str | None = None
    mirror: bool = False          # average each prediction with the mirror image's


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(path: str) -> Manifest:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AppError(f"manifest {path} not found: give the deploy manifest the compile stage "
                       f"wrote beside the xmodel, or leave --manifest out") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AppError(f"manifest {path} is not readable JSON ({e}); re-run the compile stage "
                       f"to rewrite it") from None
    if not isinstance(data, dict):
        raise AppError(f"manifest {path}: top level must be an object")
    schema = data.get("schema")
    if schema != 1:
        raise AppError(f"manifest {path}: schema {schema!r} is not supported (this app reads "
                       f"schema 1); update dpu_app or re-run the compile stage")
    base = os.path.dirname(os.path.abspath(path))
    xm = data.get("xmodel") or {}
    xmodel_path = None
    if isinstance(xm, dict) and xm.get("file"):
        xmodel_path = os.path.join(base, str(xm["file"]))
    hm = data.get("model") or {}
    model_path = os.path.join(base, str(hm["file"])) if isinstance(hm, dict) and hm.get("file") \
        else xmodel_path
    rec = data.get("recognition") or {}
    threshold = rec.get("threshold") if isinstance(rec, dict) else None
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
        raise AppError(f"manifest {path}: recognition.threshold {threshold!r} is not a number in "
                       f"0..1")
    labels = data.get("labels")
    if labels is not None:
        if not (isinstance(labels, list) and all(isinstance(s, str) and s for s in labels)):
            raise AppError(f"manifest {path}: 'labels' must be a list of strings")
    elif data.get("labels_file"):
        labels = load_labels(os.path.join(base, str(data["labels_file"])))
    pp = Preprocess.from_dict(data.get("preprocess", {}), f"manifest {path}")

    def fix(section):
        sec = data.get(section) or {}
        v = sec.get("fix_point") if isinstance(sec, dict) else None
        if v is None:
            return None
        try:
            return int(v)
        except (TypeError, ValueError):
            raise AppError(f"manifest {path}: {section}.fix_point {v!r} is not an integer") from None

    inp = data.get("input") or {}
    if isinstance(inp, dict) and inp.get("shape"):
        shp = list(inp["shape"])
        if len(shp) == 4 and (shp[1], shp[2]) != (pp.height, pp.width):
            raise AppError(f"manifest {path}: input shape {shp} disagrees with preprocess "
                           f"{pp.width}x{pp.height}; re-run the compile stage")
    return Manifest(path=path, data=data, xmodel_path=xmodel_path, labels=labels, preprocess=pp,
                    input_fix=fix("input"), output_fix=fix("output"),
                    threshold=None if threshold is None else float(threshold),
                    model_path=model_path, mirror=bool(rec.get("mirror", False)))


def find_manifest(model_path: str) -> str | None:
    """The deploy manifest beside a model: a *.json with schema 1 naming this model's file."""
    d = os.path.dirname(os.path.abspath(model_path))
    name = os.path.basename(model_path)
    for cand in sorted(glob.glob(os.path.join(d, "*.json"))):
        try:
            with open(cand, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if not (isinstance(data, dict) and data.get("schema") == SCHEMA):
            continue
        for key in ("xmodel", "model"):
            if isinstance(data.get(key), dict) \
                    and os.path.basename(str(data[key].get("file", ""))) == name:
                return cand
    return None


def check_manifest_model(man: Manifest, xmodel_path: str) -> None:
    """A manifest whose sha256 does not match the model is stale: refuse it."""
    want = (man.data.get("xmodel") or man.data.get("model") or {}).get("sha256")
    if not want:
        return
    got = sha256_file(xmodel_path)
    if got != want:
        raise AppError(f"manifest {man.path} is for another build of {os.path.basename(xmodel_path)}"
                       f" (sha256 {want[:12]}..., file has {got[:12]}...): copy the matching "
                       f"manifest and xmodel together, or re-run the compile stage")
