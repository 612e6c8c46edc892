"""model.color: the colour model (the default) through train, freeze and quantize, the app's crops,
and the grey option.

The suite's small build is grey (tests/conftest.py); here the same chain runs with 3 channels:
the photos stay colour, Sign MNIST goes in as equal B, G, R (what the app's GRAY2BGR does to
a grey frame), and every bundle tells the app to feed BGR.
"""
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import QUICK_TRAIN as QUICK
from dpu_app import datasets as DS
from dpu_app.contract import Preprocess, load_manifest
from model import augment as A

BGR = ["--set", "model.color=bgr", "--set", "quantize.include_fast_ft=true"]   # the defaults


def _stage(repo_root, stage, build, *extra):
    r = subprocess.run([sys.executable, "-m", "toolchain", stage, "--build-dir", str(build),
                        *QUICK, *BGR, *extra], cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _quantize(repo_root, build):
    # a 2-epoch model's int8 accuracy is not the point here: the tolerances are opened
    _stage(repo_root, "quantize", build, "--set", "quantize.max_drop_pt=100",
           "--set", "quantize.max_photo_drop_pt=100", "--set", "quantize.calib_size=200")


def _ensure_quantized(repo_root, build):
    """freeze + quantize the colour build unless an earlier test of this module did."""
    if not (build / "quantize" / "quantized.h5").exists():
        _stage(repo_root, "freeze", build)
        _quantize(repo_root, build)


@pytest.fixture(scope="module")
def colour_build(tmp_path_factory, repo_root):
    build = tmp_path_factory.mktemp("colour_build")
    r = _stage(repo_root, "train", build, "--set", "train.epochs=2")
    assert "input 28x28 BGR" in r.stdout
    return build


def test_colour_training_bundle_says_bgr_and_keeps_the_photos_colour(colour_build):
    import tensorflow as tf
    model = tf.keras.models.load_model(str(colour_build / "train" / "model.h5"), compile=False)
    assert tuple(model.input_shape[1:]) == (28, 28, 3)
    man = load_manifest(str(colour_build / "train" / "manifest.json"))
    assert man.preprocess.color == "bgr" and man.preprocess.channels == 3
    with np.load(colour_build / "train" / "heldout.npz") as z:
        sm, ph = z["sign_mnist_test_x"], z["photos_val_x"]
    assert sm.shape[1:] == (28, 28, 3) and ph.shape[1:] == (28, 28, 3)
    assert (sm[..., 0] == sm[..., 1]).all() and (sm[..., 1] == sm[..., 2]).all()
    assert (ph[..., 0] != ph[..., 2]).any(), "the validation photos lost their colour"


def test_app_crops_the_validation_photos_exactly_as_the_trainer(colour_build):
    """The exported validation folder, cut by the app's own code with the manifest's
    preprocessing, gives the very pixels the trainer scored."""
    man = load_manifest(str(colour_build / "train" / "manifest.json"))
    pf = DS.scan_photo_folder(str(colour_build / "train" / "photos_val"))
    app = [DS.photo_inputs(p, DS.read_photo(p), man.preprocess)[0] for p in pf.photos]
    app = np.stack([a for a in app if a is not None])
    with np.load(colour_build / "train" / "heldout.npz") as z:
        trainer = z["photos_val_x"]
    key = lambda arr: sorted(a.tobytes() for a in arr)          # noqa: E731 (order differs)
    assert app.shape == trainer.shape and key(app) == key(trainer)


def test_colour_freeze_and_quantize_keep_three_channels(colour_build, repo_root):
    _stage(repo_root, "freeze", colour_build)
    io = json.loads((colour_build / "freeze" / "io.json").read_text())
    assert io["input_shape"] == [None, 28, 28, 3]
    _quantize(repo_root, colour_build)
    for stage in ("freeze", "quantize"):
        man = load_manifest(str(colour_build / stage / "manifest.json"))
        assert man.preprocess.color == "bgr", stage
    import tensorflow as tf
    from vitis_quantizer import quantize_scope
    with quantize_scope():
        q = tf.keras.models.load_model(str(colour_build / "quantize" / "quantized.h5"),
                                       compile=False)
    assert tuple(q.input_shape[1:]) == (28, 28, 3)


def test_bgr_pixel_params_grey_share_and_white_balance():
    acfg = SimpleNamespace(enabled=True, brightness=0.0, contrast=0.0, gamma=0.0, blur=0.0,
                           noise=0.0, greyscale=0.5, white_balance=0.2)
    rng = np.random.default_rng(0)
    p = A.pixel_params(rng, 400, acfg, channels=3)
    assert p.shape == (400, 9)
    assert 0.35 < p[:, 5].mean() < 0.65 and set(np.unique(p[:, 5])) <= {0.0, 1.0}
    assert p[:, 6:].min() >= 1 / 1.2 - 1e-6 and p[:, 6:].max() <= 1.2 + 1e-6
    grey_only = A.pixel_params(np.random.default_rng(0), 400, acfg, channels=1)
    assert grey_only.shape == (400, 5)
    off = A.pixel_params(rng, 3, SimpleNamespace(enabled=False), channels=3)
    assert (off == np.array([0, 1, 1, 0, 0, 0, 1, 1, 1], np.float32)).all()


def test_skin_tint_gives_a_share_of_the_first_rows_skin_gains_and_leaves_the_rest():
    acfg = SimpleNamespace(enabled=True, brightness=0.0, contrast=0.0, gamma=0.0, blur=0.0,
                           noise=0.0, greyscale=0.5, white_balance=0.0)
    p = A.pixel_params(np.random.default_rng(0), 600, acfg, channels=3)
    before = p.copy()
    rng = np.random.default_rng(1)
    A.skin_tint(rng, p, 400, 0.5)
    changed = np.flatnonzero((p != before).any(1))
    assert changed.max() < 400 and 150 < len(changed) < 250    # only the first 400, about half
    b, g, r = p[changed, 6], p[changed, 7], p[changed, 8]
    assert (r == 1).all() and (g < r).all() and (b < g).all() and (b > 0.3).all()
    assert (p[changed, 5] == 0).all()                          # a tinted image is not made grey
    state = rng.bit_generator.state
    A.skin_tint(rng, p, 400, 0.0)                               # off: draws nothing
    assert rng.bit_generator.state == state


def test_bgr_pixels_made_grey_are_the_apps_grey():
    import cv2
    img = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    params = np.array([[0, 1, 1, 0, 0, 1, 1, 1, 1],      # made grey, nothing else
                       [0, 1, 1, 0, 0, 0, 1, 1, 1]],     # untouched
                      np.float32)
    out = A.pixels_tf(img.astype(np.float32) / 255, params, np.array([1, 2])).numpy()
    want = cv2.cvtColor(img[0], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    for c in range(3):
        assert np.abs(out[0, :, :, c] - want).max() < 1 / 255 + 1e-6
    assert np.abs(out[1] - img[1] / 255).max() < 1e-6


def test_clutter_replaces_the_background_of_colour_context_crops():
    rng = np.random.default_rng(2)
    ctx = np.full((4, 20, 20, 3), 200, np.uint8)
    bgs = np.zeros((3, 20, 20, 3), np.uint8)
    masks = A.hand_masks(np.full((4, 2), 0.4, np.float32), 20)
    out = A.clutter(rng, ctx, masks, bgs, 1.0)
    assert out.shape == ctx.shape
    assert (out[:, 10, 10] == 200).all() and (out[:, 0, 0] == 0).all()


def test_preprocess_for_input_picks_bgr_for_three_channels():
    assert Preprocess.for_input((28, 28, 3)).color == "bgr"
    assert Preprocess.for_input((28, 28, 1)).color == "gray"


def test_grey_option_still_trains_a_one_channel_model(tmp_path, repo_root):
    """model.color=grey (the default before colour won on the photos): 1 input channel, a
    grey manifest, grey held-out arrays."""
    r = subprocess.run([sys.executable, "-m", "toolchain", "train", "--build-dir", str(tmp_path),
                        *QUICK, "--set", "model.color=grey", "--set", "train.epochs=1"],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "input 28x28 grey" in r.stdout
    man = load_manifest(str(tmp_path / "train" / "manifest.json"))
    assert man.preprocess.color == "gray" and man.preprocess.channels == 1
    with np.load(tmp_path / "train" / "heldout.npz") as z:
        assert z["sign_mnist_test_x"].ndim == 3 and z["photos_val_x"].ndim == 3


def test_colour_models_in_the_apps_host_backends_match_keras(colour_build, repo_root):
    """The app's host backends (TFLite of the float and of the int8 model) give Keras's
    probabilities on the colour held-out crops (run after the quantize test above)."""
    import tensorflow as tf
    from dpu_app.contract import softmax
    from dpu_app.host_backend import HostBackend
    from model.evaluate import load_heldout
    from model.data import as_float
    from vitis_quantizer import quantize_scope
    q_h5 = colour_build / "quantize" / "quantized.h5"
    _ensure_quantized(repo_root, colour_build)
    classes, sets = load_heldout(colour_build / "train" / "heldout.npz")
    x = as_float(np.concatenate([v[0][:40] for v in sets.values()]))
    assert x.shape[1:] == (28, 28, 3)
    fl = tf.keras.models.load_model(str(colour_build / "train" / "model.h5"), compile=False)
    with quantize_scope():
        q = tf.keras.models.load_model(str(q_h5), compile=False)
    for path, ref in ((colour_build / "train" / "model.h5", fl), (q_h5, q)):
        want = softmax(ref.predict(x, verbose=0))
        got = HostBackend(str(path), list(classes), Preprocess.for_input((28, 28, 3)),
                          runtime="tflite").infer(x)
        assert np.abs(got - want).max() < 1e-4, path.name


def test_colour_xmodel_through_the_vart_emulation_is_the_host_int8(colour_build, repo_root,
                                                                   tmp_path, monkeypatch):
    """A 3-channel compiled-model stand-in (tests/fake_vart) read by the app's vart backend:
    the same int8 arithmetic as the host int8 backend, to 1e-6."""
    from dpu_app.host_backend import HostBackend
    from model.evaluate import load_heldout
    from model.data import as_float
    from vart_emulation import (drop_fake_vart, quant_fix_points, use_fake_vart,
                                write_emulated_xmodel)
    q_h5 = colour_build / "quantize" / "quantized.h5"
    _ensure_quantized(repo_root, colour_build)
    classes, sets = load_heldout(colour_build / "train" / "heldout.npz")
    x = as_float(np.concatenate([v[0][:20] for v in sets.values()]))
    pp = Preprocess.for_input((28, 28, 3))
    in_fix, out_fix = quant_fix_points(str(q_h5))
    xm = write_emulated_xmodel(tmp_path / "signnet.xmodel", q_h5=str(q_h5), in_fix=in_fix,
                               out_fix=out_fix, classes=len(classes), in_dims=[1, 28, 28, 3])
    host = HostBackend(str(q_h5), list(classes), pp, runtime="tflite").infer(x)
    use_fake_vart(monkeypatch)
    try:
        from dpu_app.vart_backend import VartBackend
        got = VartBackend(str(xm), list(classes), pp).infer(x)
    finally:
        drop_fake_vart()
    np.testing.assert_allclose(got, host, rtol=0, atol=1e-6)
