#!/usr/bin/env python3
"""Write a video that "signs" a word with Sign Language MNIST test images, for the live app.

    python benchmarks/make_sign_video.py HELLO signs.avi [--hold 14] [--csv TEST.csv.gz]
    python -m dpu_app --model build/quantize/quantized.h5 --source signs.avi --no-display

Each letter is the first test image of that letter, enlarged into the app's default guide box
(280x280 at the centre of a 640x480 frame) and held --hold frames. J and Z need motion and are
not in the dataset. Lossless FFV1 in .avi, so the frames the app reads are the frames written.
"""
from __future__ import annotations

import argparse
import gzip
import string
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def place_in_frame(img28: np.ndarray, size=(640, 480), roi=None, bg: int = 40) -> np.ndarray:
    """A BGR frame with the 28x28 grey image enlarged (nearest, integer factor) into the ROI."""
    import cv2
    w, h = size
    if roi is None:
        side = 280
        roi = ((w - side) // 2, (h - side) // 2, side, side)
    x, y, rw, rh = roi
    f = np.full((h, w, 3), bg, np.uint8)
    big = cv2.resize(img28, (rw, rh), interpolation=cv2.INTER_NEAREST)
    f[y:y + rh, x:x + rw] = big[:, :, None]
    return f


def make_sign_video(path: Path, images: list[np.ndarray], hold: int, fps: float = 30.0,
                    size=(640, 480), fourcc: str = "FFV1", gaps: dict | None = None) -> int:
    """Write images (28x28 uint8) held `hold` frames each; gaps {index: (image, frames)} puts
    a filler image after image `index`. Returns the number of frames written."""
    import cv2
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not w.isOpened():
        raise RuntimeError(f"cannot write {fourcc} video {path}")
    n = 0
    for i, img in enumerate(images):
        f = place_in_frame(img, size)
        for _ in range(hold):
            w.write(f)
            n += 1
        if gaps and i in gaps:
            gimg, k = gaps[i]
            g = place_in_frame(gimg, size)
            for _ in range(k):
                w.write(g)
                n += 1
    w.release()
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("word")
    ap.add_argument("out", help="output video (.avi: lossless FFV1)")
    ap.add_argument("--hold", type=int, default=14, help="frames per letter (default 14)")
    ap.add_argument("--csv", default=str(REPO / "data/sign_mnist/sign_mnist_test.csv.gz"))
    a = ap.parse_args()

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    word = a.word.upper()
    bad = sorted({c for c in word if c not in string.ascii_uppercase or c in "JZ"})
    if not word or bad:
        return fail(f"word {a.word!r}: give letters A..Y without J (J and Z need motion and are "
                    f"not in the dataset)")
    if a.hold < 1:
        return fail("--hold must be >= 1")
    if not a.out.lower().endswith(".avi"):
        return fail(f"{a.out}: use an .avi name (the video is lossless FFV1 in AVI)")
    if not Path(a.out).resolve().parent.is_dir():
        return fail(f"{a.out}: folder {Path(a.out).resolve().parent} does not exist")
    try:
        opener = gzip.open if a.csv.endswith(".gz") else open
        with opener(a.csv, "rt") as f:
            rows = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as e:
        return fail(f"{a.csv}: cannot read it as a Kaggle Sign Language MNIST CSV ({e})")
    first = {}
    for r in rows:
        if r.shape[0] == 785 and 0 <= r[0] < 26:
            first.setdefault(string.ascii_uppercase[r[0]], r[1:].reshape(28, 28).astype(np.uint8))
    missing = sorted(set(word) - set(first))
    if missing:
        return fail(f"{a.csv} has no image of {', '.join(missing)}")
    try:
        n = make_sign_video(Path(a.out), [first[c] for c in word], hold=a.hold)
    except RuntimeError as e:
        return fail(f"{a.out}: {e}")
    print(f"{a.out}: {n} frames spelling {word}")
    if any(x == y for x, y in zip(word, word[1:])):
        print("note: the app writes a held letter once, so a doubled letter comes out single "
              "(a signer drops the hand between them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
