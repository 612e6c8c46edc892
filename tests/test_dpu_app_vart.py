"""The vart backend against the VART/XIR emulation in tests/fake_vart, on a real quantized model.

The emulation enforces the real binding's rules (exact dims, int8, C-contiguous, lists,
(job, status) then wait, one runner per thread, DPU device attr, fix_point attrs) and runs the
QUANTIZED Keras model on the dequantized int8 input, so the app's scaling, rounding and
clipping are checked against real numbers. Not a board: see dpu_app/README.md.
"""
import hashlib
import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from vart_emulation import (FAKE_VART_DIR, REPO, TEST_CSV, drop_fake_vart, quant_fix_points,
                            use_fake_vart, write_emulated_xmodel, write_manifest)

from dpu_app.contract import Preprocess
from dpu_app.errors import AppError

N_IMAGES = 300
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")   # vitis_quantizer autograph


@pytest.fixture(scope="module")
def models(dpu_models):
    return dict(dpu_models, fix=quant_fix_points(dpu_models["quant"]))


@pytest.fixture(scope="module")
def test_data():
    from model.data import LETTERS, load_csv
    ds = load_csv(TEST_CSV)
    return ds.float()[:N_IMAGES], [LETTERS[c] for c in ds.y[:N_IMAGES]]


@pytest.fixture
def vart(monkeypatch):
    """The emulated vart/xir modules (and `python3 -m xdputil query` of the emulated board),
    imported fresh for the test and removed after it (the emulated 'DPU' keeps its loaded
    models in fake_vart/_emu_cache.py)."""
    yield use_fake_vart(monkeypatch)
    drop_fake_vart()                             # leave no fake vart behind for other tests


@pytest.fixture(scope="module")
def host_quant(models):
    from dpu_app.host_backend import HostBackend
    return HostBackend(models["quant"], models["labels_list"], Preprocess(), runtime="tflite")


def emu_xmodel(tmp_path, models, **kw):
    kw.setdefault("q_h5", models["quant"])
    kw.setdefault("in_fix", models["fix"][0])
    kw.setdefault("out_fix", models["fix"][1])
    return str(write_emulated_xmodel(tmp_path / "signnet.xmodel", **kw))


# ---------------------------------------------------------------------------- numbers
def test_emulated_vart_equals_host_quantized(tmp_path, models, test_data, vart, host_quant):
    from dpu_app.vart_backend import VartBackend
    x, truth = test_data
    vb = VartBackend(emu_xmodel(tmp_path, models), models["labels_list"], Preprocess())
    assert (vb.in_fix, vb.out_fix) == models["fix"]
    pv = vb.infer(x)
    ph = host_quant.infer(x)
    assert (pv.argmax(1) == ph.argmax(1)).all()
    np.testing.assert_allclose(pv, ph, rtol=0, atol=1e-6)
    # the int8 the "DPU" got is clip(floor(x * 2**fix + 0.5)), computed here independently
    sent = np.concatenate(vart.EMULATION.inputs[-N_IMAGES:])
    scaled = x.astype(np.float64) * 2 ** models["fix"][0]
    want = np.clip(np.floor(scaled + 0.5), -128, 127).astype(np.int8)
    assert np.array_equal(sent, want)
    # and it is a real model: far better than chance on real test images
    acc = np.mean(np.asarray(models["labels_list"])[pv.argmax(1)] == np.asarray(truth))
    assert acc > 0.3


def test_comparison_is_sensitive_to_output_scaling(tmp_path, models, test_data, vart,
                                                   host_quant, monkeypatch):
    """Mutation check: an app that dequantizes the output with the wrong fix point gives the
    same argmax but different probabilities, and the comparison above would catch it."""
    from dpu_app import vart_backend
    from dpu_app.vart_backend import VartBackend
    x, _ = test_data
    vb = VartBackend(emu_xmodel(tmp_path, models), models["labels_list"], Preprocess())
    monkeypatch.setattr(vart_backend, "dequantize_output",
                        lambda q, fix: q.astype(np.float32) * np.float32(2.0 ** -(fix - 1)))
    pv = vb.infer(x[:50])
    ph = host_quant.infer(x[:50])
    assert np.abs(pv - ph).max() > 1e-3


def test_white_pixel_clips_to_127_not_wraps(tmp_path, models, vart):
    from dpu_app.vart_backend import VartBackend
    xm = emu_xmodel(tmp_path, models, in_fix=7, compute="record")
    vb = VartBackend(xm, models["labels_list"], Preprocess())
    x = np.zeros((4, 28, 28, 1), np.float32)
    x[0] = 1.0                                   # white: 128 at fix 7
    x[1] = 0.5
    x[2] = 1.0 / 255
    x[3, 0, 0, 0] = 0.5 / 128                    # exactly half an LSB: DPU rounds half up
    vb.infer(x)
    q = vart.EMULATION.inputs
    assert len(q) == 4 and all(a.dtype == np.int8 for a in q)
    assert (q[0] == 127).all(), "1.0 at fix_point 7 must clip to 127"
    assert (q[1] == 64).all() and (q[2] == 1).all()
    assert q[3][0, 0, 0, 0] == 1 and (q[3].ravel()[1:] == 0).all()


def test_dpu_batch_larger_than_one(tmp_path, models, test_data, vart, host_quant):
    """A DPU batch of 4: 10 images go as 3 jobs, the last padded; results match batch 1."""
    from dpu_app.vart_backend import VartBackend
    x, _ = test_data
    vb = VartBackend(emu_xmodel(tmp_path, models, batch=4), models["labels_list"], Preprocess())
    assert vb.batch == 4
    p = vb.infer(x[:10])
    assert vart.EMULATION.jobs == 3
    np.testing.assert_allclose(p, host_quant.infer(x[:10]), atol=1e-6)


def test_threads_each_get_their_own_runner(tmp_path, models, vart, host_quant):
    """app_mt.py style benchmark with 3 threads: each thread uses its own runner, created on the
    main thread beforehand (the emulation refuses create_runner off the main thread and a
    runner with jobs in flight from another thread), and accuracy equals the host's."""
    from dpu_app import bench
    from dpu_app.vart_backend import VartBackend
    from dpu_app.datasets import load_kaggle_csv
    _d = load_kaggle_csv(str(TEST_CSV), limit=120)
    pix, raw = _d.pixels, _d.raw
    vb = VartBackend(emu_xmodel(tmp_path, models), models["labels_list"], Preprocess())
    vb.prepare(3)                                # runners made on the main thread, as the app does
    rv = bench.bench_csv(vb, pix, raw, threads=3)
    rh = bench.bench_csv(host_quant, pix, raw, threads=1)
    assert rv["correct"] == rh["correct"] and rv["same_predictions_with_preprocess"]
    assert {name for _, name in vart.EMULATION.runners} == {"MainThread"}
    assert len(vart.EMULATION.runners) == 4                   # the main thread's + 3 prepared
    assert {"bench-0", "bench-1", "bench-2"} <= vart.EMULATION.threads


# ---------------------------------------------------------------------------- xmodel checks
@pytest.mark.parametrize("count", [0, 2])
def test_dpu_subgraph_count_must_be_one(tmp_path, models, vart, count):
    from dpu_app.vart_backend import VartBackend
    xm = emu_xmodel(tmp_path, models, dpu_subgraphs=count)
    with pytest.raises(AppError, match=f"has {count} DPU subgraphs, this app needs exactly 1"):
        VartBackend(xm, models["labels_list"], Preprocess())


@pytest.mark.parametrize("kw,msg", [
    ({"in_dtype": "float32"}, "is float32, this app feeds int8"),
    ({"with_fix": False}, "has no fix_point attribute"),
    ({"in_dims": [1, 32, 32, 1]}, "input tensor .* is \\[32, 32, 1\\], the preprocessing makes "
                                  "\\[28, 28, 1\\]"),
    ({"classes": "labels+1"}, "has {n1} outputs but there are {n} labels"),
    ({"fingerprint": 0x101000016010407}, "compiled for DPU fingerprint 0x101000016010407 .* "
                                         "this board's DPU is 0x101000056010407"),
])
def test_xmodel_faults_are_one_line(tmp_path, models, vart, kw, msg):
    from dpu_app.vart_backend import VartBackend
    n = len(models["labels_list"])
    if kw.get("classes") == "labels+1":                       # the model's count, not a constant
        kw = {"classes": n + 1}
    msg = msg.replace("{n1}", str(n + 1)).replace("{n}", str(n))
    with pytest.raises(AppError, match=msg) as e:
        VartBackend(emu_xmodel(tmp_path, models, **kw), models["labels_list"], Preprocess())
    assert "\n" not in str(e.value)


def test_unreadable_and_missing_xmodel(tmp_path, models, vart):
    from dpu_app.vart_backend import VartBackend
    bad = tmp_path / "bad.xmodel"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(AppError, match="could not be read"):
        VartBackend(str(bad), models["labels_list"], Preprocess())
    with pytest.raises(AppError, match="not found"):
        VartBackend(str(tmp_path / "none.xmodel"), models["labels_list"], Preprocess())


def test_without_vart_modules(tmp_path, monkeypatch, models):
    from dpu_app.vart_backend import VartBackend
    monkeypatch.setitem(sys.modules, "vart", None)
    with pytest.raises(AppError, match="needs the Vitis AI runtime Python modules"):
        VartBackend(str(tmp_path / "x.xmodel"), models["labels_list"], Preprocess())


# ---------------------------------------------------------------------------- the emulation
def test_emulation_enforces_the_real_rules(tmp_path, models, vart):
    """The emulation is only useful if it rejects what the real runner would mishandle."""
    import xir
    g = xir.Graph.deserialize(emu_xmodel(tmp_path, models, compute="record"))
    subs = g.get_root_subgraph().toposort_child_subgraph()
    dpu = [s for s in subs if s.has_attr("device") and s.get_attr("device").upper() == "DPU"]
    cpu = [s for s in subs if s.get_attr("device") == "CPU"]
    with pytest.raises(RuntimeError):
        vart.Runner.create_runner(cpu[0], "run")
    r = vart.Runner.create_runner(dpu[0], "run")
    ti, to = r.get_input_tensors()[0], r.get_output_tensors()[0]
    assert ti.dtype == "xint8" and isinstance(ti.dims, list)
    with pytest.raises(xir.EmulatedAbort):                          # a failed CHECK: abort
        ti.get_attr("no_such_attr")
    good_in = np.zeros(tuple(ti.dims), np.int8)
    good_out = np.zeros(tuple(to.dims), np.int8)
    bad_inputs = [
        np.zeros((28, 28, 1), np.int8),                              # no batch dim
        np.zeros(tuple(ti.dims), np.float32),                        # float
        np.zeros((1, 28, 56, 1), np.int8)[:, :, ::2],                # not C-contiguous
    ]
    ro = np.zeros(tuple(ti.dims), np.int8)
    ro.flags.writeable = False
    bad_inputs.append(ro)
    for b in bad_inputs:
        with pytest.raises(RuntimeError):
            r.execute_async([b], [good_out])
    with pytest.raises(TypeError):
        r.execute_async(good_in, [good_out])                         # not a list
    job = r.execute_async([good_in], [good_out])
    assert isinstance(job, tuple) and len(job) == 2
    with pytest.raises(TypeError):
        r.wait(job[0])                                               # the pair, not the id
    assert r.wait(job) == 0
    with pytest.raises(RuntimeError):
        r.wait(job)                                                  # twice
    pending = r.execute_async([good_in], [good_out])
    seen = []

    def other_thread():
        for call in (lambda: r.execute_async([good_in], [good_out]),   # runner busy elsewhere
                     lambda: r.wait(pending),                          # another thread's job
                     lambda: vart.Runner.create_runner(dpu[0], "run")):  # off the main thread
            try:
                call()
                seen.append(None)
            except RuntimeError as e:
                seen.append(type(e).__name__)
    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert seen == ["VartError"] * 3
    assert r.wait(pending) == 0
    with pytest.raises(RuntimeError):
        vart.Runner.create_runner(dpu[0], "")                        # mode must be "run"


def test_vart_is_fatal_on_a_fingerprint_mismatch(tmp_path, models, vart, monkeypatch):
    """Why the app checks the fingerprint itself: VART aborts the process (EmulatedAbort is a
    BaseException, which no `except Exception` in the app turns into a tidy error)."""
    import xir
    xm = emu_xmodel(tmp_path, models, compute="record")
    sub = [s for s in xir.Graph.deserialize(xm).get_root_subgraph().toposort_child_subgraph()
           if s.get_attr("device") == "DPU"][0]
    assert sub.get_attr("dpu_fingerprint") == 0x101000056010407
    vart.Runner.create_runner(sub, "run")                            # the board's own: fine
    monkeypatch.setenv("FAKE_BOARD_FINGERPRINT", "0x101000016010407")
    with pytest.raises(vart.EmulatedAbort, match="CHECK fingerprint fail"):
        vart.Runner.create_runner(sub, "run")


# ---------------------------------------------------------------------------- bad files
def test_precheck_never_passes_a_file_xir_would_abort_on(tmp_path, models, vart):
    """xmodel_problem(path) is None  =>  xir.Graph.deserialize(path) does not abort, over every
    prefix of a real (emulated) xmodel and some foreign files; and the check is needed: xir
    aborts on most of them."""
    import xir
    from dpu_app.vart_backend import xmodel_problem
    data = open(emu_xmodel(tmp_path, models, compute="record"), "rb").read()
    cases = [data[:n] for n in range(0, len(data), 7)] + [
        b"\x00garbage", b"PK\x03\x04" + bytes(200), json.dumps({"a": 1}).encode(),
        bytes(range(256)) * 4, data + b"\xff"]
    refused = aborted = 0
    for i, blob in enumerate(cases):
        f = tmp_path / f"case{i}.xmodel"
        f.write_bytes(blob)
        why = xmodel_problem(str(f))
        try:
            xir.Graph.deserialize(str(f))
        except xir.EmulatedAbort:
            aborted += 1
            assert why, f"case {i} ({len(blob)} bytes): xir aborts, the pre-check let it pass"
        refused += bool(why)
    assert xmodel_problem(str(tmp_path / "case0.xmodel")) is not None          # empty file
    assert aborted > len(cases) // 2 and refused >= aborted


def test_unreadable_xmodels_are_one_line_errors(tmp_path, models, vart):
    from dpu_app.vart_backend import VartBackend
    data = open(emu_xmodel(tmp_path, models, compute="record"), "rb").read()
    cut = tmp_path / "cut.xmodel"
    cut.write_bytes(data[:len(data) - 3])
    with pytest.raises(AppError, match="cut short") as e:
        VartBackend(str(cut), models["labels_list"], Preprocess())
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------- DPU faults
@pytest.mark.parametrize("fault", [{"kind": "execute_status", "status": 3},
                                   {"kind": "wait_status", "status": 1, "after": 2}])
def test_failed_dpu_job_is_an_app_error(tmp_path, models, vart, fault):
    from dpu_app.vart_backend import VartBackend
    vb = VartBackend(emu_xmodel(tmp_path, models, compute="record"), models["labels_list"],
                     Preprocess())
    x = np.zeros((5, 28, 28, 1), np.float32)
    vart.EMULATION.fault = fault
    with pytest.raises(AppError, match=f"ended with status {fault['status']}"):
        vb.infer(x)
    assert vart.EMULATION.jobs == int(fault.get("after", 0)) + 1   # stopped at the failed job


def test_hung_dpu_aborts_after_xlnx_dpu_timeout(tmp_path, models, vart, monkeypatch, capfd):
    """A DPU that never finishes: VART's wait() blocks XLNX_DPU_TIMEOUT ms and then aborts
    ("dpu timeout!"); the Python API has no timeout the app could use."""
    import xir
    monkeypatch.setenv("XLNX_DPU_TIMEOUT", "1")
    sub = [s for s in xir.Graph.deserialize(emu_xmodel(tmp_path, models, compute="record"))
           .get_root_subgraph().toposort_child_subgraph() if s.get_attr("device") == "DPU"][0]
    r = vart.Runner.create_runner(sub, "run")
    ti, to = r.get_input_tensors()[0], r.get_output_tensors()[0]
    vart.EMULATION.fault = {"kind": "hang"}
    job = r.execute_async([np.zeros(ti.dims, np.int8)], [np.zeros(to.dims, np.int8)])
    assert job[1] == 0                                       # submitted fine ...
    with pytest.raises(vart.EmulatedAbort, match="dpu timeout"):
        r.wait(job)                                          # ... and never finished
    assert "cu timeout" in capfd.readouterr().err


def _app_process(tmp_path, xm, labels, fault):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAKE_VART_DIR), str(REPO)]),
               FAKE_VART_FAULT=json.dumps(fault), FAKE_VART_ABORT="1", XLNX_DPU_TIMEOUT="1")
    return subprocess.run([sys.executable, "-m", "dpu_app", "--model", xm, "--labels", labels,
                           "--bench", "--csv", str(TEST_CSV), "--limit", "20", "--threads", "2",
                           "--bench-frames", "0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_app_process_reports_a_failed_job_in_one_line(tmp_path, models, vart):
    """The whole app as a process on the emulated board: a DPU job that fails (wait status 1)
    ends it with exit status 2 and one `error:` line, no traceback; a hung DPU aborts it the
    way VART does (SIGABRT), which is what the board would show."""
    xm = emu_xmodel(tmp_path, models, compute="record")
    r = _app_process(tmp_path, xm, models["labels"],
                     {"kind": "wait_status", "status": 1, "after": 3})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: DPU job") and "status 1" in lines[0]
    assert "Traceback" not in r.stderr
    r = _app_process(tmp_path, xm, models["labels"], {"kind": "hang"})
    assert r.returncode == -6 and "dpu timeout!" in r.stderr, r.stderr[-2000:]


# ---------------------------------------------------------------------------- whole app
def test_app_bench_with_emulated_board_and_manifest(tmp_path, models, vart, host_quant):
    from dpu_app import app
    xm = emu_xmodel(tmp_path, models)
    write_manifest(tmp_path / "deploy.json", xm, models["labels_list"], *models["fix"])
    out = io.StringIO()
    rc = app.main(["--model", xm, "--bench", "--csv", str(TEST_CSV), "--limit", "200",
                   "--threads", "1,2", "--bench-frames", "40", "--json",
                   str(tmp_path / "b.json")], out=out)
    assert rc == 0
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["backend"]["backend"] == "vart"
    assert res["backend"]["input_fix_point"] == models["fix"][0]
    from dpu_app.datasets import load_kaggle_csv
    from dpu_app import bench
    _d = load_kaggle_csv(str(TEST_CSV), limit=200)
    pix, raw = _d.pixels, _d.raw
    want = bench.bench_csv(host_quant, pix, raw)["correct"]
    assert [r["correct"] for r in res["runs"]] == [want, want]
    assert res["frames"]["frames"] == 40 and res["frames"]["fps"] > 0
    assert "vart: 200 images, 2 thread(s)" in out.getvalue()


def test_app_refuses_stale_manifest(tmp_path, models, vart, capsys):
    from dpu_app import app
    xm = emu_xmodel(tmp_path, models)
    write_manifest(tmp_path / "deploy.json", xm, models["labels_list"], *models["fix"],
                   sha256=hashlib.sha256(b"another build").hexdigest())
    rc = app.main(["--model", xm, "--bench", "--csv", str(TEST_CSV), "--limit", "10"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is for another build" in err[0]


def test_app_refuses_manifest_fix_mismatch(tmp_path, models, vart, capsys):
    from dpu_app import app
    xm = emu_xmodel(tmp_path, models)
    man = write_manifest(tmp_path / "m.json", xm, models["labels_list"], models["fix"][0] + 1,
                         models["fix"][1])
    rc = app.main(["--manifest", str(man), "--bench", "--csv", str(TEST_CSV), "--limit", "10"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "manifest says input fix_point" in err[0]
