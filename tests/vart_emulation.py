"""Test helpers for dpu_app: a real small model, the VART/XIR emulation, videos, fake cameras.

* `real_models(build_dir, cache_root)`: the session's small real model (conftest.py's
  small_build: the repo's trainer on a subset) and its quantized copy (vitis quantizer, the
  DPU's power-of-two strategy), cached by the float model's sha256 and quant_settings()
  (calibration data, strategy, quantizer version, code), and checked before use.
* `write_emulated_xmodel(...)`: an "xmodel" in xir's real file format (protobuf, serial_v2
  schema: tests/fake_vart/xmodel_pb.py) read by tests/fake_vart (xir/vart emulation), whose
  single DPU subgraph runs the QUANTIZED Keras model with the model's own fix points.
* `use_fake_vart(monkeypatch)`: the emulated xir/vart/xdputil for one test.
* `quant_fix_points(q.h5)`: the input / output fix points the compiler would put on the
  xmodel's tensors: the quantizer's input position and the last layer's output position.
* `make_sign_video(...)`: a video of test images enlarged into the ROI, each held for frames.
* `FakeCapture`: a cv2.VideoCapture stand-in that fails after N frames (camera unplugged).
"""
from __future__ import annotations

import functools
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
FINGERPRINT_3_0 = 0x101000056010407        # what the emulated board (fake vart, xdputil) has

_lock = threading.Lock()
_memo: dict = {}


def quant_settings() -> str:
    """Everything besides the float model that decides the quantized model: the calibration
    data (file, rows, scale), the strategy, the quantizer's version and the code that does it.
    Part of the cache key, so that a change to any of them can never be served a stale q.h5."""
    import inspect
    try:
        from importlib.metadata import version
        qv = version("vitis-quantizer")
    except Exception:                                            # noqa: BLE001
        qv = "?"
    src = inspect.getsource(quantize) + inspect.getsource(calibration_images)
    return json.dumps({"calib": TRAIN_CSV.name, "n": CALIB_N, "strategy": "8bit",
                       "batch": 50, "vitis_quantizer": qv,
                       "code": hashlib.sha256(src.encode()).hexdigest()}, sort_keys=True)


def real_models(build_dir, cache_root) -> dict:
    """{'float': model.h5, 'quant': q.h5, 'labels': labels.txt} from the session's small real
    training run (conftest.py's small_build); the quantized copy is cached under `cache_root`
    by the float model's sha256 and quant_settings() (so an unchanged model is not quantized
    again), and checked before use: input fix point of an input in [0, 1], one output per
    label."""
    with _lock:
        fl = Path(build_dir) / "train" / "model.h5"
        lab = Path(build_dir) / "train" / "labels.txt"
        if not (fl.exists() and lab.exists()):
            raise RuntimeError(f"{build_dir}: no train/model.h5 + labels.txt from the trainer")
        h = hashlib.sha256(fl.read_bytes())
        h.update(quant_settings().encode())
        key = h.hexdigest()[:16]
        if key in _memo:
            return dict(_memo[key])
        q = Path(cache_root) / key / "q.h5"
        if not q.exists():
            q.parent.mkdir(parents=True, exist_ok=True)
            quantize(fl, q)
        check_quantized(q, len(Path(lab).read_text().split()))
        out = {"float": str(fl), "quant": str(q), "labels": str(lab)}
        _memo[key] = out
        return dict(out)


def calibration_images() -> np.ndarray:
    """Calibration input: training rows (never test rows) exactly as the model takes them,
    float32 (N, 28, 28, 1) = pixels / 255. Raw uint8 pixels here would calibrate the input
    quantizer for 0..255 (fix point -2) and the int8 image would be all zeros."""
    from model.data import load_csv
    return load_csv(TRAIN_CSV).float()[:CALIB_N]


def quantize(float_h5: Path, out_h5: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from vitis_quantizer import VitisQuantizer, quantize_scope
    x = calibration_images()
    model = tf.keras.models.load_model(str(float_h5), compile=False)
    # vitis_quantizer 0.1.3: the DPU (power-of-two, symmetric) strategy is called "8bit"; it
    # clones layers during calibration, which needs its custom-object scope on TF 2.12.
    with quantize_scope():
        qm = VitisQuantizer(model, quantize_strategy="8bit").quantize_model(
            calib_dataset=x, calib_batch_size=50, verbose=0)
    tmp = str(out_h5) + ".tmp.h5"
    qm.save(tmp)
    os.replace(tmp, out_h5)


def check_quantized(q_h5: Path, n_labels: int) -> None:
    """Refuse a quantized model the tests cannot trust: an input fix point that does not fit
    inputs in [0, 1] (5..7: 1.0 is 32..128 LSBs), or a class count other than the labels'."""
    in_fix, _ = quant_fix_points(str(q_h5))
    classes = _output_units(str(q_h5))
    if not 5 <= in_fix <= 7 or classes != n_labels:
        raise RuntimeError(f"{q_h5}: input fix point {in_fix}, {classes} outputs for "
                           f"{n_labels} labels: quantized on the wrong data or from another "
                           f"model; delete it")


def _output_units(q_h5: str) -> int:
    return int(np.prod(_load_quantized(q_h5).outputs[0].shape[1:]))


@functools.lru_cache(maxsize=4)
def _load_quantized(q_h5: str):
    import tensorflow as tf
    from vitis_quantizer import quantize_scope
    with quantize_scope():
        return tf.keras.models.load_model(q_h5, compile=False)


def quant_fix_points(q_h5: str) -> tuple[int, int]:
    """(input fix_point, output fix_point) of a quantized model, as the compiler sets them."""
    m = _load_quantized(str(q_h5))
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


def _xmodel_pb():
    """tests/fake_vart/xmodel_pb.py (the serial_v2 schema and the emulated model), loaded by
    path: putting fake_vart on sys.path here would let every later `import xir`/`import vart`
    find the fakes."""
    mod = sys.modules.get("xmodel_pb")
    if mod is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location("xmodel_pb", FAKE_VART_DIR / "xmodel_pb.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["xmodel_pb"] = mod
        spec.loader.exec_module(mod)
    return mod


def _load_by_path(name: str, path: Path, register: bool):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_fake_xir = None


def fake_xir_module():
    """tests/fake_vart/xir (the one fake xir: it parses serial_v2 xmodels and fails like the
    real one), loaded by path for code that takes an `xir_module` argument. It is NOT put in
    sys.modules as `xir` and fake_vart is not put on sys.path, so a later `import xir` /
    `import vart` still does not find the fakes. Its helpers `_fatal` and `xmodel_pb` are
    registered under those names (as _xmodel_pb() already does), the same files fake vart
    imports under use_fake_vart(), so EmulatedAbort is one class for both."""
    global _fake_xir
    with _lock:
        if _fake_xir is None:
            if "_fatal" not in sys.modules:
                _load_by_path("_fatal", FAKE_VART_DIR / "_fatal.py", register=True)
            _xmodel_pb()
            _fake_xir = _load_by_path("fake_vart_xir", FAKE_VART_DIR / "xir" / "__init__.py",
                                      register=False)
        return _fake_xir


def write_emulated_xmodel(path: Path, *, q_h5: str | None = None, in_fix: int = 6,
                          out_fix: int = 4, batch: int = 1, classes: int = 25,
                          dpu_subgraphs: int = 1, in_dtype: str = "xint8",
                          with_fix: bool = True, compute: str = "keras",
                          in_dims=None, fingerprint: int | None = FINGERPRINT_3_0) -> Path:
    """A compiled-model stand-in read by tests/fake_vart (xir/vart emulation): a protobuf in
    xir's serial_v2 schema with a USER input subgraph, N DPU subgraphs and a CPU tail; the DPU
    subgraph runs the QUANTIZED Keras model `q_h5` in the fake vart ("record": only records
    its inputs)."""
    return Path(_xmodel_pb().write_emulated_xmodel(
        path, q_h5=q_h5, in_fix=in_fix if with_fix else None,
        out_fix=out_fix if with_fix else None, batch=batch, classes=classes,
        dpu_subgraphs=dpu_subgraphs, in_dtype=in_dtype, compute=compute, in_dims=in_dims,
        fingerprint=fingerprint))


def write_manifest(path: Path, xmodel: Path, labels: list[str], in_fix: int, out_fix: int,
                   sha256: str | None = None, mirror: bool = False,
                   threshold: float = 0.0) -> Path:
    """The deploy manifest the compile stage writes beside the xmodel (schema 1)."""
    if sha256 is None:
        sha256 = hashlib.sha256(Path(xmodel).read_bytes()).hexdigest()
    data = {"schema": 1, "name": "signnet",
            "xmodel": {"file": Path(xmodel).name, "sha256": sha256},
            "board": "ZCU104", "target": {"name": "DPUCZDX8G_ISA1_B4096",
                                          "fingerprint": hex(FINGERPRINT_3_0)},
            "vitis_ai_version": "3.5",
            "input": {"name": "quant_image", "shape": [1, 28, 28, 1], "dtype": "xint8",
                      "fix_point": in_fix},
            "output": {"name": "quant_logits", "shape": [1, len(labels)], "dtype": "xint8",
                       "fix_point": out_fix},
            "labels": labels, "labels_file": "labels.txt",
            "preprocess": {"width": 28, "height": 28, "color": "gray",
                           "scale": 0.00392156862745098, "resize": "area", "layout": "NHWC"},
            "recognition": {"threshold": threshold,
                            "no_hand_label": "nothing" if "nothing" in labels else None,
                            "mirror": bool(mirror), "how": "test"}}
    Path(path).write_text(json.dumps(data, indent=1))
    return Path(path)


def use_fake_vart(monkeypatch):
    """Make `import xir` / `import vart` (and `python3 -m xdputil query`, which the app runs to
    read the board's fingerprint) find tests/fake_vart for one test; returns the fresh vart
    module. Undo with drop_fake_vart() (the monkeypatch restores sys.path and PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(FAKE_VART_DIR))
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(FAKE_VART_DIR) + (os.pathsep + old if old else ""))
    drop_fake_vart()
    import vart
    assert getattr(vart, "EMULATED", False), "a real vart module shadows the emulation"
    vart.EMULATION.reset()
    return vart


def drop_fake_vart():
    for name in ("vart", "xir", "xdputil"):
        sys.modules.pop(name, None)


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
