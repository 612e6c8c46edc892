"""Inference backends behind one small interface.

    b = open_backend(model_path, ...)      # VartBackend (.xmodel, board) or HostBackend (.h5, PC)
    probs = b.infer(batch)                 # batch: float32 (N, H, W, C) in the training range
    b.input_shape, b.labels, b.name, b.batch, b.describe()

`infer` returns softmax probabilities (N, classes); it is safe to call from several threads:
every thread gets its own worker (one VART runner, or one TFLite interpreter, per thread), as
the Xilinx app_mt.py pattern does.

vart: written against the documented VART/XIR Python API (Vitis AI 3.0/3.5, see
shared/reference/vitis-ai-facts.md) and tested against an emulation that enforces that API;
NOT YET RUN ON A REAL BOARD.
"""
from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np

from common import AppError, Preprocess, dequantize_output, quantize_input, softmax, warn


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


# ============================================================================ VART (board)
def dpu_subgraphs(graph) -> list:
    """The DPU subgraphs of an xir.Graph, in topological order."""
    root = graph.get_root_subgraph()
    if root is None:
        return []
    if root.is_leaf:
        return []
    subs = root.toposort_child_subgraph()
    return [s for s in subs
            if s.has_attr("device") and str(s.get_attr("device")).upper() == "DPU"]


class _VartWorker:
    """One runner and its buffers; used by one thread only."""

    def __init__(self, runner):
        self.runner = runner
        self.in_t = runner.get_input_tensors()
        self.out_t = runner.get_output_tensors()
        self.in_buf = np.zeros(tuple(self.in_t[0].dims), dtype=np.int8, order="C")
        self.out_buf = np.zeros(tuple(self.out_t[0].dims), dtype=np.int8, order="C")


class VartBackend(Backend):
    kind = "vart"
    name = "vart"

    def __init__(self, xmodel: str, labels: list[str], pp: Preprocess,
                 manifest_fix: tuple[int | None, int | None] = (None, None)):
        super().__init__(xmodel, labels, pp)
        try:
            import vart  # noqa: F401  (lazy: only the board has them)
            import xir
        except ImportError as e:
            raise AppError(f"the vart backend needs the Vitis AI runtime Python modules xir and "
                           f"vart ({e}); they exist on the board image only: on a PC use "
                           f"--backend host with the .h5 model") from None
        self._vart = vart
        if not os.path.isfile(xmodel):
            raise AppError(f"xmodel {xmodel} not found: copy the compiled .xmodel to the board "
                           f"(make deploy) or pass --model PATH")
        try:
            self._graph = xir.Graph.deserialize(xmodel)
        except Exception as e:                                   # noqa: BLE001  (C++ errors)
            raise AppError(f"xmodel {xmodel} could not be read ({str(e).strip() or type(e).__name__}"
                           f"): copy it again, or re-run the compile stage") from None
        subs = dpu_subgraphs(self._graph)
        if len(subs) != 1:
            raise AppError(f"xmodel {xmodel} has {len(subs)} DPU subgraphs, this app needs "
                           f"exactly 1: recompile with a model that maps to the DPU in one piece "
                           f"(no softmax, only DPU layers; the compile log says 'DPU subgraph "
                           f"number')")
        self._sub = subs[0]
        self.quantized = True
        self._lock = threading.Lock()
        self._workers: list[_VartWorker] = []
        w = self._worker()                                       # main thread's, and checks
        in_t, out_t = w.in_t, w.out_t
        if len(in_t) != 1 or len(out_t) != 1:
            raise AppError(f"xmodel {xmodel}: the DPU subgraph has {len(in_t)} inputs and "
                           f"{len(out_t)} outputs, this app needs 1 and 1")
        ti, to = in_t[0], out_t[0]
        dims_in, dims_out = tuple(ti.dims), tuple(to.dims)
        if len(dims_in) != 4 or dims_in[1:] != self.input_shape:
            raise AppError(f"xmodel {xmodel}: input tensor {ti.name} is {list(dims_in)}, the "
                           f"preprocessing makes [N, {pp.height}, {pp.width}, {pp.channels}] "
                           f"(NHWC): wrong model or manifest")
        for t, what in ((ti, "input"), (to, "output")):
            dt = str(t.dtype).lower()
            if dt not in ("xint8", "int8"):
                raise AppError(f"xmodel {xmodel}: {what} tensor {t.name} is {t.dtype}, this app "
                               f"feeds int8 (xint8): recompile with the int8 DPU flow")
            if not t.has_attr("fix_point"):
                raise AppError(f"xmodel {xmodel}: {what} tensor {t.name} has no fix_point "
                               f"attribute: not a DPU-compiled xmodel?")
        self.in_fix = int(ti.get_attr("fix_point"))
        self.out_fix = int(to.get_attr("fix_point"))
        for have, want, what in ((self.in_fix, manifest_fix[0], "input"),
                                 (self.out_fix, manifest_fix[1], "output")):
            if want is not None and want != have:
                raise AppError(f"manifest says {what} fix_point {want} but {xmodel} says {have}: "
                               f"the manifest is stale, copy the one written with this xmodel")
        self.batch = int(dims_in[0])
        if dims_out[0] != self.batch:
            raise AppError(f"xmodel {xmodel}: output batch {dims_out[0]} != input batch "
                           f"{self.batch}")
        self._classes = int(np.prod(dims_out[1:]))
        self._check_classes(self._classes, f"output tensor {to.name} {list(dims_out)}")
        self.in_name, self.out_name = ti.name, to.name
        self.dims_in, self.dims_out = dims_in, dims_out

    def _worker(self) -> _VartWorker:
        w = getattr(self._local, "w", None)
        if w is None:
            try:
                runner = self._vart.Runner.create_runner(self._sub, "run")
            except Exception as e:                               # noqa: BLE001
                raise AppError(f"could not open a DPU runner for {self.model_path} "
                               f"({str(e).strip() or type(e).__name__}): check the DPU with "
                               f"'xdputil query' and that the xmodel was compiled for this "
                               f"board's fingerprint") from None
            w = _VartWorker(runner)
            self._local.w = w
            with self._lock:
                self._workers.append(w)
        return w

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = self._check_batch(x)
        w = self._worker()
        n, b = len(x), self.batch
        out = np.empty((n, self._classes), np.float32)
        for i in range(0, n, b):
            k = min(b, n - i)
            quantize_input(x[i:i + k], self.in_fix, out=w.in_buf[:k])
            if k < b:
                w.in_buf[k:] = 0
            job = w.runner.execute_async([w.in_buf], [w.out_buf])     # -> (job_id, status)
            status = w.runner.wait(job)
            if isinstance(job, tuple) and len(job) == 2 and job[1] not in (0, None):
                status = job[1]
            if status not in (0, None):
                raise AppError(f"DPU job {job} of {self.model_path} ended with status {status}: "
                               f"check 'dmesg' and 'xdputil query' on the board")
            out[i:i + k] = dequantize_output(w.out_buf[:k].reshape(k, -1), self.out_fix)
        return softmax(out)

    def describe(self) -> dict:
        d = super().describe()
        d.update({"input_tensor": self.in_name, "output_tensor": self.out_name,
                  "input_fix_point": self.in_fix, "output_fix_point": self.out_fix,
                  "dims_in": list(self.dims_in), "dims_out": list(self.dims_out)})
        return d

    def close(self) -> None:
        with self._lock:
            for w in self._workers:
                w.runner = None
            self._workers.clear()
        self._local = threading.local()


# ============================================================================ host (PC)
def _quantize_scope():
    """The Vitis quantizer's custom-object scope, from whichever package provides it."""
    try:
        from vitis_quantizer import quantize_scope
        return quantize_scope()
    except ImportError:
        pass
    try:
        from tensorflow_model_optimization.quantization.keras import vitis_quantize
        return vitis_quantize.quantize_scope()
    except (ImportError, AttributeError):
        return None


def _is_quantized(model) -> bool:
    names = {type(l).__name__ for l in model.layers}
    return any(n.startswith("Vitis") or n.startswith("Quantize") for n in names)


def _ends_in_softmax(model) -> bool:
    last = model.layers[-1]
    if type(last).__name__ == "Softmax":
        return True
    try:
        cfg = str(last.get_config())
    except Exception:                                            # noqa: BLE001
        return False
    return "'softmax'" in cfg


class HostBackend(Backend):
    """The same model on a PC: the float .h5 or the quantized .h5 (vitis quantizer).

    Runtimes: "tf" = tf.function with a fixed input signature; "tflite" = the same graph
    converted at start to TFLite and run by one interpreter per thread (3x faster at batch 1
    on this model: 0.5 ms vs 1.3-1.9 ms); "auto" = tflite when the conversion matches tf on
    probe inputs, else tf.
    """
    kind = "host"

    def __init__(self, model_path: str, labels: list[str], pp: Preprocess,
                 runtime: str = "auto"):
        super().__init__(model_path, labels, pp)
        if model_path.endswith(".xmodel"):
            raise AppError(f"{model_path} is an .xmodel, which runs on the board's DPU only "
                           f"(--backend vart): on a PC give the float or quantized .h5")
        if not os.path.exists(model_path):
            raise AppError(f"model {model_path} not found: train one (make train -> "
                           f"build/train/model.h5) or pass --model PATH")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import tensorflow as tf
        except ImportError as e:
            raise AppError(f"the host backend needs TensorFlow ({e}): pip install -r "
                           f"requirements/host-lock.txt, or run on the board with the .xmodel") from None
        self._tf = tf
        # the vitis quantizer's autograph-generated code trips a SyntaxWarning on Python 3.8+
        warnings.filterwarnings("ignore", category=SyntaxWarning)
        scope = _quantize_scope()
        try:
            if scope is not None:
                with scope:
                    model = tf.keras.models.load_model(model_path, compile=False)
            else:
                model = tf.keras.models.load_model(model_path, compile=False)
        except (ValueError, TypeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if scope is None and ("Unknown" in msg or "custom" in msg):
                raise AppError(f"model {model_path} is a quantized model and needs the Vitis "
                               f"quantizer to load: pip install vitis-quantizer==0.1.3") from None
            raise AppError(f"model {model_path} could not be loaded as a Keras model ({msg[:200]})"
                           ) from None
        except (OSError, ImportError) as e:
            raise AppError(f"model {model_path} is not a readable Keras .h5/SavedModel "
                           f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
                           ) from None
        self._model = model
        self.quantized = _is_quantized(model)
        ishape = tuple(model.inputs[0].shape[1:])
        if ishape != self.input_shape:
            raise AppError(f"model {model_path} takes input {ishape}, the preprocessing makes "
                           f"{self.input_shape}: wrong model, or fix the manifest's preprocess")
        oshape = tuple(model.outputs[0].shape[1:])
        self._check_classes(int(np.prod(oshape)), f"its output {oshape}")
        self._probs_out = _ends_in_softmax(model)
        self._fn = tf.function(lambda a: model(a, training=False),
                               input_signature=[tf.TensorSpec([None, *self.input_shape],
                                                              tf.float32)])
        self.runtime = "tf"
        self._tflite = None
        if runtime not in ("auto", "tf", "tflite"):
            raise AppError(f"--host-runtime {runtime!r}: choose auto, tf or tflite")
        if runtime in ("auto", "tflite"):
            self._tflite = self._load_tflite(strict=(runtime == "tflite"))
            if self._tflite is not None:
                self.runtime = "tflite"
        self.name = f"host-{self.runtime}" + ("-quantized" if self.quantized else "-float")

    # ---------------------------------------------------------------- tflite
    def _load_tflite(self, strict: bool) -> bytes | None:
        """Convert the tf.function graph to TFLite (about a second: no trackable object is
        passed, which keeps the converter off its slow SavedModel path) and check it."""
        tf = self._tf
        t0 = time.time()
        try:
            import absl.logging
            absl.logging.set_verbosity(absl.logging.ERROR)
        except ImportError:
            pass
        try:
            conv = tf.lite.TFLiteConverter.from_concrete_functions(
                [self._fn.get_concrete_function()])
            blob = conv.convert()
            bad = self._verify_tflite(blob)
        except Exception as e:                                   # noqa: BLE001
            bad = (f"conversion failed ({type(e).__name__}: "
                   f"{str(e).splitlines()[0][:150] if str(e) else ''})")
        if bad:
            if strict:
                raise AppError(f"--host-runtime tflite: {bad}; use --host-runtime tf")
            warn(f"TFLite runtime not used: {bad}; running with tf.function")
            return None
        self.convert_seconds = round(time.time() - t0, 3)
        return blob

    def _verify_tflite(self, blob: bytes) -> str | None:
        """Compare the converted model with tf on probe inputs; a reason string if they differ."""
        rng = np.random.default_rng(0)
        probes = np.concatenate([np.zeros((1, *self.input_shape), np.float32),
                                 np.ones((1, *self.input_shape), np.float32),
                                 rng.random((6, *self.input_shape), dtype=np.float32)])
        ref = self._fn(self._tf.constant(probes)).numpy().reshape(len(probes), -1)
        it = self._new_interpreter(blob)
        got = self._run_interpreter(it, probes)
        diff = float(np.abs(got - ref).max())
        tol = 1e-3 * (1.0 + float(np.abs(ref).max()))
        if diff > tol or (got.argmax(1) != ref.argmax(1)).any():
            return f"TFLite output differs from TensorFlow's by {diff:.3g}"
        return None

    def _new_interpreter(self, blob: bytes):
        it = self._tf.lite.Interpreter(model_content=blob, num_threads=1)
        it.allocate_tensors()
        it._dpu_in = it.get_input_details()[0]["index"]
        it._dpu_out = it.get_output_details()[0]["index"]
        it._dpu_n = 1
        return it

    @staticmethod
    def _run_interpreter(it, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n != it._dpu_n:
            it.resize_tensor_input(it._dpu_in, [n, *x.shape[1:]])
            it.allocate_tensors()
            it._dpu_n = n
        it.set_tensor(it._dpu_in, np.ascontiguousarray(x, dtype=np.float32))
        it.invoke()
        return it.get_tensor(it._dpu_out).reshape(n, -1)

    # ---------------------------------------------------------------- inference
    def infer(self, x: np.ndarray) -> np.ndarray:
        x = self._check_batch(x)
        if self._tflite is not None:
            it = getattr(self._local, "it", None)
            if it is None:
                it = self._local.it = self._new_interpreter(self._tflite)
            y = self._run_interpreter(it, x)
        else:
            y = self._fn(self._tf.constant(x, dtype=self._tf.float32)).numpy().reshape(len(x), -1)
        if self._probs_out:
            return y.astype(np.float32, copy=False)
        return softmax(y)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw model output via TensorFlow (for tests and debugging)."""
        x = self._check_batch(x)
        return self._fn(self._tf.constant(x, dtype=self._tf.float32)).numpy().reshape(len(x), -1)

    def describe(self) -> dict:
        d = super().describe()
        d["runtime"] = self.runtime
        if self.runtime == "tflite":
            d["tflite_convert_seconds"] = self.convert_seconds
        return d


# ============================================================================ factory
def open_backend(kind: str, model_path: str, labels: list[str], pp: Preprocess,
                 manifest_fix=(None, None), host_runtime: str = "auto") -> Backend:
    if kind == "auto":
        kind = "vart" if model_path.endswith(".xmodel") else "host"
    if kind == "vart":
        if not model_path.endswith(".xmodel"):
            raise AppError(f"--backend vart needs a compiled .xmodel, got {model_path}")
        return VartBackend(model_path, labels, pp, manifest_fix)
    if kind == "host":
        return HostBackend(model_path, labels, pp, runtime=host_runtime)
    raise AppError(f"--backend {kind!r}: choose auto, vart or host")
