"""The network is Functional, DPU-friendly, and outputs logits (no Softmax)."""
import pytest

from model.net import build_model, dpu_violations
from toolchain.config import load_config


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf
    return tf


@pytest.mark.parametrize("overrides", [
    [],
    ["model.head=gap", "model.dense_units=0"],
    ["model.widths=[8,16,32,64]", "model.convs_per_stage=1", "model.pool=avg",
     "model.conv_dropout=0.1"],
    ["model.input_size=48"],
    ["model.color=grey"],
])
def test_configured_models_are_dpu_friendly(tf, overrides):
    cfg = load_config(None, overrides)
    m = build_model(cfg.model, 25, seed=1)
    assert isinstance(m, tf.keras.Model) and not isinstance(m, tf.keras.Sequential)
    assert m._is_graph_network                       # Functional
    size = cfg.model.input_size
    assert m.input_shape == (None, size, size, 1 if cfg.model.color == "grey" else 3)
    assert m.output_shape == (None, 25)
    kinds = {type(layer).__name__ for layer in m.layers}
    assert "Softmax" not in kinds
    assert m.layers[-1].activation.__name__ == "linear"   # logits out
    assert dpu_violations(m) == []
    # Conv -> BN -> ReLU order (folds into the conv on the DPU)
    names = [type(layer).__name__ for layer in m.layers]
    for i, n in enumerate(names):
        if n == "Conv2D":
            assert names[i + 1:i + 3] == ["BatchNormalization", "ReLU"]


def test_widths_and_depth_follow_the_config(tf):
    cfg = load_config(None, ["model.widths=[8,12]", "model.convs_per_stage=3"])
    m = build_model(cfg.model, 24)
    convs = [layer for layer in m.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [8, 8, 8, 12, 12, 12]


def test_dpu_check_flags_softmax_bad_activation_and_limits(tf):
    L = tf.keras.layers
    inp = tf.keras.Input((28, 28, 1))
    x = L.Conv2D(8, 17, padding="same", name="bigkernel")(inp)
    x = L.Conv2D(8, 3, activation="sigmoid", name="sig")(x)
    x = L.Conv2D(8, 3, strides=9, name="bigstride")(x)
    x = L.Flatten()(x)
    x = L.Dense(24)(x)
    out = L.Softmax(name="sm")(x)
    problems = " | ".join(dpu_violations(tf.keras.Model(inp, out)))
    assert "bigkernel: kernel 17x17" in problems
    assert "sig: activation 'sigmoid'" in problems
    assert "bigstride: stride 9x9" in problems
    assert "sm: Softmax layer" in problems
    seq = tf.keras.Sequential([L.Input((28, 28, 1)), L.Flatten(), L.Dense(24)])
    assert any("not a Functional model" in p for p in dpu_violations(seq))
    dense_softmax = tf.keras.Model(inp, L.Dense(24, activation="softmax", name="d")(L.Flatten()(inp)))
    assert any("d: activation 'softmax'" in p for p in dpu_violations(dense_softmax))
