"""Training-time augmentation, chosen for what a webcam crop of a hand looks like.

Each training image is cut out of its source by a randomly jittered crop box, the way a hand
lands in the app's guide box: box **scale** (hand nearer or farther), **aspect**, **shift**
(hand off-centre), **rotation**, and a left/right **mirror** (people sign with either hand).
The source is a photo's context crop (the hand square in its middle at scale 1), a Sign MNIST
image (already a hand crop), or a background square ("no hand"). Then the pixels get
**brightness**, **contrast**, **gamma**, **blur** and sensor **noise**, and a share of the
photos get a **cluttered background**: what lies outside their hand box is replaced by another
photo's background.

Random parameters are drawn with numpy from one seeded Generator (reproducible, and its state
is saved for resume); the warps and pixel changes are batched TensorFlow ops inside the
compiled train step (one ImageProjectiveTransformV3 per source).
"""
from __future__ import annotations

import numpy as np

# 5x5 Gaussian (sigma 1 px) for the blur; an image gets x + a * (blur(x) - x), a in [0, 1]
_G1 = np.exp(-0.5 * (np.arange(5) - 2.0) ** 2)
BGR_LUMA = np.array([0.114, 0.587, 0.299], np.float32)
BLUR_KERNEL = (np.outer(_G1, _G1) / np.outer(_G1, _G1).sum()).astype(np.float32)[:, :, None, None]


def milder(acfg, f: float):
    """The geometric jitter of `acfg` scaled by f (0: none, 1: the same); for sources that are
    hand crops already (Sign MNIST)."""
    from types import SimpleNamespace
    lo, hi = acfg.scale
    return SimpleNamespace(scale=[1 - (1 - lo) * f, 1 + (hi - 1) * f], aspect=acfg.aspect * f,
                           shift=acfg.shift * f, rotation_deg=acfg.rotation_deg * f,
                           hflip=acfg.hflip)


def crop_transforms(rng: np.random.Generator, n: int, out: int, centre: float, base: np.ndarray,
                    acfg, shift_scale: float = 1.0) -> np.ndarray:
    """Projective-transform rows (output pixel -> source pixel) for n jittered square crops of
    `out` pixels: the crop box is `base` source pixels wide at scale 1, centred on (`centre`,
    `centre`), then scaled, stretched, shifted, rotated and (half the time) mirrored."""
    scale = np.exp(rng.uniform(np.log(acfg.scale[0]), np.log(acfg.scale[1]), n)) * base
    asp = np.exp(rng.uniform(-acfg.aspect, acfg.aspect, n))
    sx, sy = scale * asp, scale / asp
    cx = centre + rng.uniform(-acfg.shift, acfg.shift, n) * scale * shift_scale
    cy = centre + rng.uniform(-acfg.shift, acfg.shift, n) * scale * shift_scale
    theta = np.deg2rad(rng.uniform(-acfg.rotation_deg, acfg.rotation_deg, n))
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0) if acfg.hflip else np.ones(n)
    return transform_rows(cx, cy, sx, sy, theta, flip, out)


def transform_rows(cx, cy, sx, sy, theta, flip, out: int) -> np.ndarray:
    """Rows [a0 a1 a2 b0 b1 b2 0 0]: source (x, y) = (a0 u + a1 v + a2, b0 u + b1 v + b2) for
    output pixel (u, v); a box of sx by sy source pixels centred on (cx, cy), rotated by
    theta, mirrored in x when flip is -1."""
    h = (out - 1) / 2.0
    kx, ky = np.asarray(sx) / out, np.asarray(sy) / out
    c, s = np.cos(theta), np.sin(theta)
    a0, a1 = c * kx * flip, -s * ky
    b0, b1 = s * kx * flip, c * ky
    a2, b2 = cx - (a0 + a1) * h, cy - (b0 + b1) * h
    z = np.zeros_like(a0)
    return np.stack([a0, a1, a2, b0, b1, b2, z, z], 1).astype(np.float32)


def identity_rows(n: int, src: int, out: int) -> np.ndarray:
    c = (src - 1) / 2.0
    one = np.ones(n)
    return transform_rows(c * one, c * one, src * one, src * one, 0 * one, one, out)


def pixel_params(rng: np.random.Generator, n: int, acfg, channels: int = 1) -> np.ndarray:
    """(n, 5) float32: brightness offset, contrast factor, gamma, blur amount, noise sigma;
    for BGR (channels 3) (n, 9): then 1 where the image is made grey, and B, G, R gains
    (white balance)."""
    if not acfg.enabled:
        neutral = [0, 1, 1, 0, 0] + ([0, 1, 1, 1] if channels == 3 else [])
        return np.tile(np.array(neutral, np.float32), (n, 1))
    if channels == 3:
        base = pixel_params(rng, n, acfg)
        grey = (rng.random(n) < acfg.greyscale).astype(np.float32)
        gains = np.exp(rng.uniform(-np.log1p(acfg.white_balance), np.log1p(acfg.white_balance),
                                   (n, 3)))
        return np.concatenate([base, grey[:, None], gains], 1).astype(np.float32)
    bri = rng.uniform(-acfg.brightness, acfg.brightness, n)
    con = np.exp(rng.uniform(-np.log1p(acfg.contrast), np.log1p(acfg.contrast), n))
    gam = np.exp(rng.uniform(-np.log1p(acfg.gamma), np.log1p(acfg.gamma), n))
    blur = np.where(rng.random(n) < acfg.blur, rng.uniform(0, 1, n), 0.0)
    noise = np.where(rng.random(n) < 0.5, rng.uniform(0, acfg.noise, n), 0.0)
    return np.stack([bri, con, gam, blur, noise], 1).astype(np.float32)


def skin_tint(rng: np.random.Generator, pix: np.ndarray, rows: int, share: float) -> None:
    """Tint a `share` of the first `rows` images of a BGR batch with a skin tone: their
    white-balance gains (columns 6-8 of pixel_params) become B < G < R = 1, drawn around the
    hand colours of the shipped photos (B/R 0.4-0.7, G/R 0.65-0.8 in the middle half)."""
    if share <= 0 or rows == 0:
        return
    pick = np.flatnonzero(rng.random(rows) < share)
    g = rng.uniform(0.6, 0.9, len(pick))
    b = g * rng.uniform(0.55, 0.95, len(pick))
    pix[pick, 5] = 0.0
    pix[pick, 6:9] = np.stack([b, g, np.ones_like(g)], 1) * pix[pick, 6:9]


def empty_frames(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Synthetic frames without a hand: flat, a gradient, or noise (uint8 (n, size, size))."""
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        kind = rng.integers(3)
        if kind == 0:
            out[i] = rng.integers(0, 256)
        elif kind == 1:
            g = np.linspace(rng.uniform(0, 255), rng.uniform(0, 255), size)
            out[i] = np.clip(g[None, :] if rng.random() < 0.5 else g[:, None], 0, 255)
        else:
            out[i] = np.clip(rng.normal(rng.uniform(40, 220), rng.uniform(5, 60), (size, size)),
                             0, 255)
    return out


def hand_masks(boxes: np.ndarray, size: int, feather: float = 0.04) -> np.ndarray:
    """float32 (N, size, size): 1 inside each context crop's hand box (grown by 5%), falling
    to 0 over `feather` of the side outside it (for the cluttered-background swap)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ctr = (size - 1) / 2.0
    out = np.empty((len(boxes), size, size), np.float32)
    for i, (bw, bh) in enumerate(boxes):
        dx = np.maximum(np.abs(xx - ctr) - bw * size / 2 * 1.05, 0)
        dy = np.maximum(np.abs(yy - ctr) - bh * size / 2 * 1.05, 0)
        out[i] = np.clip(1 - np.sqrt(dx * dx + dy * dy) / (feather * size), 0, 1)
    return out


def clutter(rng: np.random.Generator, ctx: np.ndarray, masks: np.ndarray,
            backgrounds: np.ndarray, p: float) -> np.ndarray:
    """With probability p per image, replace what lies outside the hand box with a random
    background crop (in place on a copy; uint8)."""
    out = ctx.copy()
    if p <= 0 or len(backgrounds) == 0:
        return out
    sel = np.flatnonzero(rng.random(len(ctx)) < p)
    if len(sel):
        bg = backgrounds[rng.integers(0, len(backgrounds), len(sel))]
        m = masks[sel] if ctx.ndim == 3 else masks[sel][..., None]
        out[sel] = np.round(m * ctx[sel] + (1 - m) * bg).astype(np.uint8)
    return out


def warp_tf(images_u8, transforms, out: int):
    """uint8 (n, H, W) grey or (n, H, W, 3) BGR sources -> float32 (n, out, out, C) in [0, 1],
    bilinear, edges repeated."""
    import tensorflow as tf
    x = tf.cast(images_u8, tf.float32) / 255.0
    if len(images_u8.shape) == 3:
        x = x[..., None]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=[out, out], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="NEAREST")


def pixels_tf(x, params, noise_seed):
    """(BGR: grey share, white balance,) blur, gamma, contrast, brightness and noise per
    image; clipped to [0, 1]."""
    import tensorflow as tf
    bri, con, gam, blur, noise = [params[:, i][:, None, None, None] for i in range(5)]
    if params.shape[1] == 9:                                  # BGR
        grey = params[:, 5][:, None, None, None]
        luma = tf.reduce_sum(x * BGR_LUMA, axis=3, keepdims=True)     # cv2's BGR2GRAY
        x = x + grey * (luma - x)
        x = x * params[:, 6:9][:, None, None, :]
        kernel = np.tile(BLUR_KERNEL, (1, 1, 3, 1))
        x = x + blur * (tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME") - x)
    else:
        x = x + blur * (tf.nn.conv2d(x, BLUR_KERNEL, 1, "SAME") - x)
    x = tf.clip_by_value(x, 0.0, 1.0) ** gam
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * con + mean + bri
    x = x + noise * tf.random.stateless_normal(tf.shape(x), noise_seed)
    return tf.clip_by_value(x, 0.0, 1.0)
