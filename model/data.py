"""Training data: Sign Language MNIST, real photos of hands, and "no hand" crops.

Formats and their checks are the app's (dpu_app/datasets.py: one parser for the trainer and the
app); what a crop of a hand looks like to the model is the app's too (dpu_app/contract.py:
`hand_square`, `crop_square`, `crop_to_input`). This module turns them into arrays:

- **Sign Language MNIST** (Kaggle CSV): 28x28 grey crops of hands, resized to the model's input
  the way the app resizes a crop (INTER_AREA). Classes 0..23 are the letters A..Y without J
  (raw Kaggle labels are alphabet positions; indexing the 24-letter list with them, as the
  original tutorial does, shows every letter from K on one off).
- **Photos** (folders per letter with hand boxes): split **by source photo** (the variants of one
  photo never land on both sides). Training keeps a *context crop* per photo: the app's hand
  square widened to `CONTEXT` times its side, so augmentation can move, scale and rotate the
  crop box around the hand. Validation keeps exactly what the app would feed the model for that
  hand box.
- **No hand** (class `nothing`, when `data.no_hand`): squares from the photos that do not touch
  the hand box (training photos for training, validation photos for validation), photos in a
  `nothing/` folder, and synthetic empty frames made during training.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpu_app import datasets as DS
from dpu_app.contract import (HAND_MARGIN, KAGGLE_SIZE, LETTERS, NO_HAND, Preprocess,
                              crop_square, hand_square)
from toolchain.config import REPO_ROOT, resolve_path
from toolchain.errors import DataError

NUM_LETTERS = len(LETTERS)                                     # 24
CONTEXT = 2.0            # training context crop: this many times the hand box's long side
SHIPPED_DIR = REPO_ROOT / "data" / "sign_mnist"
# sha256 of the *decompressed* CSVs (see data/sign_mnist/README.md).
SHIPPED_SHA256 = {
    "sign_mnist_train.csv.gz": "4c2897f19fab2b0ae2a7e4fa82e969043315d9f3a1a9cc0948b576bf1189a7e5",
    "sign_mnist_test.csv.gz": "0e9d67bae23e67f40728e0b63bf15ad4bd5175947b8a9fac5dd9f17ce133c47b",
}
_RAW_TO_CLASS = np.full(26, -1, dtype=np.int64)
_RAW_TO_CLASS[list(DS.RAW_LABELS)] = np.arange(NUM_LETTERS)


def class_names(no_hand: bool) -> tuple:
    """The model's outputs in order: the 24 letters, then `nothing` when it has that class."""
    return LETTERS + ((NO_HAND,) if no_hand else ())


def raw_to_class(raw) -> np.ndarray:
    """Map Kaggle labels (0..24, no 9) to contiguous classes 0..23."""
    raw = np.asarray(raw, dtype=np.int64)
    bad = (raw < 0) | (raw > 24) | (raw == 9)
    if bad.any():
        raise ValueError(f"label {int(raw[bad][0])} is not a Sign Language MNIST label")
    return _RAW_TO_CLASS[raw]


def preprocess_for(size: int, color: str = "grey") -> Preprocess:
    """The app's preprocessing for a square input of `size` pixels, grey or BGR
    (model.color)."""
    return Preprocess(width=size, height=size, color="bgr" if color == "bgr" else "gray")


def to_input_size(pixels: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, h, w[, 3]) images -> uint8 (N, size, size[, 3]), resized as the app resizes
    a crop."""
    import cv2
    if pixels.shape[1:3] == (size, size):
        return pixels
    out = np.empty((len(pixels), size, size) + pixels.shape[3:], np.uint8)
    for i, p in enumerate(pixels):
        out[i] = cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA)
    return out


def with_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Grey uint8 (N, H, W) as the model's channels: unchanged for 1, equal B, G, R for 3
    (what the app's cvtColor(GRAY2BGR) does to a grey frame)."""
    if channels == 3 and pixels.ndim == 3:
        return np.repeat(pixels[..., None], 3, axis=3)
    return pixels


def as_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) grey or (N, H, W, 3) BGR -> the model input, float32 (N, H, W, C) =
    pixels / 255 (the app's)."""
    x = pixels.astype(np.float32) / 255.0
    return x[..., None] if x.ndim == 3 else x


@dataclass
class Dataset:
    """Images at the model's input size (uint8) with class indices."""
    x: np.ndarray              # uint8 (N, S, S) grey, or (N, S, S, 3) BGR (model.color)
    y: np.ndarray              # int64 class indices
    path: str
    sha256: str

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "Dataset":
        return Dataset(self.x[idx], self.y[idx], self.path, self.sha256)

    def float(self) -> np.ndarray:
        return as_float(self.x)

    def with_channels(self, channels: int) -> "Dataset":
        return Dataset(with_channels(self.x, channels), self.y, self.path, self.sha256)


# ============================================================================ Sign MNIST
def load_csv(path, size: int = KAGGLE_SIZE, verify_shipped: bool = True) -> Dataset:
    """A Kaggle-format CSV at input size `size`; the shipped copies are checked by sha256."""
    path = Path(path)
    try:
        data = DS.load_kaggle_csv(str(path))
    except DS.AppError as e:
        msg = str(e)
        if "file not found" in msg:
            msg += (" (data.train_csv / data.test_csv name it; restore the shipped copy with "
                    "'git checkout -- data/sign_mnist')")
        raise DataError(msg) from None
    if verify_shipped and path.resolve().parent == SHIPPED_DIR.resolve():
        want = SHIPPED_SHA256.get(path.name)
        if want is not None and want != data.sha256:
            raise DataError(f"{path}: sha256 {data.sha256[:12]}... does not match the shipped "
                            f"copy's {want[:12]}...; the file is damaged: restore it with "
                            f"'git checkout -- data/sign_mnist/{path.name}'")
    return Dataset(to_input_size(data.pixels, size), raw_to_class(data.raw), str(path),
                   data.sha256)


def stratified_indices(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, picked) with `fraction` of every class picked, seeded."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        picked.append(idx[: int(round(len(idx) * fraction))])
    picked = np.sort(np.concatenate(picked)) if picked else np.array([], dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[picked] = False
    return np.flatnonzero(mask), picked


def load_test_set(data_cfg, size: int) -> Dataset:
    """The test CSV the config names, cut to data.test_limit rows when set."""
    test = load_csv(resolve_path(data_cfg.test_csv), size)
    if data_cfg.test_limit and data_cfg.test_limit < len(test):
        test = test.subset(np.arange(data_cfg.test_limit))
    return test


def load_kaggle_splits(data_cfg, seed: int, size: int) -> tuple[Dataset, Dataset]:
    """(train, val) from the train CSV: stratified, seeded; data.train_limit rows at most."""
    train = load_csv(resolve_path(data_cfg.train_csv), size)
    if data_cfg.train_limit and data_cfg.train_limit < len(train):
        _, keep = stratified_indices(train.y, data_cfg.train_limit / len(train), seed + 1)
        train = train.subset(keep)
    if data_cfg.val_fraction > 0:
        tr, va = stratified_indices(train.y, data_cfg.val_fraction, seed)
    else:
        tr, va = np.arange(len(train)), np.array([], dtype=np.int64)
    return train.subset(tr), train.subset(va)


# ============================================================================ photos
@dataclass
class PhotoTrain:
    """Training photos as context crops: the hand square sits in the middle at scale 1."""
    ctx: np.ndarray            # uint8 (N, C, C[, 3]), C = context_size(S)
    y: np.ndarray              # class indices
    box: np.ndarray            # float32 (N, 2): the hand box's w, h as fractions of the context
    sources: list


@dataclass
class PhotoSets:
    train: PhotoTrain
    val: Dataset               # hand crops exactly as the app makes them
    bg_train: np.ndarray       # uint8 (M, C, C[, 3]) no-hand context crops (training photos)
    bg_val: Dataset            # no-hand crops at input size (validation photos)
    folders: list = field(default_factory=list)     # [{path, photos, sha256}]
    val_sources: int = 0
    val_files: list = field(default_factory=list)   # the validation photos, as configured

    @property
    def sha256(self) -> str:
        import hashlib
        return hashlib.sha256("".join(f["sha256"] for f in self.folders).encode()).hexdigest()


def context_size(size: int) -> int:
    """Side of the stored context crop: the hand square (margin HAND_MARGIN) is `size` pixels
    wide in it, so a crop at zoom 1 is a 1:1 copy."""
    return int(math.ceil(size * CONTEXT / HAND_MARGIN))


def _as_color(img: np.ndarray, color: str) -> np.ndarray:
    """A BGR photo as the model sees it: grey, or BGR (a grey photo as equal B, G, R)."""
    import cv2
    if color == "bgr":
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img


def _context_crop(grey: np.ndarray, box, csize: int) -> tuple[np.ndarray, tuple]:
    import cv2
    x, y, side = hand_square(box)
    big = side * CONTEXT / HAND_MARGIN
    cx, cy = x + side / 2, y + side / 2
    crop = crop_square(grey, cx - big / 2, cy - big / 2, big)
    bw, bh = (box[2] - box[0]) / big, (box[3] - box[1]) / big
    return cv2.resize(crop, (csize, csize), interpolation=cv2.INTER_AREA), (bw, bh)


def _squeeze(pix: np.ndarray) -> np.ndarray:
    """(S, S, 1) grey -> (S, S); (S, S, 3) BGR unchanged."""
    return pix[:, :, 0] if pix.shape[2] == 1 else pix


@dataclass
class PhotoSelection:
    """Which configured photos are validation, which train, which sit out (no pixels read)."""
    photos: list               # dpu_app.datasets.Photo, after data.photo_limit
    names: list                # each as configured: "<folder>/<rel>"
    folders: list              # [{path, photos, sha256}]
    val: list                  # indices of the validation photos (split by source photo)
    unused: set                # indices of training photos left out (data.photo_train_share)

    def training(self) -> list:
        """The photos training sees."""
        val = set(self.val)
        return [p for i, p in enumerate(self.photos) if i not in val and i not in self.unused]


def select_photos(data_cfg, seed: int, no_hand: bool = True) -> PhotoSelection | None:
    """Scan every configured photo folder and split it by source photo, seeded, as
    `load_photos` trains on it. None when no folder is configured."""
    if not data_cfg.photos:
        return None
    rng = np.random.default_rng(seed + 11)
    folders, photos, names_cfg = [], [], []
    for d in data_cfg.photos:
        root = resolve_path(d)
        try:
            pf = DS.scan_photo_folder(str(root))
        except DS.AppError as e:
            raise DataError(str(e)) from None
        if pf.count(NO_HAND) and not no_hand:
            raise DataError(f"{root}/{NO_HAND}: photos without a hand need data.no_hand=true "
                            f"(the model's 'nothing' class)")
        folders.append({"path": str(d), "photos": len(pf.photos), "sha256": pf.sha256})
        photos += pf.photos
        names_cfg += [f"{str(d).rstrip('/')}/{p.rel}" for p in pf.photos]
    if data_cfg.photo_limit and data_cfg.photo_limit < len(photos):
        keep = sorted(rng.choice(len(photos), data_cfg.photo_limit, replace=False))
        photos = [photos[i] for i in keep]
        names_cfg = [names_cfg[i] for i in keep]
    tr_idx, va_idx = DS.split_by_source(photos, data_cfg.photo_val_fraction, seed + 3)
    unused = set()
    if data_cfg.photo_train_share < 1.0:       # a learning-curve point: fewer training sources
        sub = [photos[i] for i in tr_idx]
        _, dropped = DS.split_by_source(sub, 1.0 - data_cfg.photo_train_share, seed + 5)
        unused = {tr_idx[j] for j in dropped}
    return PhotoSelection(photos, names_cfg, folders, va_idx, unused)


def load_photos(data_cfg, seed: int, size: int, no_hand: bool,
                color: str = "grey") -> PhotoSets | None:
    """Every configured photo folder, split by source photo, as training context crops,
    validation crops (the app's) and no-hand crops. None when no folder is configured."""
    import cv2
    sel = select_photos(data_cfg, seed, no_hand)
    if sel is None:
        return None
    names = class_names(no_hand)
    csize = context_size(size)
    pp = preprocess_for(size, color)
    photos, names_cfg, folders, va_idx, unused = (sel.photos, sel.names, sel.folders, sel.val,
                                                  sel.unused)
    val_set = set(va_idx)
    ctx, ys, boxes, srcs = [], [], [], []
    bg_tr, vx, vy, bg_va = [], [], [], []
    for i, p in enumerate(photos):
        try:
            img = DS.read_photo(p)
        except DS.AppError as e:
            raise DataError(str(e)) from None
        h, w = img.shape[:2]
        grey = _as_color(img, color)           # grey, or BGR for a colour model
        n_bg = data_cfg.background_crops if no_hand else 0
        if i in val_set:                       # exactly what the app would feed the model
            hand, bgs = DS.photo_inputs(p, grey, pp, n_bg)
            if hand is not None:
                vx.append(_squeeze(hand)), vy.append(names.index(p.label))
            bg_va += [_squeeze(b) for b in bgs]
            continue
        if i in unused:
            continue
        if p.label != NO_HAND:
            c, b = _context_crop(grey, DS.box_pixels(p, w, h), csize)
            ctx.append(c), ys.append(names.index(p.label)), boxes.append(b)
            srcs.append(p.source)
        for (x, y, s) in DS.background_squares(p, w, h, n_bg):
            bg_tr.append(cv2.resize(crop_square(grey, x, y, s), (csize, csize),
                                    interpolation=cv2.INTER_AREA))
    if not ctx:
        raise DataError(f"photo folders {', '.join(data_cfg.photos)}: no training photos of "
                        f"hands left after the validation split")
    nothing = names.index(NO_HAND) if no_hand else -1
    tail = (3,) if color == "bgr" else ()
    empty = np.zeros((0, size, size) + tail, np.uint8)
    return PhotoSets(
        train=PhotoTrain(np.stack(ctx), np.array(ys, np.int64), np.array(boxes, np.float32),
                         srcs),
        val=Dataset(np.stack(vx) if vx else empty, np.array(vy, np.int64), "photos", ""),
        bg_train=np.stack(bg_tr) if bg_tr else np.zeros((0, csize, csize) + tail, np.uint8),
        bg_val=Dataset(np.stack(bg_va) if bg_va else empty,
                       np.full(len(bg_va), nothing, np.int64), "photos", ""),
        folders=folders, val_sources=len({photos[i].source for i in va_idx}),
        val_files=[names_cfg[i] for i in va_idx])


def trained_photos_in(data_cfg, seed: int, no_hand: bool, photos: list) -> int:
    """How many of `photos` (a scanned folder's) have the bytes of a photo this config trains
    on: scoring those says little about unseen hands."""
    import hashlib

    def digest(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).digest()

    sel = select_photos(data_cfg, seed, no_hand)
    training = sel.training() if sel else []
    sizes = {os.path.getsize(p.path) for p in training}
    maybe = [p for p in photos if os.path.getsize(p.path) in sizes]  # hash only what could match
    if not maybe:
        return 0
    trained = {digest(p.path) for p in training}
    return sum(digest(p.path) in trained for p in maybe)
