"""Test helpers for dpu_app: a real small model, the VART/XIR emulation, videos, fake cameras.

* `real_models(build_dir, cache_root)`: the session's small real model (conftest.py's
  small_build: the repo's trainer on a subset) and its quantized copy (vitis quantizer, the
  DPU's power-of-two strategy), cached by the float model's sha256.
* `write_emulated_xmodel(...)`: a JSON "xmodel" read by tests/fake_vart (xir/vart emulation)
  whose single DPU subgraph runs the QUANTIZED Keras model with the model's own fix points.
* `quant_fix_points(q.h5)`: the input / output fix points the compiler would put on the
  xmodel's tensors: the quantizer's input position and the last layer's output position.
* `make_sign_video(...)`: a video of test images enlarged into the ROI, each held for frames.
* `FakeCapture`: a cv2.VideoCapture stand-in that fails after N frames (camera unplugged).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
APP_DIR = REPO / "dpu_app"
FAKE_VART_DIR = Path(__file__).resolve().parent / "fake_vart"
TEST_CSV = REPO / "data" / "sign_mnist" / "sign_mnist_test.csv.gz"
TRAIN_CSV = REPO / "data" / "sign_mnist" / "sign_mnist_train.csv.gz"

CALIB_N = 500

_lock = threading.Lock()
_memo: dict = {}


def real_models(build_dir, cache_root) -> dict:
    """{'float': model.h5, 'quant': q.h5, 'labels': labels.txt} from the session's small real
    training run (conftest.py's small_build); the quantized copy is cached by the float
    model's sha256 under `cache_root` (so an unchanged model is not quantized again)."""
    with _lock:
        fl = Path(build_dir) / "train" / "model.h5"
        lab = Path(build_dir) / "train" / "labels.txt"
        if not (fl.exists() and lab.exists()):
            raise RuntimeError(f"{build_dir}: no train/model.h5 + labels.txt from the trainer")
        h = hashlib.sha256(fl.read_bytes())
        h.update(f"calib=train:{CALIB_N}".encode())
        key = h.hexdigest()[:16]
        if key in _memo:
            return dict(_memo[key])
        q = Path(cache_root) / key / "q.h5"
        if not q.exists():
            q.parent.mkdir(parents=True, exist_ok=True)
            quantize(fl, q)
        out = {"float": str(fl), "quant": str(q), "labels": str(lab)}
        _memo[key] = out
        return dict(out)


def quantize(float_h5: Path, out_h5: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from vitis_quantizer import VitisQuantizer, quantize_scope
    from model.data import load_csv
    x = load_csv(TRAIN_CSV).x[:CALIB_N]    # calibrate on training rows, never on test rows
    model = tf.keras.models.load_model(str(float_h5), compile=False)
    # vitis_quantizer 0.1.3: the DPU (power-of-two, symmetric) strategy is called "8bit"; it
    # clones layers during calibration, which needs its custom-object scope on TF 2.12.
    with quantize_scope():
        qm = VitisQuantizer(model, quantize_strategy="8bit").quantize_model(
            calib_dataset=x, calib_batch_size=50, verbose=0)
    tmp = str(out_h5) + ".tmp.h5"
    qm.save(tmp)
    os.replace(tmp, out_h5)


def quant_fix_points(q_h5: str) -> tuple[int, int]:
    """(input fix_point, output fix_point) of a quantized model, as the compiler sets them."""
    import tensorflow as tf
    from vitis_quantizer import quantize_scope
    with quantize_scope():
        m = tf.keras.models.load_model(q_h5, compile=False)
    inp = out = None
    for layer in m.layers:
        if type(layer).__name__ == "VitisQuantize" and inp is None:
            inp = next(int(w.numpy()) for w in layer.weights if w.name.endswith("_pos:0"))
    last = m.layers[-1]
    for w in last.weights:
        if w.name.endswith(("post_activation_pos:0", "output_0_pos:0")):
            out = int(w.numpy())
    if inp is None or out is None:
        raise RuntimeError(f"{q_h5}: could not find the input/output quantize positions")
    return inp, out


def write_emulated_xmodel(path: Path, *, q_h5: str | None = None, in_fix: int = 6,
                          out_fix: int = 4, batch: int = 1, classes: int = 24,
                          dpu_subgraphs: int = 1, in_dtype: str = "xint8",
                          with_fix: bool = True, compute: str = "keras",
                          in_dims=None, fail_create: str | None = None) -> Path:
    """A JSON 'xmodel' for tests/fake_vart: USER input subgraph, N DPU subgraphs, CPU tail."""
    subs = [{"name": "subgraph_image", "device": "USER"}]
    for k in range(dpu_subgraphs):
        spec = {
            "name": f"subgraph_quant_conv1_1{'' if k == 0 else f'_{k}'}",
            "device": "DPU",
            "inputs": [{"name": "signnet__image_fix" if k == 0 else f"part{k}_in",
                        "dims": list(in_dims or [batch, 28, 28, 1]), "dtype": in_dtype,
                        "fix_point": in_fix if with_fix else None}],
            "outputs": [{"name": "signnet__logits_fix" if k == dpu_subgraphs - 1 else f"part{k}_out",
                         "dims": [batch, classes], "dtype": "xint8",
                         "fix_point": out_fix if with_fix else None}],
            "compute": {"kind": compute, "path": q_h5},
        }
        if fail_create:
            spec["fail_create"] = fail_create
        subs.append(spec)
    subs.append({"name": "subgraph_logits_upload", "device": "CPU"})
    data = {"emulated_xmodel": 1, "name": "signnet", "subgraphs": subs}
    Path(path).write_text(json.dumps(data, indent=1))
    return Path(path)


def write_manifest(path: Path, xmodel: Path, labels: list[str], in_fix: int, out_fix: int,
                   sha256: str | None = None) -> Path:
    if sha256 is None:
        sha256 = hashlib.sha256(Path(xmodel).read_bytes()).hexdigest()
    data = {"schema": 1, "name": "signnet",
            "xmodel": {"file": Path(xmodel).name, "sha256": sha256},
            "board": "ZCU104", "target": {"name": "DPUCZDX8G_ISA1_B4096",
                                          "fingerprint": "0x101000056010407"},
            "vitis_ai_version": "3.5",
            "input": {"name": "image", "shape": [1, 28, 28, 1], "dtype": "int8",
                      "fix_point": in_fix},
            "output": {"name": "logits", "shape": [1, 24], "dtype": "int8",
                       "fix_point": out_fix},
            "labels": labels, "labels_file": "labels.txt",
            "preprocess": {"width": 28, "height": 28, "color": "gray",
                           "scale": 0.00392156862745098, "resize": "area", "layout": "NHWC"}}
    Path(path).write_text(json.dumps(data, indent=1))
    return Path(path)


# the video helpers live with the user-facing script that makes demo videos
from benchmarks.make_sign_video import make_sign_video, place_in_frame  # noqa: E402,F401


class FakeCapture:
    """cv2.VideoCapture stand-in. `script` is shared by every instance made by one factory:
    frames before the unplug, then failed reads; reopening fails `down_opens` times, then
    works again (the camera came back) and delivers frames again."""

    def __init__(self, plan: dict, device, api=None):
        self.plan = plan
        plan["opens"] = plan.get("opens", 0) + 1
        self.opened = plan["opens"] == 1 or plan["opens"] > 1 + plan.get("down_opens", 0)
        if plan.get("never"):
            self.opened = False
        self.device = device

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 30.0

    def read(self):
        p = self.plan
        if not self.opened:
            return False, None
        p["reads"] = p.get("reads", 0) + 1
        if p.get("garbage_at") and p["reads"] in p["garbage_at"]:
            return True, np.zeros((0, 0), np.uint8)
        if p["opens"] == 1 and p["reads"] > p.get("fail_after", 10 ** 9):
            return False, None                                   # unplugged: reads fail
        img = p["frames"][p["reads"] % len(p["frames"])]
        return True, img.copy()

    def release(self):
        self.opened = False


def fake_capture_factory(plan: dict):
    def make(device, api=None):
        return FakeCapture(plan, device, api)
    return make
