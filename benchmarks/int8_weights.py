#!/usr/bin/env python3
"""Benchmark: where int8 hurts the hand-landmark network, weights only.

    python benchmarks/int8_weights.py [--build-dir build] [--crops 32]

Rounds the float network's weights the way the DPU stores them (one power-of-two scale per
tensor, int8), layer type by layer type, keeps activations float, and prints how far the
landmarks move against the float network (mean distance in pixels of the 224 px input) on
real hand crops (the calibration squares make train recorded). Also the same with the
depthwise layers split by weight magnitude (quantize/dwsplit.py), with per-channel depthwise
weights (what a per-channel quantizer would give; the DPU has none), with the biases rounded
too (the DPU's biases are int8 as well), and with the expand convolutions split by output
channel (quantize.conv_split_groups). The real quantizer (make quantize) adds activation
rounding on top: its ladder has the full figure.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pof2(w, fix):
    s = 2.0 ** fix
    return np.clip(np.round(w * s), -128, 127) / s


def tensor_fix(w):
    m = float(np.abs(w).max())
    return int(np.floor(np.log2(127.0 / m))) if m > 0 else 7


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--crops", type=int, default=32)
    ap.add_argument("--config", default=None, help="ignored")
    ap.add_argument("--set", action="append", default=[], help="ignored")
    a = ap.parse_args()
    import tensorflow as tf
    from dpu_app import hands as H
    from quantize.dwsplit import split_depthwise
    from quantize.hands_ladder import crops_of, load_refs
    build = Path(a.build_dir)
    model_path = build / "train" / "model.h5"
    if not model_path.is_file():
        print(f"error: {model_path} not found: run make train (model.kind landmarks) first",
              file=sys.stderr)
        return 2
    refs = load_refs(build / "train" / "heldout.npz")
    x = H.to_input(crops_of(refs["calib_files"], refs["calib_squares"], limit=a.crops, seed=3))
    model = tf.keras.models.load_model(str(model_path), compile=False)
    ref = H.decode(model.predict(x, verbose=0))[0]

    def moved(m, kinds, per_channel_dw=False, bias=False):
        orig = [layer.get_weights() for layer in m.layers]
        for layer, w in zip(m.layers, orig):
            kind = type(layer).__name__
            if not w or kind not in kinds:
                continue
            k = w[0]
            if per_channel_dw and kind == "DepthwiseConv2D":
                q = np.stack([pof2(k[:, :, c], tensor_fix(k[:, :, c]))
                              for c in range(k.shape[2])], axis=2)
            else:
                q = pof2(k, tensor_fix(k))
            rest = [pof2(b, tensor_fix(b)) for b in w[1:]] if bias else w[1:]
            layer.set_weights([q] + rest)
        got = H.decode(m.predict(x, verbose=0))[0]
        for layer, w in zip(m.layers, orig):
            layer.set_weights(w)
        return float(np.sqrt(((got - ref)[..., :2] ** 2).sum(-1)).mean())

    everything = ("Conv2D", "DepthwiseConv2D", "Dense")
    rows = [("all weights, per tensor", moved(model, everything)),
            ("depthwise weights only", moved(model, ("DepthwiseConv2D",))),
            ("1x1/3x3 convolution weights only", moved(model, ("Conv2D",))),
            ("dense weights only", moved(model, ("Dense",))),
            ("all, depthwise split (quantize/dwsplit.py, 4 groups)",
             moved(split_depthwise(model, 4), everything)),
            ("all, depthwise per channel (not available on the DPU)",
             moved(model, everything, per_channel_dw=True)),
            ("all + biases, depthwise split", moved(split_depthwise(model, 4), everything,
                                                    bias=True)),
            ("all + biases, depthwise and expand convolutions split (make quantize)",
             moved(split_depthwise(model, 4, 4), everything, bias=True))]
    print(f"landmark error against the float network, weights rounded to int8 power-of-two, "
          f"activations float; {len(x)} hand crops of {build}:")
    for name, px in rows:
        print(f"  {name:72s} {px:6.2f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
