"""The board backend: the compiled .xmodel on the DPU through VART.

Written against the documented VART/XIR Python API (Vitis AI 3.0/3.5) and tested against an
emulation that enforces that API (tests/fake_vart); NOT YET RUN ON A REAL BOARD.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from .backends import Backend
from .contract import Preprocess, dequantize_output, quantize_input, softmax
from .dpu import describe_fingerprint, local_dpu, to_int, xmodel_problem
from .errors import AppError, warn


def check_fingerprint(subgraph, xmodel: str, board=local_dpu) -> None:
    """Refuse an xmodel compiled for another DPU before VART sees it: VART's own check logs
    "CHECK fingerprint fail" and aborts the whole process (SIGABRT, exit status 134), so no
    Python error handler would run. `board()` reads this board's DPU (xdputil query); when it
    cannot, say so and let VART decide."""
    want = to_int(subgraph.get_attr("dpu_fingerprint")) if subgraph.has_attr(
        "dpu_fingerprint") else None
    if want is None:
        return
    info = board()
    if info is None:
        warn(f"could not read this board's DPU fingerprint (xdputil query) to check {xmodel} "
             f"(compiled for {hex(want)}); if VART aborts with 'CHECK fingerprint fail', "
             f"recompile for this board")
        return
    if want not in info.fingerprints:
        have = info.fingerprints[0]
        raise AppError(f"xmodel {xmodel} was compiled for DPU fingerprint {hex(want)} "
                       f"({describe_fingerprint(want)}) but this board's DPU is {hex(have)} "
                       f"({describe_fingerprint(have)}): VART would abort; recompile with "
                       f"compile.board=custom compile.fingerprint={hex(have)}, or flash the "
                       f"matching board image")


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

    def __init__(self, xmodel: str, labels: list[str], pp: Preprocess | None,
                 manifest_fix: tuple[int | None, int | None] = (None, None), board=local_dpu,
                 raw_width: int | None = None):
        super().__init__(xmodel, labels, pp, raw_width)
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
        why = xmodel_problem(xmodel)                 # xir would abort the process on it
        if why:
            raise AppError(f"xmodel {xmodel} could not be read ({why}): copy it again, or "
                           f"re-run the compile stage")
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
        check_fingerprint(self._sub, xmodel, board=board)     # before VART can abort the app
        self.quantized = True
        self._lock = threading.Lock()
        self._workers: list[_VartWorker] = []
        self._pool: list[_VartWorker] = []            # benchmark threads' runners
        w = self._new_worker()                                   # the main thread's, and checks
        self._local.w = w
        in_t, out_t = w.in_t, w.out_t
        if len(in_t) != 1 or len(out_t) != 1:
            raise AppError(f"xmodel {xmodel}: the DPU subgraph has {len(in_t)} inputs and "
                           f"{len(out_t)} outputs, this app needs 1 and 1")
        ti, to = in_t[0], out_t[0]
        dims_in, dims_out = tuple(ti.dims), tuple(to.dims)
        if len(dims_in) != 4:
            raise AppError(f"xmodel {xmodel}: input tensor {ti.name} is {list(dims_in)}, this "
                           f"app feeds NHWC images")
        self._agree(dims_in[1:], f"input tensor {ti.name}")
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

    def _new_worker(self) -> _VartWorker:
        try:
            runner = self._vart.Runner.create_runner(self._sub, "run")
        except Exception as e:                                   # noqa: BLE001
            raise AppError(f"could not open a DPU runner for {self.model_path} "
                           f"({str(e).strip() or type(e).__name__}): check the DPU with "
                           f"'xdputil query' and that the xmodel was compiled for this "
                           f"board's fingerprint") from None
        w = _VartWorker(runner)
        with self._lock:
            self._workers.append(w)
        return w

    def prepare(self, workers: int) -> None:
        """Runners for `workers` benchmark threads (worker=0..workers-1), created here one
        after another on the calling (main) thread, as the official VART apps do: never from
        several threads at once."""
        while len(self._pool) < workers:
            self._pool.append(self._new_worker())

    def _worker(self, index: int | None) -> _VartWorker:
        if index is None:
            w = getattr(self._local, "w", None)
            if w is None:
                raise AppError(f"no DPU runner for thread {threading.current_thread().name}: "
                               f"pass worker=i after prepare(n) on the main thread")
            return w
        if index >= len(self._pool):
            raise AppError(f"DPU runner {index} was not prepared (prepare({index + 1}) on the "
                           f"main thread first)")
        return self._pool[index]

    def infer(self, x: np.ndarray, worker: int | None = None) -> np.ndarray:
        x = self._check_batch(x)
        w = self._worker(worker)
        n, b = len(x), self.batch
        out = np.empty((n, self._classes), np.float32)
        for i in range(0, n, b):
            k = min(b, n - i)
            quantize_input(x[i:i + k], self.in_fix, out=w.in_buf[:k])
            if k < b:
                w.in_buf[k:] = 0
            self._run_job(w)
            out[i:i + k] = dequantize_output(w.out_buf[:k].reshape(k, -1), self.out_fix)
        return out if self.raw_width is not None else softmax(out)

    def _run_job(self, w: _VartWorker) -> None:
        """One DPU job on w's buffers: execute_async -> (job_id, status), then wait(that pair)
        -> status. A non-zero status from either is an AppError (no output to read)."""
        job = w.runner.execute_async([w.in_buf], [w.out_buf])
        status = job[1] if isinstance(job, tuple) and len(job) == 2 else 0
        if status == 0:
            status = w.runner.wait(job)
        if status not in (0, None):
            raise AppError(f"DPU job {job[0] if isinstance(job, tuple) else job} of "
                           f"{self.model_path} ended with status {status}: check 'dmesg' and "
                           f"'xdputil query' on the board")

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
            self._pool.clear()
        self._local = threading.local()
