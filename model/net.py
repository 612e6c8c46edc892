"""The DPU-friendly CNN.

Functional Keras (vitis-quantizer needs a Functional model; a Sequential one fails),
built only from layers the DPUCZDX8G runs, in the order that folds:
Conv2D(no bias) -> BatchNormalization -> ReLU, Max/AvgPooling between stages, then either
GlobalAveragePooling or Flatten, Dense -> BN -> ReLU, Dense(classes) **logits** (24 letters +
`nothing`; no Softmax: the softmax lives in the loss, argmax in the app). Dropout is removed by the quantizer.
Input: float32 SxSxC in [0, 1] (S = model.input_size, C = 1 grey or 3 BGR: model.color); outputs: one logit per class (the 24
letters, plus `nothing` when data.no_hand is on).
"""
from __future__ import annotations

import math

# Layers the DPUCZDX8G flow accepts (facts file, "What runs on the DPU"). BatchNormalization is
# folded into the conv/dense before it; Dropout is removed at quantization.
DPU_LAYER_TYPES = frozenset({
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Flatten", "Reshape",
    "ZeroPadding2D", "UpSampling2D", "Concatenate", "Add", "Multiply", "ReLU",
    "BatchNormalization", "Dropout",
})
# ISA1_B4096 conv limits.
CONV_KERNEL_MAX = 16
CONV_STRIDE_MAX = 8
CONV_CHANNELS_MAX = 4096
CONV_KW_KH_ICG_MAX = 2048     # kw * kh * ceil(ic / 16)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def channels(mcfg) -> int:
    """Input channels of the configured model: 1 (grey) or 3 (BGR)."""
    return 3 if mcfg.color == "bgr" else 1


def build_model(mcfg, num_classes: int, seed: int = 0):
    """Build the configured network. Returns an uncompiled Functional tf.keras.Model."""
    import tensorflow as tf
    from tensorflow.keras import layers

    init = tf.keras.initializers.HeNormal
    k = mcfg.kernel_size
    size = mcfg.input_size
    inp = tf.keras.Input(shape=(size, size, channels(mcfg)), name=INPUT_NAME)
    x = inp
    n = 0
    if mcfg.stem:
        x = layers.Conv2D(mcfg.stem, 3, strides=2, padding="same", use_bias=False,
                          kernel_initializer=init(seed=seed), name="stem")(x)
        x = layers.BatchNormalization(momentum=mcfg.bn_momentum, name="bn_stem")(x)
        x = layers.ReLU(name="relu_stem")(x)
    for s, width in enumerate(mcfg.widths):
        if s > 0:
            pool = layers.MaxPooling2D if mcfg.pool == "max" else layers.AveragePooling2D
            x = pool(pool_size=2, name=f"pool{s}")(x)
        for b in range(mcfg.convs_per_stage):
            n += 1
            x = layers.Conv2D(width, k, padding="same", use_bias=False,
                              kernel_initializer=init(seed=seed + n), name=f"conv{s + 1}_{b + 1}")(x)
            x = layers.BatchNormalization(momentum=mcfg.bn_momentum, name=f"bn{s + 1}_{b + 1}")(x)
            x = layers.ReLU(name=f"relu{s + 1}_{b + 1}")(x)
        if mcfg.conv_dropout > 0:
            x = layers.Dropout(mcfg.conv_dropout, seed=seed + 100 + s, name=f"drop{s + 1}")(x)
    if mcfg.head == "gap":
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
    if mcfg.dense_units > 0:
        if mcfg.dropout > 0:
            x = layers.Dropout(mcfg.dropout, seed=seed + 200, name="drop_fc")(x)
        x = layers.Dense(mcfg.dense_units, use_bias=False, kernel_initializer=init(seed=seed + 300),
                         name="fc")(x)
        x = layers.BatchNormalization(momentum=mcfg.bn_momentum, name="bn_fc")(x)
        x = layers.ReLU(name="relu_fc")(x)
    if mcfg.dropout > 0:
        x = layers.Dropout(mcfg.dropout, seed=seed + 201, name="drop_out")(x)
    out = layers.Dense(num_classes, kernel_initializer=tf.keras.initializers.GlorotUniform(
        seed=seed + 400), name=OUTPUT_NAME)(x)
    return tf.keras.Model(inp, out, name="signnet")


def dpu_violations(model) -> list[str]:
    """Reasons a model would not map onto the DPUCZDX8G as one subgraph (empty = fine).

    Checks the layer set, Softmax anywhere (layer or activation), activations other than
    ReLU, and the conv limits. Used by the tests here and by the quantize stage's check.
    """
    import tensorflow as tf

    problems = []
    if isinstance(model, tf.keras.Sequential) or not getattr(model, "_is_graph_network", False):
        problems.append(f"model '{model.name}' is not a Functional model "
                        f"(vitis-quantizer needs tf.keras.Model(inputs, outputs))")
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Softmax":
            problems.append(f"{layer.name}: Softmax layer (keep softmax out of the deployed "
                            f"graph; take it in the loss and argmax in the app)")
            continue
        if kind not in DPU_LAYER_TYPES:
            problems.append(f"{layer.name}: layer type {kind} is not supported by the DPU")
        act = getattr(layer, "activation", None)
        if act is not None:
            name = getattr(act, "__name__", str(act))
            if name not in ("linear", "relu"):
                problems.append(f"{layer.name}: activation '{name}' is not supported by the "
                                f"DPU (use linear + a ReLU layer{'; no softmax' if name == 'softmax' else ''})")
        if kind == "ReLU":
            if layer.negative_slope not in (0, 0.0) or layer.threshold not in (0, 0.0):
                problems.append(f"{layer.name}: ReLU with slope/threshold is not supported")
        if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"):
            kh, kw = layer.kernel_size
            sh, sw = layer.strides
            ic = int(layer.input_shape[-1])
            oc = int(layer.output_shape[-1])
            if not (1 <= kh <= CONV_KERNEL_MAX and 1 <= kw <= CONV_KERNEL_MAX):
                problems.append(f"{layer.name}: kernel {kh}x{kw} outside 1..{CONV_KERNEL_MAX}")
            if not (1 <= sh <= CONV_STRIDE_MAX and 1 <= sw <= CONV_STRIDE_MAX):
                problems.append(f"{layer.name}: stride {sh}x{sw} outside 1..{CONV_STRIDE_MAX}")
            if ic > CONV_CHANNELS_MAX or oc > CONV_CHANNELS_MAX:
                problems.append(f"{layer.name}: {max(ic, oc)} channels > {CONV_CHANNELS_MAX}")
            if kw * kh * math.ceil(ic / 16) > CONV_KW_KH_ICG_MAX:
                problems.append(f"{layer.name}: kw*kh*ceil(ic/16) = "
                                f"{kw * kh * math.ceil(ic / 16)} > {CONV_KW_KH_ICG_MAX}")
    return problems
