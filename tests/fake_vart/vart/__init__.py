"""Emulation of the VART Python API (module `vart`) for tests of dpu_app's vart backend.

Shapes of the real binding (Vitis-AI src/vai_runtime/vart/runner/python/runner_py_module.cpp):
  Runner.create_runner(subgraph, mode="") (static); r.get_input_tensors() / get_output_tensors()
  (lists of xir.Tensor); r.execute_async(inputs, outputs, enable_dynamic_array=False) takes
  LISTS of buffers, one per runner tensor, builds each from the TENSOR's shape and dtype (the
  array's own shape and strides are not looked at) and returns (job_id, status);
  r.wait((job_id, status)) calls Runner::wait(job_id, -1) (no timeout argument in Python) and
  returns an int status.

It ENFORCES what the app must get right, failing loudly where the real one would silently read
garbage: each array shaped exactly tuple(tensor.dims), C-contiguous, writeable, int8 for an
xint8 tensor; the outputs are only valid after wait(job) (they are written in wait(), from the
input buffer as it is then); wait takes the pair, once, from the thread that submitted the job.
Emulation rules stricter than VART (the official apps' pattern, which the app follows):
runners are created with mode "run", on the MAIN thread, one after another; a runner is used
by one thread at a time (another thread may use it later: the app's prepared runners).

It computes like a DPU: the int8 input is dequantized (q * 2**-fix_point), run through the
QUANTIZED Keras model the xmodel's DPU subgraph names (attribute "emulated_compute", written by
tests/vart_emulation.py), and quantized with the output fix_point (round half up, clip).

Faults, as on the board (see fake_vart/_fatal.py for what "fatal" means: glog FATAL + abort):
  * a DPU subgraph whose "dpu_fingerprint" differs from the board's: create_runner is fatal
    ("CHECK fingerprint fail"); the board is FAKE_BOARD_FINGERPRINT (default the Vitis AI 3.0
    ZCU104 image's 0x101000056010407, the same the fake `xdputil query` prints);
  * EMULATION.fault (or FAKE_VART_FAULT='{"kind": ..., ...}' in the environment), triggered
    on the first job after `after` jobs (default 0):
      {"kind": "execute_status", "status": 3}  execute_async returns (job_id, 3), no output;
      {"kind": "wait_status", "status": 1}     wait returns 1, no output;
      {"kind": "hang"}                         the DPU never finishes: wait blocks for
          XLNX_DPU_TIMEOUT ms (VART's variable, DEF_ENV_PARAM(XLNX_DPU_TIMEOUT, "10000") in
          xrt_cu.cpp), then VART's fatal "dpu timeout!" (a user's Ultra96 board log shows
          "W... xrt_cu.cpp] cu timeout!", "F... dpu_control_xrt_edge.cpp:191] dpu timeout!
          core_idx = 0", "Aborted"). The Python wait() has no timeout of its own.

`EMULATION` records what happened (runners, threads, jobs, a copy of every input) so tests
can look at the exact int8 values the app sent.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

import numpy as np

import xir  # noqa: F401  (the real vart imports xir too)
from _emu_cache import LOCK as _models_lock, MODELS as _models
from _fatal import EmulatedAbort, fatal  # noqa: F401

EMULATED = True
BOARD_FINGERPRINT = 0x101000056010407      # DPUCZDX8G_ISA1_B4096, Vitis AI 3.0 board image


class VartError(RuntimeError):
    pass


def board_fingerprint() -> int:
    return int(os.environ.get("FAKE_BOARD_FINGERPRINT", hex(BOARD_FINGERPRINT)), 16)


class _Record:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.runners = []            # (runner, creating thread name)
        self.jobs = 0
        self.inputs = []             # copies of every input buffer at execution (list of arrays)
        self.outputs = []            # copies of every int8 output written
        self.threads = set()         # names of the threads that ran jobs
        self.keep_inputs = True
        env = os.environ.get("FAKE_VART_FAULT")
        self.fault = json.loads(env) if env else None


EMULATION = _Record()


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


def _fault_now(kind: str, job_number: int):
    f = EMULATION.fault
    if f and f.get("kind") == kind and job_number > int(f.get("after", 0)):
        return f
    return None


class Runner:
    def __init__(self, subgraph, mode):
        self._sub = subgraph
        self._inputs = sorted(subgraph.get_input_tensors(), key=lambda t: t.name)
        self._outputs = sorted(subgraph.get_output_tensors(), key=lambda t: t.name)
        self._jobs: dict = {}
        self._next = 1
        self._busy = None                     # thread ident with jobs in flight
        self._compute = (subgraph.get_attr("emulated_compute")
                         if subgraph.has_attr("emulated_compute") else {"kind": "none"})

    @staticmethod
    def create_runner(subgraph, mode=""):
        if not isinstance(subgraph, xir.Subgraph):
            raise TypeError("create_runner(): incompatible function arguments: need an "
                            "xir.Subgraph")
        if mode != "run":
            raise VartError(f"emulation: mode {mode!r}; the DPU runner is created with 'run'")
        if threading.current_thread() is not threading.main_thread():
            raise VartError(f"emulation: create_runner() called from thread "
                            f"{threading.current_thread().name}; create runners one after "
                            f"another on the main thread (as the official VART apps do), then "
                            f"hand one to each worker thread")
        dev = subgraph.get_attr("device") if subgraph.has_attr("device") else None
        if dev != "DPU":
            raise VartError(f"emulation: cannot create a DPU runner for subgraph "
                            f"{subgraph.get_name()} (device {dev})")
        if subgraph.has_attr("dpu_fingerprint"):
            want, have = int(subgraph.get_attr("dpu_fingerprint")), board_fingerprint()
            if want != have:
                fatal("dpu_runner_base_imp.cpp", f"Check failed: fingerprint == "
                      f"dpu_fingerprint CHECK fingerprint fail! model_fingerprint {hex(want)} "
                      f"is un-matched with actual dpu_fingerprint {hex(have)}")
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
        me = threading.get_ident()
        if self._busy not in (None, me):
            raise VartError("emulation: this runner has jobs in flight from another thread; "
                            "use one runner per thread at a time")
        if enable_dynamic_array:
            raise VartError("emulation: enable_dynamic_array is not emulated")
        self._check(inputs, self._inputs, "inputs")
        self._check(outputs, self._outputs, "outputs")
        with EMULATION.lock:
            EMULATION.jobs += 1
            number = EMULATION.jobs
            EMULATION.threads.add(threading.current_thread().name)
        job = self._next
        self._next += 1
        bad = _fault_now("execute_status", number)
        status = int(bad["status"]) if bad else 0
        self._jobs[job] = (list(inputs), list(outputs), me, number, status)
        self._busy = me
        return (job, status)

    def wait(self, job_id):
        if not (isinstance(job_id, tuple) and len(job_id) == 2):
            raise TypeError(f"wait(): incompatible function arguments: takes the (job_id, "
                            f"status) pair execute_async returned, got {job_id!r}")
        jid = job_id[0]
        if jid not in self._jobs:
            raise VartError(f"wait(): job {jid} unknown or already waited for")
        inputs, outputs, thread, number, status = self._jobs[jid]
        if threading.get_ident() != thread:
            raise VartError("emulation: wait() from another thread than the job's")
        del self._jobs[jid]
        if not self._jobs:
            self._busy = None
        if status:
            return status                                        # failed job: no output
        if _fault_now("hang", number):
            ms = int(os.environ.get("XLNX_DPU_TIMEOUT", "10000"))
            time.sleep(ms / 1000.0)
            sys.stderr.write(f"W0000 00:00:00.000000 {os.getpid()} xrt_cu.cpp] cu timeout! "
                             f"device_core_idx 0 ENV_PARAM(XLNX_DPU_TIMEOUT) {ms}\n")
            fatal("dpu_control_xrt_edge.cpp", "dpu timeout! core_idx = 0")
        bad = _fault_now("wait_status", number)
        if bad:
            return int(bad["status"])
        self._run(inputs, outputs)
        return 0

    # ------------------------------------------------------------------ the "DPU"
    def _run(self, inputs, outputs):
        ti, to = self._inputs[0], self._outputs[0]
        q_in = inputs[0]
        if EMULATION.keep_inputs:
            with EMULATION.lock:
                EMULATION.inputs.append(q_in.copy())
        kind = self._compute.get("kind", "none")
        if kind == "record":                                      # just look at the input
            outputs[0][...] = 0
            return
        if kind != "keras":
            raise VartError(f"emulation: the DPU subgraph {self._sub.get_name()} says no model "
                            f"to compute (emulated_compute {self._compute})")
        x = q_in.astype(np.float32) * np.float32(2.0 ** -ti.get_attr("fix_point"))
        fn = _keras_fn(self._compute["model"])
        y = fn(x).numpy().reshape(outputs[0].shape)
        q = np.floor(y * np.float32(2.0 ** to.get_attr("fix_point")) + np.float32(0.5))
        outputs[0][...] = np.clip(q, -128, 127).astype(np.int8)
        if EMULATION.keep_inputs:
            with EMULATION.lock:
                EMULATION.outputs.append(outputs[0].copy())
