"""The optimizer and the compiled train/inference steps for one model."""
from __future__ import annotations

import numpy as np

from model import augment as A
from model import data as D


def make_optimizer(ocfg, scfg):
    """Legacy Keras optimizers: their hyper-parameters are variables, so the schedule can
    change lr and momentum/beta_1 every batch inside the compiled step."""
    import tensorflow as tf
    opts = tf.keras.optimizers.legacy
    cycle = scfg.policy == "onecycle" and scfg.momentum_range is not None
    hi = scfg.momentum_range[1] if cycle else None
    if ocfg.name == "adam":
        opt = opts.Adam(learning_rate=scfg.lr, beta_1=hi if cycle else ocfg.beta_1,
                        beta_2=ocfg.beta_2, epsilon=ocfg.epsilon)
        mom_attr = "beta_1"
    elif ocfg.name == "sgd":
        m = hi if cycle else ocfg.momentum
        opt = opts.SGD(learning_rate=scfg.lr, momentum=m, nesterov=ocfg.nesterov)
        mom_attr = "momentum" if m > 0 else None
    else:
        m = hi if cycle else ocfg.momentum
        opt = opts.RMSprop(learning_rate=scfg.lr, rho=ocfg.rho, momentum=m, epsilon=ocfg.epsilon)
        mom_attr = "momentum" if m > 0 else None
    return opt, mom_attr


class Steps:
    """train_step: warp the three sources of a mixed batch to the input size, change their
    pixels, (mixup,) one optimizer step; returns (loss, correct). logits: inference."""

    def __init__(self, model, opt=None, tcfg=None):
        import tensorflow as tf
        self.model, self.opt = model, opt
        size = int(model.input_shape[1])
        n_cls = int(model.output_shape[-1])
        self.n_classes = n_cls
        if opt is not None:
            smoothing, mixup = tcfg.label_smoothing, tcfg.mixup
            ce = tf.keras.losses.CategoricalCrossentropy(from_logits=True,
                                                         label_smoothing=smoothing)

            @tf.function(reduce_retracing=True)
            def train_step(kx, ktr, px, ptr, bx, btr, pix, y, seed):
                x = tf.concat([A.warp_tf(kx, ktr, size), A.warp_tf(px, ptr, size),
                               A.warp_tf(bx, btr, size)], 0)
                x = A.pixels_tf(x, pix, seed)
                target = tf.one_hot(y, n_cls)
                if mixup > 0:
                    x, target = _mixup(tf, x, target, mixup, seed)
                with tf.GradientTape() as tape:
                    logits = model(x, training=True)
                    loss = ce(target, logits)
                    total = loss + tf.add_n(model.losses) if model.losses else loss
                grads = tape.gradient(total, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
                correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), y), tf.float32))
                return loss, correct

            self.train_step = train_step

        @tf.function(reduce_retracing=True)
        def logits_step(x):
            return model(x, training=False)

        self.logits_step = logits_step

    def logits(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        """float32 (N, H, W, C) or uint8 (N, H, W[, 3]) -> logits (N, classes)."""
        if x.dtype == np.uint8:
            x = D.as_float(x)
        out = [self.logits_step(x[i:i + batch]).numpy() for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros((0, self.n_classes), np.float32)


def _mixup(tf, x, target, alpha: float, seed):
    """Blend each image (and its one-hot target) with another of the batch, weight from
    Beta(alpha, alpha) folded to >= 0.5 so the image keeps its own label mostly."""
    n = tf.shape(x)[0]
    g1 = tf.random.stateless_gamma([n], seed, alpha=alpha)
    g2 = tf.random.stateless_gamma([n], seed + 1, alpha=alpha)
    lam = g1 / (g1 + g2)
    lam = tf.maximum(lam, 1.0 - lam)
    perm = tf.random.experimental.stateless_shuffle(tf.range(n), seed + 2)
    lx = lam[:, None, None, None]
    return (lx * x + (1 - lx) * tf.gather(x, perm),
            lam[:, None] * target + (1 - lam[:, None]) * tf.gather(target, perm))
