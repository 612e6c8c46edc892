"""Training-time augmentation for 28x28 hand crops.

A webcam crop of a hand differs from the Kaggle images by a few degrees of rotation, a hand
that is not centred or not the same size in the box, and lighting (exposure, contrast, sensor
noise). So each training image gets one random affine warp (rotation, zoom, shift, optional
mirror) with edge-replicating fill (the background continues instead of a black border) and a
random contrast/brightness change, clipped to [0, 1].

Random parameters are drawn with numpy from a seeded Generator (so a run is reproducible and
its state can be saved for resume); the warp itself is one batched TensorFlow op
(ImageProjectiveTransformV3) inside the compiled train step.
"""
from __future__ import annotations

import numpy as np

from model.data import IMAGE_SIZE


class AugmentSampler:
    def __init__(self, acfg, rng: np.random.Generator):
        self.cfg = acfg
        self.rng = rng

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-image (transforms (n,8), contrast (n,), brightness (n,), noise)."""
        c, rng = self.cfg, self.rng
        if not c.enabled:
            eye = np.tile(np.array([1, 0, 0, 0, 1, 0, 0, 0], np.float32), (n, 1))
            return eye, np.ones(n, np.float32), np.zeros(n, np.float32), np.zeros((n, 1, 1, 1), np.float32)
        theta = np.deg2rad(rng.uniform(-c.rotation_deg, c.rotation_deg, n))
        scale = rng.uniform(1 - c.zoom, 1 + c.zoom, n)
        shift = rng.uniform(-c.shift, c.shift, (n, 2)) * IMAGE_SIZE
        flip = np.where(rng.random(n) < 0.5, -1.0, 1.0) if c.hflip else np.ones(n)
        contrast = rng.uniform(1 - c.contrast, 1 + c.contrast, n).astype(np.float32)
        brightness = rng.uniform(-c.brightness, c.brightness, n).astype(np.float32)
        if c.noise > 0:
            noise = (rng.standard_normal((n, IMAGE_SIZE, IMAGE_SIZE, 1)) * c.noise).astype(np.float32)
        else:
            noise = np.zeros((n, 1, 1, 1), np.float32)
        return forward_to_inverse(theta, scale, shift, flip), contrast, brightness, noise


def forward_to_inverse(theta, scale, shift, flip) -> np.ndarray:
    """Projective-transform rows (output pixel -> input pixel) for a forward warp that rotates
    by theta and scales by `scale` about the image centre, mirrors x by `flip`, then shifts."""
    n = len(theta)
    ctr = (IMAGE_SIZE - 1) / 2.0
    cos, sin = np.cos(theta), np.sin(theta)
    fwd = np.zeros((n, 3, 3))
    fwd[:, 0, 0] = scale * cos * flip
    fwd[:, 0, 1] = -scale * sin
    fwd[:, 1, 0] = scale * sin * flip
    fwd[:, 1, 1] = scale * cos
    fwd[:, 2, 2] = 1
    # translate so the rotation is about the centre, then shift
    lin = fwd[:, :2, :2]
    fwd[:, :2, 2] = ctr + shift - np.einsum("nij,j->ni", lin, np.array([ctr, ctr]))
    inv = np.linalg.inv(fwd)
    return np.concatenate([inv[:, 0, :], inv[:, 1, :], inv[:, 2, :2]], axis=1).astype(np.float32)


def apply_tf(x, transforms, contrast, brightness, noise):
    """The augmentation as TensorFlow ops (inside tf.function)."""
    import tensorflow as tf

    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.shape(x)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="NEAREST")
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    x = x + noise
    return tf.clip_by_value(x, 0.0, 1.0)

