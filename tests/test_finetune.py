"""quantize/finetune.py: quantize-aware fine-tuning moves the int8 network toward the float
one without touching vai_q's quantize positions, keeps its outputs on the int8 grid, and keeps
the calibrated weights when fine-tuning does not help."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("vitis_quantizer")

from dpu_app import hands as H  # noqa: E402
from quantize.finetune import finetune, landmark_px  # noqa: E402
from quantize.quantize import quantizer_api, run_quantizer  # noqa: E402
from toolchain.config import load_config  # noqa: E402

L = tf.keras.layers


def teacher_model():
    """A small landmark-shaped network (65 raw outputs, x/y scaled as the real one's) whose
    channels span 2^0..2^5 in weight magnitude, so per-tensor int8 rounds some of them
    coarsely: PTQ leaves an error that fine-tuning can reduce."""
    tf.keras.utils.set_random_seed(3)
    x = inp = tf.keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(16, 3, strides=2, padding="same", name="conv1")(x)
    x = L.ReLU(6.0, name="conv1_relu6")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw1")(x)
    x = L.ReLU(6.0, name="dw1_relu6")(x)
    x = L.Conv2D(16, 1, name="project1")(x)
    x = L.GlobalAveragePooling2D(name="features")(x)
    out = L.Dense(H.RAW_WIDTH, name="head")(x)
    m = tf.keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for layer in m.layers:
        w = layer.get_weights()
        if w:
            k, b = w
            scale = 2.0 ** rng.integers(0, 6, size=k.shape[-2 if "dw" in layer.name else -1])
            k = rng.normal(0, 0.1, k.shape) * (scale[None, None, :, None] if "dw" in layer.name
                                               else scale)
            layer.set_weights([k.astype(np.float32), (b + 0.01).astype(np.float32)])
    return m


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (96, 16, 16, 3)).astype(np.uint8)
    check = rng.integers(0, 256, (32, 16, 16, 3)).astype(np.uint8)
    cfg = load_config(None, ["quantize.calib_batch_size=16", "quantize.include_fast_ft=false"])
    teacher = teacher_model()
    VQ, scope, strategy, _ = quantizer_api()

    def quantized():
        return run_quantizer(VQ, scope, strategy, teacher, H.to_input(crops), cfg.quantize)
    return teacher, quantized, crops, check


def positions(qmodel) -> dict:
    return {w.name: float(w.numpy()) for w in qmodel.non_trainable_weights
            if w.name.endswith("_pos:0")}


def test_fine_tuning_brings_the_int8_network_closer_and_keeps_its_positions(setup):
    teacher, quantized, crops, check = setup
    q = quantized()
    pos = positions(q)
    assert pos, "vai_q's quantize positions were not found"
    res = finetune(q, teacher, crops, check, steps=60, batch=16, lr=1e-3, seed=0,
                   log=lambda m: None)
    assert res["kept"] and res["check_px_after"] < res["check_px_before"], res
    assert positions(q) == pos                       # the graph and its int8 scales as vai_q made them
    y_t = teacher.predict(H.to_input(check), verbose=0)
    assert landmark_px(q.predict(H.to_input(check), verbose=0), y_t) == pytest.approx(
        res["check_px_after"], abs=1e-3)
    # what the DPU computes: the output layer's values stay on its int8 grid
    y = q.predict(H.to_input(check), verbose=0) * 2.0 ** pos["quant_head/post_activation_pos:0"]
    assert np.allclose(y, np.round(y), atol=1e-3)


def test_fine_tuning_that_does_not_help_keeps_the_calibrated_weights(setup):
    teacher, quantized, crops, check = setup
    q = quantized()
    before = [w.numpy().copy() for w in q.trainable_weights]
    res = finetune(q, teacher, crops, check, steps=3, batch=16, lr=0.0, seed=0,
                   log=lambda m: None)
    assert not res["kept"] and res["check_px_after"] == res["check_px_before"]
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, q.trainable_weights))
