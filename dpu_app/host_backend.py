"""The PC backend: the float or quantized Keras .h5, run by TFLite (or TensorFlow)."""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

import numpy as np

from .backends import Backend
from .contract import Preprocess, softmax
from .errors import AppError, warn


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


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 for a moment (C++ log lines no Python setting reaches)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class HostBackend(Backend):
    """The same model on a PC: the float .h5 or the quantized .h5 (vitis quantizer).

    Runtimes: "tf" = tf.function with a fixed input signature; "tflite" = the same graph
    converted at start to TFLite and run by one interpreter per thread (3x faster at batch 1
    on this model: 0.5 ms vs 1.3-1.9 ms); "auto" = tflite when the conversion matches tf on
    probe inputs, else tf.
    """
    kind = "host"

    def __init__(self, model_path: str, labels: list[str], pp: Preprocess | None,
                 runtime: str = "auto", raw_width: int | None = None):
        super().__init__(model_path, labels, pp, raw_width)
        # the hand pipeline is one stream of one image a call: its interpreter uses every core
        # (10.7 ms instead of 20 ms a pass of the full network on 2 cores); the CNN's benchmark
        # threads each get a one-thread interpreter
        self.interp_threads = (os.cpu_count() or 1) if raw_width is not None else 1
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
        self._agree(model.inputs[0].shape[1:], "its input")
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
            with _quiet_stderr():    # TFLite's C++ "INFO: Created ... XNNPACK delegate" (once)
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
        if diff > tol or (self.raw_width is None and (got.argmax(1) != ref.argmax(1)).any()):
            return f"TFLite output differs from TensorFlow's by {diff:.3g}"
        return None

    def _new_interpreter(self, blob: bytes):
        it = self._tf.lite.Interpreter(model_content=blob, num_threads=self.interp_threads)
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
    def infer(self, x: np.ndarray, worker: int | None = None) -> np.ndarray:
        x = self._check_batch(x)
        if self._tflite is not None:             # one interpreter per thread
            it = getattr(self._local, "it", None)
            if it is None:
                it = self._local.it = self._new_interpreter(self._tflite)
            y = self._run_interpreter(it, x)
        else:
            y = self._fn(self._tf.constant(x, dtype=self._tf.float32)).numpy().reshape(len(x), -1)
        if self._probs_out or self.raw_width is not None:
            return y.astype(np.float32, copy=False)
        return softmax(y)

    def describe(self) -> dict:
        d = super().describe()
        d["runtime"] = self.runtime
        if self.runtime == "tflite":
            d["tflite_convert_seconds"] = self.convert_seconds
        return d
