"""Emulation of the VART Python API (module `vart`) for tests of dpu_app's vart backend.

It ENFORCES what the real binding (Vitis AI 3.x src/vai_runtime/vart/runner/python/
runner_py_module.cpp) relies on, failing loudly where the real one would silently read
garbage or crash:
  * Runner.create_runner(subgraph, "run") only on a DPU subgraph (device attr "DPU");
  * execute_async(inputs, outputs) takes LISTS of numpy arrays, one per runner tensor, each
    shaped exactly tuple(tensor.dims), C-contiguous, writeable, int8 for an xint8 tensor (the
    real binding builds the buffer from the tensor's shape and ignores strides);
  * it returns (job_id, status) and the output is only valid after wait(job): the outputs
    are written in wait(), from the input buffer as it is then;
  * wait takes that (job_id, status) pair, once;
  * a runner is used only by the thread that created it (the app_mt.py pattern);
and computes like a DPU: the int8 input is dequantized (q * 2**-fix_point), run through the
QUANTIZED Keras model (vitis quantizer, tf.function), and the result is quantized to int8
with the output fix_point (round half up, clip to [-128, 127]).

`EMULATION` records what happened (runners, threads, jobs, a copy of every input) so tests
can look at the exact int8 values the app sent.
"""
from __future__ import annotations

import os
import threading

import numpy as np

import xir  # noqa: F401  (the real vart imports xir too)

EMULATED = True


class VartError(RuntimeError):
    pass


class _Record:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.runners = []            # (runner, creating thread name)
        self.jobs = 0
        self.inputs = []             # copies of every input buffer at execution (list of arrays)
        self.threads = set()
        self.keep_inputs = True


EMULATION = _Record()

from _emu_cache import LOCK as _models_lock, MODELS as _models  # noqa: E402


def _keras_fn(path: str):
    """tf.function of the quantized model at `path`, loaded once."""
    with _models_lock:
        fn = _models.get(path)
        if fn is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow as tf
            from vitis_quantizer import quantize_scope
            with quantize_scope():
                model = tf.keras.models.load_model(path, compile=False)
            shape = [None, *model.inputs[0].shape[1:]]
            fn = tf.function(lambda a: model(a, training=False),
                             input_signature=[tf.TensorSpec(shape, tf.float32)])
            fn._model = model
            _models[path] = fn
        return fn


class Runner:
    def __init__(self, subgraph, mode):
        self._sub = subgraph
        self._inputs = sorted(subgraph.get_input_tensors(), key=lambda t: t.name)
        self._outputs = sorted(subgraph.get_output_tensors(), key=lambda t: t.name)
        self._thread = threading.get_ident()
        self._jobs: dict = {}
        self._next = 1
        self._compute = subgraph.spec.get("compute", {"kind": "keras"})

    @staticmethod
    def create_runner(subgraph, mode=""):
        if not hasattr(subgraph, "spec"):
            raise TypeError("create_runner(): incompatible function arguments: need an "
                            "xir.Subgraph")
        if mode != "run":
            raise VartError(f"emulation: mode {mode!r}; the DPU runner is created with 'run'")
        if not (subgraph.has_attr("device") and subgraph.get_attr("device") == "DPU"):
            raise VartError(f"cannot create a DPU runner for subgraph {subgraph.get_name()} "
                            f"(device {subgraph.get_attr('device') if subgraph.has_attr('device') else None})")
        if subgraph.spec.get("fail_create"):
            raise VartError(subgraph.spec["fail_create"])
        r = Runner(subgraph, mode)
        with EMULATION.lock:
            EMULATION.runners.append((r, threading.current_thread().name))
        return r

    def get_input_tensors(self):
        return list(self._inputs)

    def get_output_tensors(self):
        return list(self._outputs)

    # ------------------------------------------------------------------ checks
    def _check(self, arrays, tensors, what):
        if not isinstance(arrays, (list, tuple)):
            raise TypeError(f"execute_async(): {what} must be a list of numpy arrays, one per "
                            f"tensor, got {type(arrays).__name__}")
        if len(arrays) != len(tensors):
            raise VartError(f"{what}: {len(arrays)} buffers for {len(tensors)} tensors")
        for a, t in zip(arrays, tensors):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{what}: {type(a).__name__} is not a numpy array")
            want = tuple(t.dims)
            if a.shape != want:
                raise VartError(f"{what} {t.name}: array shape {a.shape} != tensor dims {want} "
                                f"(the real runner would read/write {t.get_data_size()} bytes "
                                f"from the array's pointer regardless)")
            if t.dtype in ("xint8", "int8") and a.dtype != np.int8:
                raise VartError(f"{what} {t.name}: array dtype {a.dtype}, tensor is {t.dtype} "
                                f"(int8 expected)")
            if not a.flags["C_CONTIGUOUS"]:
                raise VartError(f"{what} {t.name}: array is not C-contiguous (strides ignored "
                                f"by the real runner)")
            if not a.flags["WRITEABLE"]:
                raise VartError(f"{what} {t.name}: array is read-only (the binding requests a "
                                f"writable buffer)")

    def execute_async(self, inputs, outputs, enable_dynamic_array=False):
        if threading.get_ident() != self._thread:
            raise VartError("emulation: this runner was created by another thread; use one "
                            "runner per thread")
        if enable_dynamic_array:
            raise VartError("emulation: enable_dynamic_array is not emulated")
        self._check(inputs, self._inputs, "inputs")
        self._check(outputs, self._outputs, "outputs")
        job = self._next
        self._next += 1
        self._jobs[job] = (list(inputs), list(outputs))
        with EMULATION.lock:
            EMULATION.jobs += 1
            EMULATION.threads.add(threading.get_ident())
        return (job, 0)

    def wait(self, job_id):
        if threading.get_ident() != self._thread:
            raise VartError("emulation: wait() from another thread than the runner's")
        if not (isinstance(job_id, tuple) and len(job_id) == 2):
            raise TypeError(f"wait(): incompatible function arguments: takes the (job_id, "
                            f"status) pair execute_async returned, got {job_id!r}")
        jid = job_id[0]
        if jid not in self._jobs:
            raise VartError(f"wait(): job {jid} unknown or already waited for")
        inputs, outputs = self._jobs.pop(jid)
        self._run(inputs, outputs)
        return 0

    # ------------------------------------------------------------------ the "DPU"
    def _run(self, inputs, outputs):
        ti, to = self._inputs[0], self._outputs[0]
        q_in = inputs[0]
        if EMULATION.keep_inputs:
            with EMULATION.lock:
                EMULATION.inputs.append(q_in.copy())
        kind = self._compute.get("kind", "keras")
        if kind == "record":                                      # just look at the input
            outputs[0][...] = 0
            return
        if kind != "keras":
            raise VartError(f"emulation: unknown compute kind {kind}")
        x = q_in.astype(np.float32) * np.float32(2.0 ** -ti.get_attr("fix_point"))
        fn = _keras_fn(self._compute["path"])
        y = fn(x).numpy().reshape(outputs[0].shape)
        q = np.floor(y * np.float32(2.0 ** to.get_attr("fix_point")) + np.float32(0.5))
        outputs[0][...] = np.clip(q, -128, 127).astype(np.int8)
