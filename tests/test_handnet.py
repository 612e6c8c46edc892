"""model/handnet.py: the Keras rebuild of MediaPipe's hand landmark networks against TFLite.

Each network (full, lite) is converted once per module. The Keras model gets BGR, the TFLite
interpreter the same pixels as RGB; landmarks are compared in input pixels, presence and
handedness as probabilities (the Keras model outputs logits; the sigmoid is the app's).

Measured here (TF 2.12.1, tf.lite.Interpreter with XNNPACK, one thread), max |Keras - TFLite|
over the random inputs and the six real hand crops below:
  full: landmarks 1.4e-4 px, presence 4.7e-8, handedness 2.3e-6
  lite: landmarks 2.4e-4 px, presence 3.5e-7, handedness 1.7e-7
The tolerances (3e-3 px, 5e-5) are ten to twenty times that: a wrong padding, a swapped
channel order or one misplaced weight moves landmarks by pixels (test_the_comparison_can_fail
shows RGB fed to the BGR model moving them by more than a pixel).
"""
from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model import handnet
from model.net import DPU_LAYER_TYPES, dpu_violations
from toolchain.errors import UserError

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "data" / "asl_photos"
LANDMARK_TOL_PX = 3e-3
PROB_TOL = 5e-5
# A few real photos, different hand shapes (first variant of each listed letter).
CROP_LETTERS = ("A", "B", "C", "L", "V", "Y")
CROP_SCALE = 1.5          # square side = 1.5 x the longer side of the hand box


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def hand_crops() -> np.ndarray:
    """(N, 224, 224, 3) uint8 BGR: squares around the labelled hand box, resized to 224."""
    import cv2
    rows = list(csv.DictReader(open(PHOTOS / "manifest.csv")))
    picked = []
    for letter in CROP_LETTERS:
        picked.append(next(r for r in rows if r["letter"] == letter))
    crops = []
    for r in picked:
        img = cv2.imread(str(PHOTOS / r["file"]), cv2.IMREAD_COLOR)
        assert img is not None, r["file"]
        h, w = img.shape[:2]
        cx, cy = float(r["bbox_x_center"]) * w, float(r["bbox_y_center"]) * h
        side = int(round(CROP_SCALE * max(float(r["bbox_width"]) * w,
                                          float(r["bbox_height"]) * h)))
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        pad = side
        big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        crop = big[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
        crops.append(cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA))
    return np.stack(crops)


@pytest.fixture(scope="module")
def tf():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    return tf


@pytest.fixture(scope="module", params=sorted(handnet.NETWORKS))
def net(request, tf):
    """(name, Keras model with features, TFLite interpreter) for each shipped network."""
    path = handnet.network_path(request.param)
    model = handnet.convert(path, features=True)
    interp = tf.lite.Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    return request.param, model, interp


@pytest.fixture(scope="module")
def crops():
    return hand_crops()


def run_tflite(interp, rgb: np.ndarray) -> dict:
    """MediaPipe's outputs for each RGB float image: landmarks, presence, handedness."""
    inp = interp.get_input_details()[0]["index"]
    names = {d["name"]: d["index"] for d in interp.get_output_details()}
    out = {"landmarks": [], "presence": [], "handedness": []}
    for img in rgb:
        interp.set_tensor(inp, img[None].astype(np.float32))
        interp.invoke()
        out["landmarks"].append(interp.get_tensor(names["Identity"])[0])
        out["presence"].append(interp.get_tensor(names["Identity_1"])[0])
        out["handedness"].append(interp.get_tensor(names["Identity_2"])[0])
    return {k: np.stack(v) for k, v in out.items()}


def compare(model, interp, bgr: np.ndarray) -> dict:
    """Max abs differences of the Keras model (BGR in) against TFLite (same pixels, RGB)."""
    ref = run_tflite(interp, bgr[..., ::-1])
    lm, pres, hand, _ = (o.numpy() for o in model(bgr, training=False))
    return {"landmarks": float(np.abs(lm - ref["landmarks"]).max()),
            "presence": float(np.abs(sigmoid(pres) - ref["presence"]).max()),
            "handedness": float(np.abs(sigmoid(hand) - ref["handedness"]).max()),
            "ref": ref}


def check_close(d: dict, what: str):
    assert d["landmarks"] < LANDMARK_TOL_PX, f"{what}: landmarks off by {d['landmarks']:.2e} px"
    assert d["presence"] < PROB_TOL, f"{what}: presence off by {d['presence']:.2e}"
    assert d["handedness"] < PROB_TOL, f"{what}: handedness off by {d['handedness']:.2e}"


def test_outputs_names_order_and_shapes(net):
    name, model, _ = net
    assert model.output_names == ["landmarks", "presence", "handedness", "features"]
    feat = {"full": 1152, "lite": 672}[name]
    assert [tuple(o.shape) for o in model.outputs] == [(None, 63), (None, 1), (None, 1),
                                                       (None, feat)]
    assert tuple(model.input.shape) == (None, 224, 224, 3) and model.input.name == "image"


def test_matches_tflite_on_random_inputs(net):
    name, model, interp = net
    x = np.random.default_rng(7).random((3, 224, 224, 3), dtype=np.float32)
    check_close(compare(model, interp, x), f"{name}, random inputs")


def test_matches_tflite_on_real_hand_crops(net, crops):
    name, model, interp = net
    d = compare(model, interp, crops.astype(np.float32) / 255.0)
    check_close(d, f"{name}, hand crops")
    # The crops are real hands and MediaPipe sees them: the comparison is on inputs that
    # matter, not on a network answering "no hand".
    assert np.median(d["ref"]["presence"]) > 0.5, d["ref"]["presence"].ravel()
    xy = d["ref"]["landmarks"].reshape(-1, 21, 3)[..., :2]
    assert (np.median(xy, axis=(0, 1)) > 40).all() and (np.median(xy, axis=(0, 1)) < 184).all()


def test_the_comparison_can_fail(net, crops):
    """RGB fed to the BGR model must be caught: the tolerance is not so loose it hides it."""
    name, model, interp = net
    rgb = crops[..., ::-1].astype(np.float32) / 255.0
    ref = run_tflite(interp, rgb)
    lm = model(rgb, training=False)[0].numpy()             # RGB into the BGR model: wrong
    assert np.abs(lm - ref["landmarks"]).max() > 1.0, f"{name}: channel order does not matter?"


def test_rgb_model_takes_rgb(tf, crops):
    model = handnet.convert(handnet.network_path("lite"), bgr=False)
    assert model.output_names == ["landmarks", "presence", "handedness"]
    interp = tf.lite.Interpreter(model_path=str(handnet.network_path("lite")), num_threads=1)
    interp.allocate_tensors()
    rgb = crops[..., ::-1].astype(np.float32) / 255.0
    ref = run_tflite(interp, rgb)
    lm = model(rgb, training=False)[0].numpy()
    assert np.abs(lm - ref["landmarks"]).max() < LANDMARK_TOL_PX


def test_only_dpu_layers(net):
    name, model, _ = net
    assert dpu_violations(model) == [], name
    kinds = {type(layer).__name__ for layer in model.layers}
    assert kinds <= DPU_LAYER_TYPES, kinds - DPU_LAYER_TYPES
    assert kinds <= {"InputLayer", "Conv2D", "DepthwiseConv2D", "ReLU", "Add", "MaxPooling2D",
                     "GlobalAveragePooling2D", "Dense", "ZeroPadding2D"}, kinds
    for layer in model.layers:
        if type(layer).__name__ == "ReLU":
            assert float(layer.max_value) == 6.0, layer.name
        act = getattr(layer, "activation", None)
        assert act is None or act.__name__ == "linear", layer.name


def test_layer_names_are_stable(net):
    _, model, _ = net
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["image", "conv1", "conv1_relu6"]
    assert {"features", "landmarks", "presence", "handedness"} <= set(names)
    assert len(names) == len(set(names))


def test_save_and_reload(tmp_path, tf):
    model = handnet.convert(handnet.network_path("lite"))
    out = handnet.save(model, tmp_path / "hand.h5")
    assert out.exists() and [p.name for p in tmp_path.iterdir()] == ["hand.h5"]
    back = tf.keras.models.load_model(str(out), compile=False)
    x = np.random.default_rng(3).random((2, 224, 224, 3), dtype=np.float32)
    for a, b in zip(model(x), back(x)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# --------------------------------------------------------------------------- checksums

def test_shipped_networks_match_their_checksums():
    sums = handnet.recorded_sha256()
    assert set(sums) == set(handnet.NETWORKS.values())
    for net_name, file in handnet.NETWORKS.items():
        path = handnet.network_path(net_name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sums[file]
    assert (handnet.DATA_DIR / "hand_landmark_full.tflite").stat().st_size == 5_478_917
    assert (handnet.DATA_DIR / "hand_landmark_lite.tflite").stat().st_size == 2_071_597


def test_check_network_missing_file(tmp_path):
    with pytest.raises(UserError) as e:
        handnet.check_network(tmp_path / "hand_landmark_full.tflite")
    msg = str(e.value)
    assert "hand_landmark_full.tflite is missing" in msg and "\n" not in msg
    assert "git checkout -- data/hand_landmark/hand_landmark_full.tflite" in msg
    assert "scripts/extract-hand-landmark.sh" in msg


def test_check_network_altered_copy(tmp_path):
    copy = tmp_path / "hand_landmark_lite.tflite"
    shutil.copyfile(handnet.DATA_DIR / "hand_landmark_lite.tflite", copy)
    assert handnet.check_network(copy) == copy            # an exact copy passes
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(UserError) as e:
        handnet.check_network(copy)
    msg = str(e.value)
    assert "hand_landmark_lite.tflite is altered" in msg and "\n" not in msg
    assert "git checkout -- data/hand_landmark/hand_landmark_lite.tflite" in msg


def test_check_network_unknown_file(tmp_path):
    other = tmp_path / "palm_detection.tflite"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match="not one of the hand landmark networks"):
        handnet.check_network(other)


def test_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "model.handnet", "convert", "--network", "huge",
                        "--out", str(tmp_path / "x.h5")], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = subprocess.run([sys.executable, "-m", "model.handnet", "check"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.count("ok: ") == 2, r.stdout + r.stderr
