"""Inference backends behind one small interface.

    b = open_backend(kind, model_path, labels, preprocess)   # VartBackend (.xmodel, board) or
                                                             # HostBackend (.h5, PC)
    probs = b.infer(batch)     # batch: float32 (N, H, W, C) in the training range
    b.input_shape, b.labels, b.name, b.batch, b.describe()

`infer` returns softmax probabilities (N, classes); it is safe to call from several threads:
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

    def __init__(self, model_path: str, labels: list[str], pp: Preprocess):
        self.model_path = model_path
        self.labels = list(labels)
        self.preprocess = pp
        self.input_shape = (pp.height, pp.width, pp.channels)
        self.batch = 1
        self.quantized = False
        self._local = threading.local()

    def infer(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_path, "quantized": self.quantized,
                "input_shape": list(self.input_shape), "batch": self.batch,
                "classes": len(self.labels)}

    def close(self) -> None:
        pass

    def _check_classes(self, n: int, what: str) -> None:
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


def open_backend(kind: str, model_path: str, labels: list[str], pp: Preprocess,
                 manifest_fix=(None, None), host_runtime: str = "auto") -> Backend:
    if kind == "auto":
        kind = "vart" if model_path.endswith(".xmodel") else "host"
    if kind == "vart":
        if not model_path.endswith(".xmodel"):
            raise AppError(f"--backend vart needs a compiled .xmodel, got {model_path}")
        from .vart_backend import VartBackend
        return VartBackend(model_path, labels, pp, manifest_fix)
    if kind == "host":
        from .host_backend import HostBackend
        return HostBackend(model_path, labels, pp, runtime=host_runtime)
    raise AppError(f"--backend {kind!r}: choose auto, vart or host")
