"""One golden check across every way the model is run (FINN's verify_steps, hls4ml's
profiling.compare): a fixed set of inputs — the small build's held-out Sign MNIST rows, real
photo crops and no-hand crops — goes through each backend, and each is compared with its
reference under a stated tolerance:

    backend                      reference        tolerance (softmax probabilities)
    frozen .pb (TF1 flow)        float Keras      max |diff| <= 1e-4
    app host, float, TFLite      float Keras      max |diff| <= 1e-4
    int8 Keras (quantize_scope)  float Keras      top-1 agrees on >= 90 % (quantization may move
                                                  a few close calls; the ladder reports the loss)
    app host, int8, TFLite       int8 Keras       max |diff| <= 1e-4
    VART emulation (int8 DPU)    app host, int8   max |diff| <= 1e-6 (same int8 arithmetic)

The board is the next rung: `make board-bench` runs the same app code on the DPU and the ladder
compares it with int8.
"""
import numpy as np
import pytest

from dpu_app.contract import Preprocess, softmax

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")   # vitis_quantizer autograph
PER_SET = 64


@pytest.fixture(scope="module")
def golden(small_build):
    from model.evaluate import load_heldout
    from model.data import as_float
    classes, sets = load_heldout(small_build[0] / "train" / "heldout.npz")
    x = np.concatenate([v[0][:PER_SET] for v in sets.values()])
    assert len(x) >= 2 * PER_SET and set(sets) >= {"sign_mnist_test", "photos_val"}
    return list(classes), as_float(x)


@pytest.fixture(scope="module")
def outputs(golden, dpu_models, tmp_path_factory):
    """{backend: softmax probabilities on the golden inputs}."""
    import tensorflow as tf
    from dpu_app.host_backend import HostBackend
    from quantize.freeze import freeze_graph, run_frozen, strip_dropout
    from vart_emulation import _load_quantized
    classes, x = golden
    model = tf.keras.models.load_model(dpu_models["float"], compile=False)
    gd, ins, outs = freeze_graph(strip_dropout(model))
    out = {"float": softmax(model.predict(x, verbose=0)),
           "frozen": softmax(run_frozen(gd, ins[0], outs[0], x)),
           "int8": softmax(_load_quantized(dpu_models["quant"]).predict(x, verbose=0))}
    for name, path in (("host_float", dpu_models["float"]), ("host_int8", dpu_models["quant"])):
        out[name] = HostBackend(path, classes, Preprocess(), runtime="tflite").infer(x)
    return out


def vart_probs(tmp_path, dpu_models, classes, x, monkeypatch):
    from vart_emulation import (drop_fake_vart, quant_fix_points, use_fake_vart,
                                write_emulated_xmodel)
    in_fix, out_fix = quant_fix_points(dpu_models["quant"])
    xm = write_emulated_xmodel(tmp_path / "signnet.xmodel", q_h5=dpu_models["quant"],
                               in_fix=in_fix, out_fix=out_fix, classes=len(classes))
    use_fake_vart(monkeypatch)
    try:
        from dpu_app.vart_backend import VartBackend
        return VartBackend(str(xm), classes, Preprocess()).infer(x)
    finally:
        drop_fake_vart()


@pytest.mark.parametrize("backend,reference,max_diff", [
    ("frozen", "float", 1e-4),
    ("host_float", "float", 1e-4),
    ("host_int8", "int8", 1e-4),
])
def test_backend_matches_its_reference(outputs, backend, reference, max_diff):
    a, b = outputs[backend], outputs[reference]
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= max_diff, (backend, float(np.abs(a - b).max()))
    assert (a.argmax(1) == b.argmax(1)).all()


def test_int8_keeps_the_float_decisions(outputs):
    agree = (outputs["int8"].argmax(1) == outputs["float"].argmax(1)).mean()
    assert agree >= 0.90, agree


def test_vart_emulation_is_the_host_int8_arithmetic(golden, dpu_models, outputs, tmp_path,
                                                    monkeypatch):
    classes, x = golden
    p = vart_probs(tmp_path, dpu_models, classes, x, monkeypatch)
    np.testing.assert_allclose(p, outputs["host_int8"], rtol=0, atol=1e-6)


def test_the_golden_check_notices_a_wrong_backend(golden, dpu_models, outputs):
    """The comparison can fail: the float model fed unscaled pixels (0..255, a classic
    preprocessing slip) is far outside the tolerance."""
    from dpu_app.host_backend import HostBackend
    classes, x = golden
    host = HostBackend(dpu_models["float"], classes, Preprocess(), runtime="tflite")
    wrong = host.infer(x * 255)
    assert np.abs(wrong - outputs["float"]).max() > 1e-4
