"""Quantize-aware fine-tuning of the int8 landmark network, with the float network as teacher.

vai_q's post-training quantization fixes one power-of-two position per weight, bias and
activation tensor. The rounding it leaves moves MediaPipe's landmarks by a few pixels (the
splits of quantize/dwsplit.py took it from 26 to about 4.5 px), spread over every layer kind.
This step trains the quantized model itself: its forward pass rounds exactly as the DPU will
(vai_q's own fake-quantize ops, positions frozen by calling it with training=False) and the
rounding passes gradients straight through, so the float weights behind each int8 tensor move
until the int8 network's outputs match the float network's on real hand crops. No labels are
needed (the teacher's outputs are the targets), the positions and the graph do not change, and
the result is the same kind of quantized .h5 that vai_c_tensorflow2 compiles.

If the fine-tuned network is not closer to the float one on held-out crops (training photos
not trained on), the calibrated weights are kept and the step says so.
"""
from __future__ import annotations

import time

import numpy as np


def landmark_px(raw: np.ndarray, ref: np.ndarray) -> float:
    """Mean landmark distance (x, y) between two raw output arrays, in pixels of the input."""
    from dpu_app import hands as H
    a, b = H.decode(raw)[0], H.decode(ref)[0]
    return float(np.sqrt(((a[..., :2] - b[..., :2]) ** 2).sum(-1)).mean())


def finetune(qmodel, teacher, crops: np.ndarray, check: np.ndarray, steps: int, batch: int,
             lr: float, seed: int, log=print) -> dict:
    """Train `qmodel` (vai_q's quantized Keras model, in place) for `steps` batches of uint8
    crops toward `teacher`'s raw outputs; `check` crops (not trained on) decide whether the
    result is kept. Returns what happened, for metrics.json."""
    import tensorflow as tf
    from dpu_app import hands as H
    t0 = time.monotonic()
    # the crops stay uint8 (a float copy of 3,800 crops is 2.3 GB): converted a chunk at a time
    y_all = np.concatenate([teacher.predict(H.to_input(crops[i:i + 256]), batch_size=32,
                                            verbose=0) for i in range(0, len(crops), 256)])
    x_chk = H.to_input(check)
    y_chk = teacher.predict(x_chk, batch_size=32, verbose=0)

    def check_px() -> float:
        return landmark_px(qmodel.predict(x_chk, batch_size=32, verbose=0), y_chk)

    before = check_px()
    saved = [w.numpy() for w in qmodel.trainable_weights]
    opt = tf.keras.optimizers.Adam(lr)
    weights = qmodel.trainable_weights

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(qmodel(x, training=False) - y))
        opt.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    rng = np.random.default_rng(seed)
    order = np.zeros(0, int)
    losses, t_loop, every = [], time.monotonic(), max(1, steps // 10)
    for s in range(steps):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(len(crops))])
        i, order = np.sort(order[:batch]), order[batch:]
        losses.append(float(step(tf.constant(H.to_input(crops[i])), tf.constant(y_all[i]))))
        if (s + 1) % every == 0 or s + 1 == steps:
            left = (time.monotonic() - t_loop) / (s + 1) * (steps - s - 1)
            log(f"  fine-tune step {s + 1}/{steps}: loss {np.mean(losses[-every:]):.2e} "
                f"(about {left / 60:.0f} min left)")
    after = check_px()
    kept = after < before
    if not kept:
        for w, v in zip(weights, saved):
            w.assign(v)
    return {"steps": steps, "batch": batch, "lr": lr, "images": int(len(crops)),
            "check_images": int(len(check)), "check_px_before": round(before, 3),
            "check_px_after": round(after, 3), "kept": bool(kept),
            "seconds": round(time.monotonic() - t0, 1)}
