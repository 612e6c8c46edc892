"""The hand pipeline's rules (dpu_app/hands.py): crop geometry, MediaPipe's landmarks-to-ROI
rule, output decoding, the letter classifier file, the decision, and tracking in the live
processor, with a fake landmark network (no TensorFlow)."""
import math

import numpy as np
import pytest

from dpu_app import hands as H
from dpu_app import scoring
from dpu_app.contract import LETTERS, NO_HAND
from dpu_app.errors import AppError

LABELS = list(LETTERS) + [NO_HAND]


def upright_hand(cx=112.0, cy=130.0, size=60.0) -> np.ndarray:
    """21 landmarks of an open hand pointing up, centred near (cx, cy), in pixels."""
    lm = np.zeros((21, 3))
    lm[0] = (cx, cy + size * 0.6, 0)                      # wrist
    fingers = [(-0.45, 1), (-0.2, 5), (0.0, 9), (0.2, 13), (0.4, 17)]
    for dx, base in fingers:
        for j in range(4):
            lm[base + j] = (cx + dx * size * (1 + 0.1 * j), cy + size * (0.1 - 0.25 * j), 0)
    return lm


def rotate(lm, angle, about):
    c, s = math.cos(angle), math.sin(angle)
    out = lm.copy()
    d = lm[:, :2] - about
    out[:, 0] = about[0] + c * d[:, 0] - s * d[:, 1]
    out[:, 1] = about[1] + s * d[:, 0] + c * d[:, 1]
    return out


def test_upright_hand_gives_an_upright_square_and_rotation_follows_the_hand():
    lm = upright_hand()
    sq = H.square_from_landmarks(lm)
    assert abs(sq.angle) < 1e-6
    # MediaPipe: 2x the palm box's long side, shifted up by 0.1 of its height
    pts = lm[list(H.ROI_LANDMARKS), :2]
    w, h = np.ptp(pts[:, 0]), np.ptp(pts[:, 1])
    assert sq.side == pytest.approx(2.0 * max(w, h))
    assert sq.cy == pytest.approx(pts[:, 1].min() + h / 2 - 0.1 * h)
    for angle in (math.pi / 2, -math.pi / 3, 2.5):       # the same hand turned clockwise
        turned = rotate(lm, angle, np.array([112.0, 112.0]))
        assert H.square_from_landmarks(turned).angle == pytest.approx(angle, abs=1e-6)
        assert H.square_from_landmarks(turned).side == pytest.approx(sq.side, rel=1e-6)


def test_cut_and_to_image_agree_on_where_a_pixel_is():
    """A bright dot in the image lands where to_image says a crop pixel maps to, for a
    rotated, scaled square."""
    img = np.zeros((400, 500, 3), np.uint8)
    sq = H.Square(260.0, 190.0, 180.0, 0.6)
    # the crop pixel (150, 60) -> image; draw a dot there and find it in the crop
    p = H.to_image(np.array([[150.5, 60.5, 0.0]]), sq)[0]
    img[int(round(p[1] - 0.5)), int(round(p[0] - 0.5))] = 255
    crop = H.cut(img, sq).astype(float).sum(2)
    y, x = np.unravel_index(crop.argmax(), crop.shape)
    assert abs(x - 150) <= 1 and abs(y - 60) <= 1


def test_decode_undoes_encode():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 224, (5, 21, 3))
    raw = H.encode(lm, [3.0, -2, 0, 5, -7], [1, -1, 0, 2, -2])
    got, pres, hand = H.decode(raw)
    assert np.allclose(got, lm, atol=1e-3)
    assert np.allclose(pres, H.sigmoid(np.array([3.0, -2, 0, 5, -7])), atol=1e-6)
    with pytest.raises(AppError, match="65"):
        H.decode(np.zeros((1, 64)))


def test_absurd_squares_fall_back():
    start = H.Square(100, 100, 80)
    for bad in (H.Square(float("nan"), 1, 50), H.Square(10, 10, 2), H.Square(10, 10, 1e7)):
        assert H.sane_square(bad, start, (480, 640)) is start
    ok = H.Square(300, 200, 120, 0.3)
    assert H.sane_square(ok, start, (480, 640)) is ok


def test_features_ignore_position_and_scale_but_not_direction():
    lm = upright_hand()
    moved = lm * 1.7 + [40, -25, 0]
    assert np.allclose(H.features(lm), H.features(moved), atol=1e-5)
    sideways = rotate(lm, math.pi / 2, lm[0, :2])
    assert not np.allclose(H.features(lm), H.features(sideways), atol=1e-2)
    assert H.features(np.stack([lm, moved])).shape == (2, 60)


def test_classifier_round_trip_and_damaged_file(tmp_path):
    rng = np.random.default_rng(1)
    clf = H.LetterClassifier([(rng.normal(size=(60, 8)), np.zeros(8)),
                              (rng.normal(size=(8, 24)), np.zeros(24))], LETTERS)
    np.savez(tmp_path / "c.npz", **clf.save_arrays())
    back = H.LetterClassifier.load(str(tmp_path / "c.npz"))
    lm = np.stack([upright_hand(), upright_hand(size=40)])
    assert np.allclose(back.probs(lm), clf.probs(lm))
    assert np.allclose(clf.probs(lm).sum(1), 1, atol=1e-5)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(AppError, match="damaged"):
        H.LetterClassifier.load(str(tmp_path / "bad.npz"))
    with pytest.raises(AppError, match="not found"):
        H.LetterClassifier.load(str(tmp_path / "none.npz"))


def test_low_presence_is_no_hand_whatever_the_classifier_says():
    letters = np.zeros((3, 24), np.float32)
    letters[:, 0] = 0.99
    p = scoring.hand_probs(letters, np.array([0.9, 0.2, 0.5]), 0.5, LABELS)
    top, shown = scoring.decide(p, LABELS, 0.5)
    assert list(shown) == [True, False, True]
    assert LABELS[top[1]] == NO_HAND


# ------------------------------------------------------------------- fake network, tracking
class BlobNet:
    """A stand-in landmark network: finds the bright square in the crop and answers an
    upright hand there, presence high when there is one. Counts its calls."""

    def __init__(self):
        self.crops = 0

    def __call__(self, crops):
        out = []
        for c in crops:
            self.crops += 1
            m = c.astype(float).mean(2) > 128
            if m.sum() < 50:
                out.append(H.encode(upright_hand(), -8.0, 0.0)[0])
                continue
            ys, xs = np.nonzero(m)
            lm = upright_hand(cx=xs.mean(), cy=ys.mean(), size=max(np.ptp(xs), 10) * 0.8)
            out.append(H.encode(lm, 8.0, 0.0)[0])
        return np.stack(out)


def fixed_classifier(letter="B"):
    w = np.zeros((60, 24), np.float32)
    b = np.full(24, -5.0, np.float32)
    b[LETTERS.index(letter)] = 5.0
    return H.LetterClassifier([(w, b)], LETTERS)


def frame_with_blob(x, y, side=120):
    f = np.zeros((480, 640, 3), np.uint8)
    f[y:y + side, x:x + side] = 255
    return f


def test_live_processor_tracks_with_one_pass_and_searches_again_when_the_hand_goes():
    from dpu_app.processing import HandFrameProcessor, Roi
    net = BlobNet()
    pipe = H.HandPipeline(net, fixed_classifier("B"), LABELS, H.Constants(passes=3))
    proc = HandFrameProcessor(pipe, Roi("auto"), threshold=0.5, draw=True, smooth=1.0)
    s, canvas = proc.process(frame_with_blob(260, 180))
    assert s["hand"]["passes"] == 3 and not s["hand"]["tracked"] and s["letter"] == "B"
    assert len(s["hand"]["landmarks"]) == 21 and canvas.shape == (480, 640, 3)
    n = net.crops
    for _ in range(4):                            # held still, then moved a little: tracked
        s, _ = proc.process(frame_with_blob(270, 185))
        assert s["hand"]["passes"] == 1 and s["hand"]["tracked"]
    assert net.crops - n == 4
    s, _ = proc.process(np.zeros((480, 640, 3), np.uint8))      # hand gone
    assert s["letter"] is None and proc.track is None
    s, _ = proc.process(np.zeros((480, 640, 3), np.uint8))
    assert s["hand"]["passes"] == 3 and not s["hand"]["tracked"]


def test_still_photo_retries_other_guide_sizes_only_where_no_hand_was_found():
    class SmallOnly(BlobNet):
        """Finds the blob only when it fills a good part of the crop."""
        def __call__(self, crops):
            out = super().__call__(crops)
            for i, c in enumerate(crops):
                if (c.astype(float).mean(2) > 128).mean() < 0.12:
                    out[i, 63] = -8.0 / H.LOGIT_SCALE
            return out
    img = frame_with_blob(250, 170, side=100)
    pipe = H.HandPipeline(SmallOnly(), fixed_classifier(), LABELS,
                          H.Constants(passes=1, guide_scale=1.5, retry_scales=(1.4, 0.5)))
    far = pipe.read_boxes([img], [(150, 70, 450, 370)])[0]      # a box 3x the hand: too far
    assert far.presence > 0.5
    pipe_no_retry = H.HandPipeline(SmallOnly(), fixed_classifier(), LABELS,
                                   H.Constants(passes=1, guide_scale=1.5, retry_scales=()))
    assert pipe_no_retry.read_boxes([img], [(150, 70, 450, 370)])[0].presence < 0.5
