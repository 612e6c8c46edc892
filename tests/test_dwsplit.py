"""quantize/dwsplit.py: the int8 split of the landmark network is the same function in float,
stays DPU-only, and gives per-tensor power-of-two int8 its small channels back."""
import re

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from model.net import dpu_violations  # noqa: E402
from quantize.dwsplit import expand_chains, split_depthwise  # noqa: E402

L = tf.keras.layers


def pof2(w):
    m = float(np.abs(w).max())
    fix = int(np.floor(np.log2(127.0 / m))) if m > 0 else 7
    return np.clip(np.round(w * 2.0 ** fix), -128, 127) / 2.0 ** fix


def spread_model(seed=0):
    """A small MobileNetV2-like network whose expand and depthwise channels span 2^0..2^5 in
    weight and bias magnitude, as batch norm folded into MediaPipe's layers makes them (the
    other layers do not): two expand chains,
    the second ending in GlobalAveragePooling2D -> Dense (the network's head)."""
    rng = np.random.default_rng(seed)
    x = inp = tf.keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = L.ReLU(6.0, name="conv1_relu6")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw1")(x)
    x = L.ReLU(6.0, name="dw1_relu6")(x)
    x = L.Conv2D(6, 1, name="project1")(x)
    x = L.Conv2D(16, 1, name="expand2")(x)
    x = L.ReLU(6.0, name="expand2_relu6")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw2")(x)
    x = L.ReLU(6.0, name="dw2_relu6")(x)
    x = L.GlobalAveragePooling2D(name="features")(x)
    out = L.Dense(5, name="head")(x)
    m = tf.keras.Model(inp, out)
    for layer in m.layers:
        w = layer.get_weights()
        if not w:
            continue
        k, b = w
        spread = layer.name in ("conv1", "dw1", "expand2", "dw2")     # the layers split
        top = 6 if spread else 1
        scale = 2.0 ** rng.integers(0, top, size=k.shape[-2 if "dw" in layer.name else -1])
        if "dw" in layer.name:
            k = rng.normal(0, 0.05, k.shape) * scale[None, None, :, None]
        else:
            k = rng.normal(0, 0.05, k.shape) * scale
        b = rng.normal(0, 0.05, b.shape) * scale          # bias scales with its channel
        layer.set_weights([k.astype(np.float32), b.astype(np.float32)])
    return m


def worst_channel_error(layers_, depthwise: bool) -> float:
    """The largest relative rounding error of any one channel's weights (and, for a
    convolution, its bias: a depthwise layer's bias stays whole in its first group) when each
    layer's kernel and bias are rounded per tensor, as the DPU's int8 stores them; channels
    that a layer holds only as zeros (the depthwise groups) are left out."""
    worst = 0.0
    for layer in layers_:
        k, b = layer.get_weights() + [None] * (2 - len(layer.get_weights()))
        qk, qb = pof2(k), (pof2(b) if b is not None else None)
        axis_k = np.moveaxis(k, 2 if depthwise else -1, 0).reshape(k.shape[2 if depthwise
                                                                           else -1], -1)
        axis_q = np.moveaxis(qk, 2 if depthwise else -1, 0).reshape(axis_k.shape)
        for c in range(len(axis_k)):
            if not axis_k[c].any():
                continue
            worst = max(worst, float(np.abs(axis_q[c] - axis_k[c]).max()
                                     / np.abs(axis_k[c]).max()))
            if not depthwise and qb is not None and b[c] != 0:
                worst = max(worst, float(abs(qb[c] - b[c]) / abs(b[c])))
    return worst


@pytest.fixture(scope="module")
def model_and_input():
    m = spread_model()
    x = np.random.default_rng(1).uniform(0, 1, (8, 16, 16, 3)).astype(np.float32)
    return m, x, m.predict(x, verbose=0)


def test_expand_chains_include_the_head_behind_global_pooling(model_and_input):
    m, _, _ = model_and_input
    chains = expand_chains(m)
    assert sorted(chains) == ["conv1", "expand2"]
    assert chains["conv1"][-1].name == "project1" and chains["expand2"][-1].name == "head"


@pytest.mark.parametrize("dw,conv", [(4, 1), (1, 4), (4, 4), (8, 8)])
def test_split_is_the_same_function_and_dpu_only(model_and_input, dw, conv):
    m, x, ref = model_and_input
    s = split_depthwise(m, dw, conv)
    np.testing.assert_allclose(s.predict(x, verbose=0), ref, rtol=1e-5, atol=1e-5)
    assert dpu_violations(s) == []
    kinds = [type(layer).__name__ for layer in s.layers]
    assert ("Concatenate" in kinds) == (conv > 1)
    assert kinds.count("DepthwiseConv2D") > 2 if dw > 1 else kinds.count("DepthwiseConv2D") == 2
    assert sum(int(np.prod(w.shape)) for w in s.weights if "kernel" in w.name and
               "depthwise" not in w.name) == \
        sum(int(np.prod(w.shape)) for w in m.weights if "kernel" in w.name and
            "depthwise" not in w.name)                  # the conv split adds no weights


def test_split_gives_every_channel_its_own_int8_scale(model_and_input):
    """Per-tensor power-of-two int8: in the network as it is, the small channels of a layer
    get a few levels of the large ones' scale; split, each group has its own."""
    m, _, _ = model_and_input
    s = split_depthwise(m, 4, 4)
    for name, dw in (("conv1", False), ("dw1", True), ("expand2", False), ("dw2", True)):
        whole = worst_channel_error([m.get_layer(name)], dw)
        parts = [layer for layer in s.layers if re.fullmatch(rf"{name}_[cg]\d+", layer.name)]
        assert len(parts) > 1, name
        split = worst_channel_error(parts, dw)
        assert split < whole / 2, (name, whole, split)
