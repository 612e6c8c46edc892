"""Inference backends behind one small interface.

    b = open_backend(kind, model_path, labels, preprocess)   # VartBackend (.xmodel, board) or
                                                             # HostBackend (.h5, PC)
    probs = b.infer(batch)     # batch: float32 (N, H, W, C) in the training range
    b.input_shape, b.labels, b.name, b.batch, b.describe()

`infer` returns softmax probabilities (N, classes), or with `raw_width` the model's own
outputs (N, raw_width) (the landmark network); it is safe to call from several threads:
every thread gets its own worker (one VART runner, or one TFLite interpreter, per thread), as
the Xilinx app_mt.py pattern does.
"""
from __future__ import annotations

import threading

import numpy as np

from .contract import Preprocess
from .errors import AppError


class Backend:
    kind = "?"
    name = "?"

    def __init__(self, model_path: str, labels: list[str], pp: Preprocess | None,
                 raw_width: int | None = None):
        self.model_path = model_path
        # raw_width: the model's outputs are returned as they are (N, raw_width), no softmax
        # (the landmark network: landmarks, presence and handedness logits)
        self.raw_width = raw_width
        self.labels = list(labels)
        self.batch = 1
        self.set_preprocess(pp)
        self.quantized = False
        self._local = threading.local()

    def set_preprocess(self, pp: Preprocess | None) -> None:
        """The manifest's preprocessing, or (None) the model's own input size, set later."""
        self.preprocess = pp
        self.input_shape = (pp.height, pp.width, pp.channels) if pp else None

    def _agree(self, shape, what: str) -> None:
        """Take the preprocessing from the model's input when no manifest gave one; refuse a
        manifest that disagrees with the model."""
        shape = tuple(int(v) for v in shape)
        if self.preprocess is None:
            self.set_preprocess(Preprocess.for_input(shape))
        elif shape != self.input_shape:
            raise AppError(f"{self.model_path}: {what} is {list(shape)}, the preprocessing makes "
                           f"{list(self.input_shape)} (NHWC): wrong model, or a manifest from "
                           f"another model")

    def prepare(self, workers: int) -> None:
        """Make the workers of `workers` benchmark threads now, on the calling (main) thread,
        one after another (the official VART apps create runners this way); thread i then
        calls infer(x, worker=i). The host backend makes its interpreters lazily."""

    def infer(self, x: np.ndarray, worker: int | None = None) -> np.ndarray:
        """Softmax probabilities (N, classes); `worker` picks a prepared worker (threads)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_path, "quantized": self.quantized,
                "input_shape": list(self.input_shape), "batch": self.batch,
                "classes": len(self.labels)}

    def close(self) -> None:
        pass

    def _check_classes(self, n: int, what: str) -> None:
        if self.raw_width is not None:
            if n != self.raw_width:
                raise AppError(f"{self.model_path}: {what} has {n} outputs, the hand pipeline "
                               f"needs {self.raw_width} (63 landmarks, presence, handedness): "
                               f"not the landmark network, or a manifest from another model")
            return
        if n != len(self.labels):
            raise AppError(f"{self.model_path}: {what} has {n} outputs but there are "
                           f"{len(self.labels)} labels: give the labels.txt written with this "
                           f"model (--labels)")

    def _check_batch(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"input batch has shape {x.shape}, the model takes "
                             f"(N, {', '.join(map(str, self.input_shape))})")
        return x


def open_backend(kind: str, model_path: str, labels: list[str], pp: Preprocess | None,
                 manifest_fix=(None, None), host_runtime: str = "auto",
                 raw_width: int | None = None) -> Backend:
    if kind == "auto":
        kind = "vart" if model_path.endswith(".xmodel") else "host"
    if kind == "vart":
        if not model_path.endswith(".xmodel"):
            raise AppError(f"--backend vart needs a compiled .xmodel, got {model_path}")
        from .vart_backend import VartBackend
        return VartBackend(model_path, labels, pp, manifest_fix, raw_width=raw_width)
    if kind == "host":
        from .host_backend import HostBackend
        return HostBackend(model_path, labels, pp, runtime=host_runtime, raw_width=raw_width)
    raise AppError(f"--backend {kind!r}: choose auto, vart or host")
