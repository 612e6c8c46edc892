"""Split depthwise convolutions by weight magnitude, so per-tensor power-of-two int8 can hold
them (a float-exact rewrite of the network the quantizer sees).

The DPU quantizes weights per tensor with a power-of-two scale (vai_q pof2s). MediaPipe's
hand-landmark network has batch norm folded into its depthwise convolutions, so one layer's
channels span 25x in weight magnitude (dwconv1: largest channel |w| 77, median 3): one scale
for all of them rounds the small channels to a few levels, and the landmarks move by ~20 px
(measured: per-tensor weights alone, activations float). ReLU6 follows every depthwise layer
and sits before it, so cross-layer equalization cannot move the scale elsewhere without
changing what the network computes.

The rewrite: each DepthwiseConv2D becomes up to `groups` DepthwiseConv2D layers that each
keep only the channels of one magnitude class (zeros elsewhere; the bias in the first), summed
by Add: the same function in float, and each class gets its own power-of-two scale. Add is a
DPU op; the depthwise layers cost `groups` times their (small) share of the MACs.
"""
from __future__ import annotations

import numpy as np


def _ideal_fix(w_c: np.ndarray) -> int:
    m = float(np.abs(w_c).max())
    return int(np.floor(np.log2(127.0 / m))) if m > 0 else 99


def channel_groups(w: np.ndarray, groups: int) -> list:
    """Channel index arrays of a depthwise kernel (kh, kw, C, 1), grouped by the power-of-two
    scale each channel would want alone; at most `groups` groups (neighbouring scales merged,
    each group then takes its largest channel's scale, so nothing clips)."""
    c = w.shape[2]
    fixes = np.array([_ideal_fix(w[:, :, i, :]) for i in range(c)])
    distinct = sorted(set(fixes.tolist()))
    if len(distinct) <= groups:
        bounds = [[f] for f in distinct]
    else:                                    # equal-count merge of neighbouring scales
        qs = np.quantile(fixes, np.linspace(0, 1, groups + 1)[1:-1])
        bins = np.searchsorted(qs, fixes, side="right")
        return [np.nonzero(bins == g)[0] for g in range(groups) if (bins == g).any()]
    return [np.nonzero(np.isin(fixes, b))[0] for b in bounds]


def split_depthwise(model, groups: int = 4):
    """A copy of a functional Keras model with every DepthwiseConv2D split as above."""
    import tensorflow as tf
    layers = tf.keras.layers
    tensors = {}
    first = model.layers[0]
    inp = tf.keras.Input(shape=model.input_shape[1:], name=first.name)
    tensors[first.name] = inp
    for layer in model.layers[1:]:
        inbound = layer._inbound_nodes[0].inbound_layers
        inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
        xs = [tensors[x.name] for x in inbound]
        x = xs[0] if len(xs) == 1 else xs
        if isinstance(layer, layers.DepthwiseConv2D):
            w = layer.get_weights()
            kernel, bias = w[0], (w[1] if len(w) > 1 else None)
            parts = channel_groups(kernel, groups)
            if len(parts) > 1:
                outs = []
                for g, idx in enumerate(parts):
                    k = np.zeros_like(kernel)
                    k[:, :, idx, :] = kernel[:, :, idx, :]
                    cfg = layer.get_config()
                    cfg.update(name=f"{layer.name}_g{g}", use_bias=bias is not None and g == 0)
                    new = layers.DepthwiseConv2D.from_config(cfg)
                    out = new(x)
                    new.set_weights([k] + ([bias] if bias is not None and g == 0 else []))
                    outs.append(out)
                y = outs[0]
                for g, o in enumerate(outs[1:], start=1):    # pairwise: 2-input Adds
                    y = layers.Add(name=f"{layer.name}_sum{g}")([y, o])
                tensors[layer.name] = y
                continue
        new = layer.__class__.from_config(layer.get_config())
        tensors[layer.name] = new(x)
        new.set_weights(layer.get_weights())
    out = tensors[model.layers[-1].name]
    return tf.keras.Model(inp, out, name=model.name)
