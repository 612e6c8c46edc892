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

The same holds for the convolutions that expand into a depthwise layer (Conv2D -> ReLU6 ->
DepthwiseConv2D -> ReLU6 -> Conv2D): their output channels span as much, and their int8
biases were the largest single error left (measured: one such layer's bias, rounded alone,
moved the landmarks by 3 px). Each is split by output channel into up to `conv_groups`
Conv2D layers (+ their ReLU6) joined by Concatenate; the concatenation permutes the channels,
so the depthwise layer's channels and the next convolution's input channels are permuted
the same way: the same function in float, no extra MACs, and each group gets its own weight
and bias scale.
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


def conv_groups_of(kernel: np.ndarray, groups: int) -> list:
    """Output-channel index arrays of a Conv2D kernel (kh, kw, in, out), grouped as
    channel_groups groups depthwise channels."""
    return channel_groups(kernel.reshape(1, -1, kernel.shape[-1], 1), groups)


def _only_consumer(layer):
    nodes = layer._outbound_nodes
    return nodes[0].outbound_layer if len(nodes) == 1 else None


def expand_chains(model) -> dict:
    """{expand conv name: (relu, depthwise, relu, next)} for every Conv2D -> ReLU ->
    DepthwiseConv2D -> ReLU -> Conv2D chain with single consumers; `next` may also be a Dense
    behind a GlobalAveragePooling2D (the network's head): both keep channels apart."""
    import tensorflow as tf
    L = tf.keras.layers
    chains = {}
    for layer in model.layers:
        if type(layer) is not L.Conv2D:
            continue
        chain, cur = [], layer
        for want in (L.ReLU, L.DepthwiseConv2D, L.ReLU):
            cur = _only_consumer(cur)
            if cur is None or type(cur) is not want:
                break
            chain.append(cur)
        if len(chain) != 3:
            continue
        nxt = _only_consumer(cur)
        if nxt is not None and type(nxt) is L.GlobalAveragePooling2D:
            nxt = _only_consumer(nxt)
            nxt = nxt if nxt is not None and type(nxt) is L.Dense else None
        if nxt is not None and type(nxt) in (L.Conv2D, L.Dense):
            chains[layer.name] = (*chain, nxt)
    return chains


def split_depthwise(model, groups: int = 4, conv_groups: int = 1):
    """A copy of a functional Keras model with every DepthwiseConv2D split as above, and with
    conv_groups > 1 every expand convolution too."""
    import tensorflow as tf
    layers = tf.keras.layers
    tensors = {}
    first = model.layers[0]
    inp = tf.keras.Input(shape=model.input_shape[1:], name=first.name)
    tensors[first.name] = inp
    parts_of: dict = {}         # expand conv name -> its output-channel groups
    perm_of: dict = {}          # depthwise / next layer name -> the channel order it receives
    skip_relu: set = set()
    if conv_groups > 1:
        chains = expand_chains(model)
        for name, (relu, dw, _, nxt) in chains.items():
            if nxt.name in chains:            # the next conv is split itself: leave this one
                continue
            parts = conv_groups_of(model.get_layer(name).get_weights()[0], conv_groups)
            if len(parts) > 1:
                parts_of[name] = parts
                perm_of[dw.name] = perm_of[nxt.name] = np.concatenate(parts)
                skip_relu.add(relu.name)
    for layer in model.layers[1:]:
        inbound = layer._inbound_nodes[0].inbound_layers
        inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
        xs = [tensors[x.name] for x in inbound]
        x = xs[0] if len(xs) == 1 else xs
        if layer.name in skip_relu:             # applied per group before the Concatenate
            tensors[layer.name] = x
            continue
        w = layer.get_weights()
        if layer.name in perm_of:               # its input channels, in the new order
            perm = perm_of[layer.name]          # (a depthwise layer's are its channels)
            depthwise = isinstance(layer, layers.DepthwiseConv2D)
            w = [w[0][..., perm, :]] + [b[perm] if depthwise else b for b in w[1:]]
        kernel, bias = (w[0], w[1] if len(w) > 1 else None) if w else (None, None)
        if layer.name in parts_of:
            relu = _only_consumer(layer)
            outs = []
            for g, idx in enumerate(parts_of[layer.name]):
                cfg = layer.get_config()
                cfg.update(name=f"{layer.name}_c{g}", filters=int(len(idx)))
                new = layers.Conv2D.from_config(cfg)
                out = new(x)
                new.set_weights([kernel[..., idx]] + ([bias[idx]] if bias is not None else []))
                rcfg = relu.get_config()
                rcfg.update(name=f"{relu.name}_c{g}")
                outs.append(layers.ReLU.from_config(rcfg)(out))
            tensors[layer.name] = layers.Concatenate(axis=-1, name=f"{layer.name}_cat")(outs)
            continue
        if isinstance(layer, layers.DepthwiseConv2D):
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
        new.set_weights(w)
    out = tensors[model.layers[-1].name]
    return tf.keras.Model(inp, out, name=model.name)
