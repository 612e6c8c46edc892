#!/usr/bin/env python3
"""Write a video that spells a word with real photos of hands, for the live app's hand pipeline.

    python benchmarks/make_hand_video.py HELLO hello.avi [--photos data/asl_photos] [--hold 22]
    python -m dpu_app --model build/train/model.h5 --source hello.avi --loop

Each letter is one photo of that letter from a labelled photo folder (one sub-folder per
letter and manifest.csv with the hand boxes, see data/asl_photos/README.md), scaled and moved
by dpu_app.bench.photo_frames so that its hand box fills the app's default guide box (--roi
auto), on a 640x480 frame at 15 fps. A letter is held --hold frames (22: about 1.5 s), then
BLANK frames of an empty background follow: the app's speller (dpu_app/spelling.py) writes a
held letter once and the same letter again only after a release (--stable // 2 = 4 frames
without a letter by default; the smoothing takes one more), so the two L of HELLO both come
out, while fewer than --gap (15) blank frames add no space. The clip ends with END blank
frames, more than --gap, so that --loop spells "HELLO HELLO ...". The photo of each letter is
drawn with --seed (the same photo for a repeated letter: one signer). Lossless FFV1 in .avi,
so the frames the app reads are the frames written.
"""
from __future__ import annotations

import argparse
import os
import string
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FPS = 15.0
SIZE = (640, 480)
HOLD = 22           # frames a letter is held: about 1.5 s at 15 fps
BLANK = 8           # empty frames between letters: a release (>= 5), no space (< 15)
END = 20            # empty frames at the end: a space before the word comes round again
BACKGROUND = 40     # the empty background's grey level (BGR)
APP_STABLE = 8      # the app's default --stable: a letter held fewer frames is not written


def guide_roi():
    """The app's default guide box for the hand pipeline (app.py: Roi(--roi, multiple=the
    network's input side))."""
    from dpu_app.hands import NET_SIZE
    from dpu_app.processing import Roi
    return Roi("auto", multiple=NET_SIZE)


def choose_photos(folder, letters, seed: int) -> dict:
    """{letter: Photo}, one photo with a hand box per letter, drawn with `seed` and the letter
    (a letter's photo does not depend on the rest of the word)."""
    chosen = {}
    for c in sorted(set(letters)):
        cands = sorted((p for p in folder.photos if p.label == c and p.box is not None),
                       key=lambda p: p.rel)
        if cands:
            rng = np.random.default_rng([seed, ord(c)])
            chosen[c] = cands[int(rng.integers(len(cands)))]
    return chosen


def letter_frame(photo, roi) -> np.ndarray:
    """The 640x480 frame of one photo with its hand box in the guide box (the benchmark's
    dpu_app.bench.hand_frame; a damaged photo is one line naming it)."""
    from dpu_app.bench import hand_frame
    return hand_frame(photo, roi, SIZE)


def write_video(path: str, word: str, frames: dict, hold: int = HOLD, blank: int = BLANK,
                end: int = END, fps: float = FPS) -> int:
    """Write the word: each letter's frame held `hold` frames, `blank` empty frames between
    letters and `end` at the end. Returns the number of frames written."""
    import cv2
    w, h = SIZE
    empty = np.full((h, w, 3), BACKGROUND, np.uint8)
    tmp = f"{path}.{os.getpid()}.tmp.avi"           # then renamed: make never sees half a clip
    out = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"FFV1"), fps, SIZE)
    if not out.isOpened():
        raise RuntimeError("OpenCV cannot write FFV1 video here")
    n = 0
    try:
        for i, c in enumerate(word):
            seq = [frames[c]] * hold + [empty] * (blank if i < len(word) - 1 else end)
            for f in seq:
                out.write(f)
            n += len(seq)
        out.release()
        os.replace(tmp, path)
    finally:
        out.release()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("word", help="letters A..Y without J (J and Z are signed with motion)")
    ap.add_argument("out", help="output video (.avi: lossless FFV1)")
    ap.add_argument("--photos", default=None,
                    help="labelled photo folder with hand boxes (default data/asl_photos)")
    ap.add_argument("--hold", type=int, default=HOLD,
                    help=f"frames per letter at {FPS:.0f} fps (default {HOLD}: about 1.5 s)")
    ap.add_argument("--seed", type=int, default=0, help="which photo of each letter (default 0)")
    a = ap.parse_args(argv)
    if a.photos is None:
        a.photos = os.path.relpath(REPO / "data/asl_photos") if Path.cwd() == REPO else str(
            REPO / "data/asl_photos")

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    word = a.word.upper()
    if not word or any(c not in string.ascii_uppercase for c in word):
        return fail(f"word {a.word!r}: give letters only, A..Y without J (one word, no spaces "
                    f"or digits)")
    if a.hold < 1:
        return fail("--hold must be >= 1")
    if not a.out.lower().endswith(".avi"):
        return fail(f"{a.out}: use an .avi name (the video is lossless FFV1 in AVI)")
    if not Path(a.out).resolve().parent.is_dir():
        return fail(f"{a.out}: folder {Path(a.out).resolve().parent} does not exist")
    from dpu_app.datasets import scan_photo_folder
    from dpu_app.errors import AppError
    try:
        folder = scan_photo_folder(a.photos, verify=False)
        photos = choose_photos(folder, word, a.seed)
        missing = sorted(set(word) - set(photos))
        if missing:
            motion = [c for c in missing if c in "JZ"]
            why = (f" ({' and '.join(motion)} {'is' if len(motion) == 1 else 'are'} signed with "
                   f"motion: no still photo shows {'it' if len(motion) == 1 else 'them'})"
                   if motion else "")
            boxes = "" if folder.manifest else " (no manifest.csv with hand boxes)"
            return fail(f"{a.photos} has no photo{boxes} of {', '.join(missing)}{why}: spell "
                        f"the word without {'it' if len(missing) == 1 else 'them'}")
        roi = guide_roi()
        frames = {c: letter_frame(p, roi) for c, p in photos.items()}
        n = write_video(a.out, word, frames, hold=a.hold)
    except AppError as e:
        return fail(str(e))
    except RuntimeError as e:
        return fail(f"{a.out}: {e}")
    gx, gy, gw, gh = roi.resolve(SIZE[1], SIZE[0])
    print(f"{a.out}: {n} frames ({n / FPS:.1f} s at {FPS:.0f} fps) spelling {word}, each hand in "
          f"the guide box {gw}x{gh} at ({gx},{gy}); photos (seed {a.seed}): "
          + ", ".join(f"{p.rel}" for p in photos.values()))
    if a.hold < APP_STABLE + 2:
        print(f"note: --hold {a.hold} is shorter than the app needs to write a letter (--stable "
              f"{APP_STABLE} frames after the hand is found): give --hold {APP_STABLE + 2} or more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
