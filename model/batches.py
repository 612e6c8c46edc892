"""The training data in memory and the mixed batches drawn from it.

Every batch holds Sign MNIST crops, real photo crops and "no hand" crops in the shares
`train.mix` gives; each image comes with its augmentation (model/augment.py). The sampler's
only state is one numpy Generator, saved with each epoch's checkpoint for resume.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpu_app.contract import NO_HAND
from model import augment as A
from model import data as D


@dataclass
class TrainingData:
    classes: tuple                  # output names: 24 letters (+ nothing)
    size: int                       # model input side
    kaggle_train: D.Dataset
    kaggle_val: D.Dataset
    kaggle_test: D.Dataset
    photos: D.PhotoSets | None

    @property
    def nothing(self) -> int | None:
        return self.classes.index(NO_HAND) if NO_HAND in self.classes else None

    def identity(self) -> dict:
        """What decides the results besides the config: the data's checksums."""
        return {"train_data": self.kaggle_train.sha256, "test_data": self.kaggle_test.sha256,
                "photos": self.photos.sha256 if self.photos else None}

    def describe(self) -> str:
        s = (f"Sign MNIST train {len(self.kaggle_train):,}  val {len(self.kaggle_val):,}  test "
             f"{len(self.kaggle_test):,}")
        p = self.photos
        if p:
            s += (f"; photos train {len(p.train.y):,}  val {len(p.val):,} ({p.val_sources} "
                  f"source photos)")
            if self.nothing is not None:
                s += f"; no-hand crops train {len(p.bg_train):,}  val {len(p.bg_val):,}"
        kind = "BGR" if self.channels == 3 else "grey"
        return s + f"; {len(self.classes)} classes, input {self.size}x{self.size} {kind}"

    @property
    def channels(self) -> int:
        """1 (grey) or 3 (BGR): the Sign MNIST sets are widened to it when loaded."""
        return 3 if self.kaggle_test.x.ndim == 4 else 1


def load_training_data(cfg) -> TrainingData:
    from model.net import channels
    size = cfg.model.input_size
    no_hand = cfg.data.no_hand
    c = channels(cfg.model)
    train, val = D.load_kaggle_splits(cfg.data, cfg.seed, size)
    test = D.load_test_set(cfg.data, size)
    photos = D.load_photos(cfg.data, cfg.seed, size, no_hand, cfg.model.color)
    return TrainingData(D.class_names(no_hand), size, train.with_channels(c),
                        val.with_channels(c), test.with_channels(c), photos)


def batch_counts(cfg, data: TrainingData) -> tuple[int, int, int]:
    """(Sign MNIST, photos, no hand) images per batch."""
    bs = cfg.train.batch_size
    n_ph = int(round(bs * cfg.train.mix.photos)) if data.photos else 0
    n_bg = int(round(bs * cfg.train.mix.no_hand)) if data.nothing is not None else 0
    return bs - n_ph - n_bg, n_ph, n_bg


class MixedSampler:
    """Draws augmented mixed batches: numpy arrays for Steps.train_step."""

    def __init__(self, cfg, data: TrainingData, rng: np.random.Generator):
        self.cfg, self.data, self.rng = cfg, data, rng
        self.acfg = cfg.train.augment
        self.kcfg = A.milder(self.acfg, self.acfg.sign_mnist_geometry)
        self.counts = batch_counts(cfg, data)
        p = data.photos
        self.csize = D.context_size(data.size)
        self.masks = A.hand_masks(p.train.box, self.csize) if p else None
        self.tail = (3,) if data.channels == 3 else ()
        self.backgrounds = p.bg_train if p is not None else np.zeros(
            (0, self.csize, self.csize) + self.tail, np.uint8)

    def _kaggle(self, n: int):
        S = self.data.size
        idx = self.rng.integers(0, len(self.data.kaggle_train), n)
        tr = (A.crop_transforms(self.rng, n, S, (S - 1) / 2, np.full(n, float(S)), self.kcfg)
              if self.acfg.enabled else A.identity_rows(n, S, S))
        return self.data.kaggle_train.x[idx], tr, self.data.kaggle_train.y[idx]

    def _photos(self, n: int):
        S, C, p = self.data.size, self.csize, self.data.photos.train
        idx = self.rng.integers(0, len(p.y), n)
        img = p.ctx[idx]
        if self.acfg.enabled:
            img = A.clutter(self.rng, img, self.masks[idx], self.backgrounds, self.acfg.clutter)
            tr = A.crop_transforms(self.rng, n, S, (C - 1) / 2, np.full(n, float(S)), self.acfg)
        else:
            c = (C - 1) / 2
            one = np.ones(n)
            tr = A.transform_rows(c * one, c * one, S * one, S * one, 0 * one, one, S)
        return img, tr, p.y[idx]

    def _no_hand(self, n: int):
        """Background squares (3/4) and synthetic empty frames (1/4), as context-size images."""
        S, C = self.data.size, self.csize
        n_empty = n // 4 if len(self.backgrounds) else n
        idx = self.rng.integers(0, max(len(self.backgrounds), 1), n - n_empty)
        empty = D.with_channels(A.empty_frames(self.rng, n_empty, C), self.data.channels)
        img = np.concatenate([self.backgrounds[idx] if len(self.backgrounds) else
                              np.zeros((0, C, C) + self.tail, np.uint8), empty])
        base = self.rng.uniform(0.6, 1.0, n) * C
        tr = A.crop_transforms(self.rng, n, S, (C - 1) / 2, base, self.acfg, shift_scale=0.5)
        return img, tr, np.full(n, self.data.nothing, np.int64)

    def next(self) -> tuple:
        nk, nph, nbg = self.counts
        kx, ktr, ky = self._kaggle(nk)
        if nph:
            px, ptr, py = self._photos(nph)
        else:
            px, ptr, py = (np.zeros((0, self.csize, self.csize) + self.tail, np.uint8),
                           np.zeros((0, 8), np.float32), np.zeros(0, np.int64))
        if nbg:
            bx, btr, by = self._no_hand(nbg)
        else:
            bx, btr, by = (np.zeros((0, self.csize, self.csize) + self.tail, np.uint8),
                           np.zeros((0, 8), np.float32), np.zeros(0, np.int64))
        pix = A.pixel_params(self.rng, nk + nph + nbg, self.acfg, self.data.channels)
        if self.data.channels == 3 and self.acfg.enabled:
            A.skin_tint(self.rng, pix, nk, self.acfg.sign_mnist_tint)
        seed = self.rng.integers(0, 2 ** 31 - 1, 2)
        return (kx, ktr, px, ptr, bx, btr, pix, np.concatenate([ky, py, by]), seed)

