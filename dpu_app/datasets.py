"""Labelled data the app (and the trainer, which imports this) reads: one parser per format.

Kaggle Sign Language MNIST CSV (`.csv` or `.csv.gz`)
    header `label,pixel1,...,pixel784`, then one image a row: a label (the letter's position
    in the alphabet from 0; 9 = J and 25 = Z never occur) and 784 grey values 0..255,
    row-major 28x28. Every fault names the file and the line.

Photo folders: one folder per letter, plus an optional manifest with the hand box
    <root>/A/*.jpg, <root>/B/*.png, ...          letters A-I, K-Y; `nothing/` for photos
                                                  without a hand (backgrounds, empty rooms)
    <root>/manifest.csv (optional)               file, letter, source_photo, variant,
                                                  bbox_x_center, bbox_y_center, bbox_width,
                                                  bbox_height (fractions of the image, YOLO
                                                  style; empty = the whole image), sha256
    Without a manifest every photo's box is the whole image and each file is its own source
    photo. With one, every image must have a row and every row an image. Every fault is one
    line naming the file (and manifest line) and what to do.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import zlib
from dataclasses import dataclass, field

import numpy as np

from .contract import KAGGLE_SIZE, LETTERS, NO_HAND
from .errors import AppError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
HEADER = ["label"] + [f"pixel{i}" for i in range(1, KAGGLE_SIZE * KAGGLE_SIZE + 1)]
RAW_LABELS = tuple(i for i in range(25) if i != 9)            # 0..24 without 9 (J)


def kaggle_letter(raw_label: int) -> str:
    """Kaggle Sign Language MNIST label = position in the alphabet (0 = A, 9 = J absent).
    (Indexing the 24-letter list with the raw label, as the original tutorial does, shows
    every letter from K on one off: raw 10 is K, but "ABCDEFGHIKLM..."[10] is L.)"""
    return chr(ord("A") + int(raw_label))


# ============================================================================ Kaggle CSV
@dataclass
class KaggleCsv:
    pixels: np.ndarray      # uint8 (N, 28, 28)
    raw: np.ndarray         # int64 (N,) Kaggle labels
    path: str
    sha256: str             # of the decompressed text

    @property
    def letters(self) -> list[str]:
        return [kaggle_letter(r) for r in self.raw]


def read_text_bytes(path: str) -> bytes:
    """The file's bytes, gunzipped for `.gz`; a missing, truncated or non-gzip file is one
    line naming the line where the readable part ends."""
    if not os.path.exists(path):
        raise AppError(f"{path}: file not found (give a Kaggle Sign Language MNIST CSV, e.g. "
                       f"data/sign_mnist/sign_mnist_test.csv.gz)")
    if os.path.isdir(path):
        raise AppError(f"{path}: is a directory, expected a .csv or .csv.gz file")
    with open(path, "rb") as f:
        raw = f.read()
    if not path.endswith(".gz"):
        return raw
    if not raw.startswith(b"\x1f\x8b"):
        raise AppError(f"{path}: not a gzip file although it ends in .gz: rename it to .csv, "
                       f"or compress it with gzip")
    out, rest = [], raw
    while rest:                                  # members one after the other, like gunzip
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(d.decompress(rest))
        except zlib.error as e:
            got = b"".join(out)
            line = got.count(b"\n") + 1
            raise AppError(f"{path}: line {line}: the gzip data is damaged after {len(got):,} "
                           f"bytes ({e}); copy or download the file again") from None
        if not d.eof:
            got = b"".join(out)
            line = got.count(b"\n") + 1
            raise AppError(f"{path}: line {line}: the gzip file is truncated (it ends in the "
                           f"middle of line {line}, after {line - 1:,} whole lines); copy or "
                           f"download it again")
        rest = d.unused_data
    return b"".join(out)


def _bad_label(path, line: int, r: int):
    why = ("J (9) needs motion and is not in the dataset" if r == 9 else
           "Z (25) needs motion and is not in the dataset" if r == 25 else
           "labels are 0..24 without 9")
    raise AppError(f"{path}: line {line}: label {r} is invalid ({why})")


def _scan_for_fault(path, lines: list[bytes]) -> None:
    """Slow path: find the first malformed row and raise one line naming it."""
    ncol = len(HEADER)
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    for i, line in enumerate(lines, start=2):
        text = line.strip(b"\r\n ")
        if not text:
            raise AppError(f"{path}: line {i}: empty line inside the data")
        cells = text.split(b",")
        if len(cells) != ncol:
            raise AppError(f"{path}: line {i}: {len(cells)} columns, expected {ncol} "
                           f"(label + 784 pixels)")
        for j, c in enumerate(cells):
            if not c.strip().isdigit():
                raise AppError(f"{path}: line {i}: column {j + 1} ({HEADER[j]}) is "
                               f"{c.decode(errors='replace')!r}, not a non-negative integer")
            v = int(c)
            if j == 0 and (v > 24 or v == 9):
                _bad_label(path, i, v)
            if j > 0 and v > 255:
                raise AppError(f"{path}: line {i}: pixel{j} = {v} is outside 0..255")


def _suspect(body: bytes) -> bool:
    """Anything but digits, commas and line ends (a sign, a dot, an exponent, a letter, a
    space, a comment) or an empty line: take the slow path that names the first fault."""
    body = body.rstrip(b"\r\n")
    return (bool(body.translate(None, b"0123456789,\r\n")) or b"\n\n" in body
            or b"\n\r\n" in body or body.startswith((b"\n", b"\r")))


def parse_kaggle_csv(path: str, content: bytes, limit: int = 0) -> KaggleCsv:
    """Validate every row of a Kaggle CSV's text; `limit` keeps the first rows only."""
    digest = hashlib.sha256(content).hexdigest()
    if not content.strip():
        raise AppError(f"{path}: line 1: file is empty, expected the header "
                       f"'label,pixel1,...,pixel784'")
    first_nl = content.find(b"\n")
    header = (content if first_nl < 0 else content[:first_nl]).strip(b"\r\n ")
    try:
        cells = header.decode("utf-8-sig").split(",")
    except UnicodeDecodeError:
        raise AppError(f"{path}: line 1: not a text CSV header: not a Kaggle Sign Language "
                       f"MNIST CSV") from None
    if cells != HEADER:
        shown = ",".join(cells[:3]) + (",..." if len(cells) > 3 else "")
        raise AppError(f"{path}: line 1: header is '{shown}' ({len(cells)} columns), expected "
                       f"'label,pixel1,...,pixel784' (785 columns): not a Kaggle Sign Language "
                       f"MNIST CSV")
    body = content[first_nl + 1:] if first_nl >= 0 else b""
    if limit:
        body = b"\n".join(body.split(b"\n", limit)[:limit])
    if not body.strip():
        raise AppError(f"{path}: line 2: no data rows after the header")
    arr = None
    if not _suspect(body):
        try:
            arr = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.int64, ndmin=2,
                             comments=None)
        except (ValueError, OverflowError):
            arr = None
        if arr is not None and (arr < 0).any():    # numpy saturates a cell too big for int64
            arr = None
    if arr is None or arr.shape[1] != len(HEADER):
        _scan_for_fault(path, body.split(b"\n"))
        raise AppError(f"{path}: could not be read as Kaggle CSV rows")
    raw = arr[:, 0]
    bad = np.flatnonzero((raw > 24) | (raw == 9))
    if bad.size:
        _bad_label(path, int(bad[0]) + 2, int(raw[bad[0]]))
    pix = arr[:, 1:]
    bad_r, bad_c = np.nonzero(pix > 255)
    if bad_r.size:
        r, c = int(bad_r[0]), int(bad_c[0])
        raise AppError(f"{path}: line {r + 2}: pixel{c + 1} = {int(pix[r, c])} is outside 0..255")
    return KaggleCsv(pixels=pix.astype(np.uint8).reshape(-1, KAGGLE_SIZE, KAGGLE_SIZE),
                     raw=raw, path=str(path), sha256=digest)


def load_kaggle_csv(path: str, limit: int = 0) -> KaggleCsv:
    """Read and validate a Kaggle Sign Language MNIST CSV (.csv or .csv.gz)."""
    path = str(path)
    return parse_kaggle_csv(path, read_text_bytes(path), limit)


# ============================================================================ photo folders
@dataclass
class Photo:
    path: str                       # the image file
    rel: str                        # its path relative to the folder (as in the manifest)
    label: str                      # a letter, or NO_HAND
    source: str                     # the source photo (variants of one photo share it)
    box: tuple | None               # (cx, cy, w, h) as fractions of the image; None = whole
    where: str = ""                 # "manifest.csv line N" for messages


@dataclass
class PhotoFolder:
    root: str
    photos: list = field(default_factory=list)
    manifest: str | None = None
    sha256: str = ""                # over the manifest (or file list) and every file's bytes

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.photos]

    def count(self, label: str) -> int:
        return sum(p.label == label for p in self.photos)


MANIFEST = "manifest.csv"
BOX_COLS = ("bbox_x_center", "bbox_y_center", "bbox_width", "bbox_height")


def _folder_label(name: str, root: str, known: tuple) -> str:
    up = name.upper()
    if name.lower() == NO_HAND:
        return NO_HAND
    if len(name) == 1 and up in known:
        return up
    hint = ("J and Z need motion and are not in this alphabet; " if up in ("J", "Z") else "")
    raise AppError(f"{os.path.join(root, name)}: '{name}' is not a letter this model knows "
                   f"({hint}letter folders are {''.join(known)}, and '{NO_HAND}' for photos "
                   f"without a hand): rename or remove the folder")


def _images_in(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTS) and not f.startswith("."))


def _parse_box(row: dict, where: str) -> tuple | None:
    vals = [(row.get(c) or "").strip() for c in BOX_COLS]
    if not any(vals):
        return None
    if not all(vals):
        raise AppError(f"{where}: give all of {', '.join(BOX_COLS)} or none (none = the whole "
                       f"image)")
    try:
        cx, cy, w, h = (float(v) for v in vals)
    except ValueError:
        raise AppError(f"{where}: the hand box {', '.join(vals)} is not four numbers "
                       f"(fractions of the image)") from None
    eps = 2e-3
    if not (w > 0 and h > 0 and cx - w / 2 >= -eps and cy - h / 2 >= -eps
            and cx + w / 2 <= 1 + eps and cy + h / 2 <= 1 + eps):
        raise AppError(f"{where}: the hand box (centre {cx:g},{cy:g}, size {w:g}x{h:g}) lies "
                       f"outside the image: boxes are fractions 0..1 of the image's width and "
                       f"height (YOLO style)")
    return (cx, cy, w, h)


def scan_photo_folder(root: str, known: tuple = LETTERS, verify: bool = True) -> PhotoFolder:
    """The photos of a folder-per-letter dataset and their boxes; checks the layout, the
    manifest and the checksums (not the pixels: see `read_photo`)."""
    root = str(root)
    if not os.path.isdir(root):
        raise AppError(f"{root}: photo folder not found (a folder with one sub-folder per "
                       f"letter, see data/asl_photos/README.md)")
    subdirs = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith((".", "_")))
    labels = {d: _folder_label(d, root, known) for d in subdirs}
    files = {}
    for d in subdirs:
        imgs = _images_in(os.path.join(root, d))
        if not imgs:
            raise AppError(f"{os.path.join(root, d)}: empty folder (no {'/'.join(IMAGE_EXTS)} "
                           f"images): add photos or remove it")
        for f in imgs:
            files[f"{d}/{f}"] = labels[d]
    if not files:
        raise AppError(f"{root}: no photos: expected one sub-folder per letter (A, B, ...) "
                       f"holding images")
    h = hashlib.sha256()
    man_path = os.path.join(root, MANIFEST)
    out = PhotoFolder(root=root)
    if os.path.isfile(man_path):
        out.manifest = man_path
        out.photos = _read_manifest(root, man_path, files, verify)
        with open(man_path, "rb") as f:
            h.update(f.read())
    else:
        for rel, label in files.items():
            out.photos.append(Photo(path=os.path.join(root, rel), rel=rel, label=label,
                                    source=rel, box=None, where=rel))
            h.update(rel.encode() + b"\0")
    for p in out.photos:
        with open(p.path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    out.sha256 = h.hexdigest()
    return out


def _read_manifest(root: str, man_path: str, files: dict, verify: bool) -> list:
    try:
        with open(man_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AppError(f"{man_path}: not a readable CSV ({e}): fix or remove it") from None
    if not rows or "file" not in rows[0]:
        raise AppError(f"{man_path}: expected a header with at least 'file' (and letter, "
                       f"source_photo, {', '.join(BOX_COLS)}, sha256)")
    photos, seen = [], set()
    for i, row in enumerate(rows, start=2):
        rel = (row.get("file") or "").strip().replace("\\", "/")
        where = f"{man_path} line {i} ({rel})"
        if not rel:
            raise AppError(f"{man_path} line {i}: empty 'file' cell")
        if rel in seen:
            raise AppError(f"{where}: the file is listed twice")
        seen.add(rel)
        path = os.path.join(root, rel)
        if rel not in files:
            if not os.path.isfile(path):
                raise AppError(f"{where}: {path} does not exist: restore the photo or delete "
                               f"its manifest row")
            raise AppError(f"{where}: the file is not in a letter folder (expected "
                           f"<LETTER>/<name>)")
        label = files[rel]
        given = (row.get("letter") or "").strip()
        if given and given.upper() != label.upper() and given.lower() != label:
            raise AppError(f"{where}: manifest says letter '{given}' but the file is in folder "
                           f"'{rel.split('/')[0]}': move the file or fix the row")
        if verify and (row.get("sha256") or "").strip():
            with open(path, "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
            if got != row["sha256"].strip():
                raise AppError(f"{where}: sha256 {got[:12]}... does not match the manifest's "
                               f"{row['sha256'].strip()[:12]}...: the file changed or is damaged"
                               f" (restore it, e.g. git checkout -- {path})")
        photos.append(Photo(path=path, rel=rel, label=label,
                            source=(row.get("source_photo") or "").strip() or rel,
                            box=_parse_box(row, where), where=where))
    missing = sorted(set(files) - seen)
    if missing:
        raise AppError(f"{os.path.join(root, missing[0])}: not listed in {man_path}"
                       + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                       + ": add a row for it (the box may be left empty = the whole image), or "
                         "keep your own photos in a folder of their own without a manifest")
    return photos


def read_photo(photo: Photo) -> np.ndarray:
    """The photo as a BGR uint8 image; an unreadable file is one line naming it."""
    import cv2
    data = np.fromfile(photo.path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None or img.size == 0:
        raise AppError(f"{photo.path}: not an image OpenCV can read (damaged, empty or not a "
                       f"JPEG/PNG): replace or remove it")
    return img


def unreadable_photos(folder: PhotoFolder) -> list:
    """The photos OpenCV cannot decode (what `read_photo` refuses), all of them, checked at
    an eighth of the size: a second for a folder, before any model is loaded."""
    import cv2
    bad = []
    for p in folder.photos:
        data = np.fromfile(p.path, dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) if data.size else None
        if img is None or img.size == 0:
            bad.append(p)
    return bad


def box_pixels(photo: Photo, width: int, height: int) -> tuple:
    """The hand box in pixels (x0, y0, x1, y1); the whole image when the photo has none."""
    if photo.box is None:
        return (0.0, 0.0, float(width), float(height))
    cx, cy, w, h = photo.box
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
            (cy + h / 2) * height)


def background_squares(photo: Photo, width: int, height: int, n: int) -> list:
    """Up to `n` squares (x, y, side), 15-50% of the short side, that do not touch the hand
    box grown by 10%: "no hand" crops. The same squares for the same photo every time (seeded
    by its file name), so the trainer, the ladder and the board score the same crops. A photo
    in the `nothing` folder has no hand anywhere."""
    import zlib
    rng = np.random.default_rng(zlib.crc32(photo.rel.encode()))
    if photo.label == NO_HAND:
        bx0 = by0 = bx1 = by1 = -1e9
    elif photo.box is None:
        return []
    else:
        x0, y0, x1, y1 = box_pixels(photo, width, height)
        gx, gy = (x1 - x0) * 0.05, (y1 - y0) * 0.05
        bx0, by0, bx1, by1 = x0 - gx, y0 - gy, x1 + gx, y1 + gy
    out = []
    for _ in range(200):
        s = rng.uniform(0.15, 0.5) * min(width, height)
        x, y = rng.uniform(0, width - s), rng.uniform(0, height - s)
        if x + s < bx0 or x > bx1 or y + s < by0 or y > by1:
            out.append((x, y, s))
            if len(out) == n:
                break
    return out


def photo_inputs(photo: Photo, image: np.ndarray, pp, backgrounds: int = 0):
    """What the app feeds the model for a photo, as uint8 (H, W, C): its hand square (None for
    a photo in `nothing/`) and up to `backgrounds` no-hand squares away from the hand box."""
    from .contract import hand_square, square_pixels
    h, w = image.shape[:2]
    hand = None
    if photo.label != NO_HAND:
        hand = square_pixels(image, hand_square(box_pixels(photo, w, h)), pp)
    bgs = [square_pixels(image, sq, pp) for sq in background_squares(photo, w, h, backgrounds)]
    return hand, bgs


def split_by_source(photos: list, fraction: float, seed: int) -> tuple[list, list]:
    """(rest, picked) photo indices: about `fraction` of each label's source photos are
    picked, seeded; all variants of one source photo land on the same side."""
    rng = np.random.default_rng(seed)
    members: dict = {}
    for i, p in enumerate(photos):
        members.setdefault(p.source, []).append(i)
    by_label: dict = {}
    for src, idx in members.items():                 # a source counts for its first label
        by_label.setdefault(photos[idx[0]].label, []).append(src)
    picked = []
    for label in sorted(by_label):
        sources = sorted(by_label[label])
        rng.shuffle(sources)
        k = int(round(len(sources) * fraction))
        if fraction > 0 and len(sources) > 1:
            k = max(1, min(k, len(sources) - 1))
        for s in sources[:k]:
            picked += members[s]
    picked_set = set(picked)
    return ([i for i in range(len(photos)) if i not in picked_set], sorted(picked))
