"""benchmarks/make_hand_video.py: a clip that spells a word with photos of hands, each hand box
in the app's guide box (no model needed: a small photo folder of coloured "hands")."""
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.make_hand_video import BACKGROUND, BLANK, END, FPS

SCRIPT = "benchmarks/make_hand_video.py"
GUIDE = (176, 96, 288, 288)         # the hand pipeline's --roi auto on 640x480 (app.py's Roi)
BG = (200, 60, 60)                  # the photos' room
HANDS = {"A": (0, 0, 255), "B": (0, 255, 0), "L": (0, 255, 255)}


@pytest.fixture()
def photos(tmp_path):
    """A, B, L: a 200x200 photo each with a square 'hand' of one colour at a box off centre
    (and a second A photo, for the seed), manifest.csv with the boxes."""
    import cv2
    root = tmp_path / "photos"
    rows = ["file,letter,bbox_x_center,bbox_y_center,bbox_width,bbox_height"]
    for letter, colour in [*HANDS.items(), ("A", (255, 0, 255))]:
        (root / letter).mkdir(parents=True, exist_ok=True)
        name = f"{letter}{len(list((root / letter).iterdir()))}.png"
        img = np.full((200, 200, 3), BG, np.uint8)
        img[40:120, 60:140] = colour                   # 80x80 box centred at (100, 80)
        cv2.imwrite(str(root / letter / name), img)
        rows.append(f"{letter}/{name},{letter},0.5,0.4,0.4,0.4")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def run(repo_root, *args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)


def read_video(path):
    import cv2
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames, fps


def test_clip_spells_the_word_with_hands_in_the_guide_box(repo_root, photos, tmp_path):
    """Each letter's hand box fills the guide box, held --hold frames; empty frames follow
    each letter: enough for the speller's release so that LL comes out twice (--stable 8 // 2
    frames without a letter, the smoothing one more), fewer than --gap 15 (no space)."""
    out = tmp_path / "ball.avi"
    r = run(repo_root, "ball", out, "--photos", photos, "--hold", 3)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and "spelling BALL" in r.stdout and "288x288 at (176,96)" in r.stdout
    frames, fps = read_video(out)
    assert len(frames) == 4 * 3 + 3 * BLANK + END and fps == FPS
    assert all(f.shape == (480, 640, 3) for f in frames)
    assert 8 // 2 + 1 <= BLANK < 15 < END
    x, y, w, h = GUIDE
    for k, letter in enumerate("BALL"):
        i = k * (3 + BLANK)
        for f in frames[i:i + 3]:
            inside = f[y + 3:y + h - 3, x + 3:x + w - 3]
            if letter != "A":                       # A has two photos: either colour, one only
                assert (inside == HANDS[letter]).all(), letter     # lossless: exact colours
            else:
                assert (inside == inside[0, 0]).all() and tuple(inside[0, 0]) != BG
            assert (f[y + h + 4:] == BG).all() and (f[:, :x - 4] == BG).all(), letter
            assert (f == frames[i]).all()               # held: the same frame
        gap = frames[i + 3:i + 3 + (BLANK if k < 3 else END)]
        assert all((f == BACKGROUND).all() for f in gap)   # then an empty background


def test_photos_are_drawn_by_seed_and_letter(photos):
    from benchmarks.make_hand_video import choose_photos
    from dpu_app.datasets import scan_photo_folder
    folder = scan_photo_folder(str(photos))
    picks = {s: choose_photos(folder, "BAL", s)["A"].rel for s in range(8)}
    assert picks == {s: choose_photos(folder, "A", s)["A"].rel for s in range(8)}
    assert set(picks.values()) == {"A/A0.png", "A/A1.png"}


@pytest.mark.parametrize("word, said", [
    ("BAJ", "has no photo of J (J is signed with motion"),
    ("ZAC", "has no photo of C, Z (Z is signed with motion"),
    ("A1", "give letters only"),
])
def test_a_letter_without_a_photo_is_one_error_line(repo_root, photos, tmp_path, word, said):
    out = tmp_path / "x.avi"
    r = run(repo_root, word, out, "--photos", photos)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], r.stderr
    assert r.stdout == "" and not out.exists() and list(tmp_path.glob("*.avi*")) == []
