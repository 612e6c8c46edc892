"""The app end to end on a real (small, freshly trained) model with the host backend: the live
pipeline on a video made from test images, the viewer hand-off, the benchmark's accuracy
against an independent Keras evaluation, and the one-line faults of the command line."""
import io
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from vart_emulation import APP_DIR, TEST_CSV, make_sign_video

from dpu_app import app
from dpu_app.contract import Preprocess

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")   # vitis_quantizer autograph


@pytest.fixture(scope="module")
def models(dpu_models):
    return dict(dpu_models)


@pytest.fixture(scope="module")
def host_float(models):
    from dpu_app.host_backend import HostBackend
    return HostBackend(models["float"], models["labels_list"], Preprocess(), runtime="tflite")


@pytest.fixture(scope="module")
def dataset():
    from model.data import load_csv
    return load_csv(TEST_CSV)


def pick_word(host, ds, length=5, n=600, min_conf=0.9):
    """Test images the model gets right with high confidence, consecutive letters distinct."""
    from model.data import LETTERS
    p = host.infer(ds.float()[:n])
    good = np.flatnonzero((p.argmax(1) == ds.y[:n]) & (p.max(1) >= min_conf))
    idx, used = [], set()
    for i in good:
        letter = LETTERS[ds.y[i]]
        if letter not in used:
            idx.append(int(i))
            used.add(letter)
        if len(idx) == length:
            break
    assert len(idx) == length, "the test model is too weak to pick a word"
    return idx, "".join(LETTERS[ds.y[i]] for i in idx)


def pick_filler(host, threshold):
    """A picture the model is NOT confident about (for a gap), or None."""
    rng = np.random.default_rng(1)
    cands = [np.full((28, 28), v, np.uint8) for v in (0, 40, 128, 255)]
    cands.append(rng.integers(0, 256, (28, 28)).astype(np.uint8))
    best = min(cands, key=lambda c: host.infer(c[None, :, :, None] / np.float32(255))[0].max())
    conf = host.infer(best[None, :, :, None] / np.float32(255))[0].max()
    return best if conf < threshold / 2 else None


# ---------------------------------------------------------------------------- live, video
def test_live_pipeline_spells_a_video_of_test_images(tmp_path, models, host_float, dataset):
    idx, word = pick_word(host_float, dataset)
    imgs = [dataset.x[i] for i in idx]
    filler = pick_filler(host_float, 0.6)
    gaps = {2: (filler, 20)} if filler is not None else None
    video = tmp_path / "signs.avi"
    hold = 14
    total = make_sign_video(video, imgs, hold=hold, gaps=gaps)
    expect = word[:3] + " " + word[3:] if gaps else word

    states = []
    out = io.StringIO()
    rec = tmp_path / "annotated.mp4"
    rc = app.main(["--model", models["float"], "--source", str(video), "--no-display",
                   "--stable", "5", "--gap", "10", "--record", str(rec),
                   "--summary-json", str(tmp_path / "s.json")],
                  on_frame=lambda s, c: states.append((s, c is not None)), out=out)
    assert rc == 0
    lines = out.getvalue().splitlines()
    printed = [ln.split()[1] for ln in lines if ln.startswith("letter ") and ln != "letter -"]
    assert "".join(printed) == word, lines
    assert lines[-1] == f'final text "{expect}"'
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == total and summary["dropped"] == 0 and summary["text"] == expect
    # frame by frame: once the EMA settled (4 frames in), the letter is the image's letter
    f = 0
    for k, letter in enumerate(word):
        for j in range(4, hold):
            assert states[f + j][0]["letter"] == letter
        f += hold + (gaps[k][1] if gaps and k in gaps else 0)
    assert all(drawn for _, drawn in states)                  # overlay made for the recorder
    import cv2
    cap = cv2.VideoCapture(str(rec))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == total
    ok, frame = cap.read()
    assert ok and frame.shape == (480, 640, 3)


def test_web_viewer_gets_jpeg_and_state(tmp_path, models, monkeypatch, capsys):
    """--web hands every annotated frame to dpu_app/web.py's WebViewer (a stand-in here,
    following the agreed interface) as JPEG bytes plus the state dict."""
    calls = {"publish": [], "started": 0, "stopped": 0}

    class FakeViewer:
        def __init__(self, host="127.0.0.1", port=8080):
            calls["args"] = (host, port)
            self.url = f"http://{host}:{port}/"

        def start(self):
            calls["started"] += 1

        def publish(self, jpeg, state):
            calls["publish"].append((jpeg, state))

        def take_commands(self):
            return []

        def stop(self):
            calls["stopped"] += 1

    from dpu_app import web
    monkeypatch.setattr(web, "WebViewer", FakeViewer)
    rc = app.main(["--model", models["float"], "--source", str(TEST_CSV), "--limit", "3",
                   "--hold", "4", "--web", "--port", "8099", "--quiet"])
    assert rc == 0
    assert calls["args"] == ("127.0.0.1", 8099) and calls["started"] == calls["stopped"] == 1
    assert len(calls["publish"]) == 12
    jpeg, state = calls["publish"][-1]
    assert isinstance(jpeg, bytes) and jpeg[:2] == b"\xff\xd8"
    assert set(state) == {"letter", "confidence", "top3", "text", "fps", "ms", "frames",
                          "dropped", "backend", "threshold"}
    assert state["backend"] == "CPU (host-tflite-float)"
    assert set(state["ms"]) == {"capture", "preprocess", "infer", "overlay"}
    assert len(state["top3"]) == 3 and isinstance(state["top3"][0][0], str)
    assert state["frames"] == 12
    assert "web viewer: http://127.0.0.1:8099/" in capsys.readouterr().err


def test_real_web_viewer_serves_the_stream(models, capsys):
    """With the real dpu_app/web.py on a loopback port: /state.json shows what the app
    published, and a port already in use is one clear error line."""
    import socket
    import urllib.request
    from dpu_app import web  # noqa: F401  (part of the package: no skip)
    seen = {}

    def peek(state, canvas):
        if state["frames"] == 6:
            port = app_state["port"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/state.json", timeout=5) as r:
                seen.update(json.loads(r.read()))

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    app_state = {"port": port}
    rc = app.main(["--model", models["float"], "--source", str(TEST_CSV), "--limit", "2",
                   "--hold", "5", "--web", "--port", str(port), "--quiet"], on_frame=peek)
    assert rc == 0, capsys.readouterr().err
    assert seen["frames"] == 6 and seen["seq"] == 6 and len(seen["top3"]) == 3
    assert seen["backend"].startswith("CPU")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        rc = app.main(["--model", models["float"], "--source", str(TEST_CSV), "--limit", "2",
                       "--web", "--port", str(busy.getsockname()[1])])
    finally:
        busy.close()
    err = capsys.readouterr().err
    assert rc == 2 and "already in use" in one_error_line(err)


def test_no_display_no_web_module_falls_back(tmp_path, models, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setitem(sys.modules, "dpu_app.web", None)     # web.py absent
    rc = app.main(["--model", models["float"], "--source", str(TEST_CSV), "--limit", "2",
                   "--quiet"])
    assert rc == 0
    assert "running without a picture" in capsys.readouterr().err
    rc = app.main(["--model", models["float"], "--source", str(TEST_CSV), "--limit", "2",
                   "--web"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: the web viewer (dpu_app/web.py) is not")


def test_local_window_keys(models, monkeypatch):
    """With a display and a GUI OpenCV the app shows a cv2 window (stand-in functions here:
    this OpenCV is headless): 'c' clears the text, 'q' quits."""
    import cv2
    from dpu_app import sinks
    shown, keys = [], iter([0, 0, ord("c")] + [0] * 30 + [ord("q")])
    monkeypatch.setattr(sinks, "gui_available", lambda: True)
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None, raising=False)
    monkeypatch.setattr(cv2, "imshow", lambda t, img: shown.append(img.shape), raising=False)
    monkeypatch.setattr(cv2, "waitKey", lambda ms: next(keys, 0), raising=False)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0, raising=False)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None, raising=False)
    texts = []
    rc = app.main(["--model", models["float"], "--source", str(TEST_CSV), "--limit", "40",
                   "--hold", "3", "--stable", "2", "--threshold", "0.04", "--quiet"],
                  on_frame=lambda st, c: texts.append(st["text"]))
    assert rc == 0
    assert len(shown) == 34 and shown[0] == (504, 504, 3)     # stopped by 'q' at frame 34
    # threshold 0.04 < 1/24: every frame has a letter, so frame 2 spells the first one
    assert texts[1] != "" and texts[3] == ""                   # 'c' at frame 3 cleared it


def test_overlay_shows_the_state():
    from dpu_app import overlay
    frame = np.full((480, 640, 3), 90, np.uint8)
    roi = (180, 100, 280, 280)
    st = {"letter": "B", "confidence": 0.93, "top3": [["B", 0.93], ["R", 0.04], ["U", 0.01]],
          "text": "HELLO", "fps": 500.0, "ms": {"capture": 0.1, "preprocess": 0.1,
                                                "infer": 0.5, "overlay": 0.4}}
    a = overlay.draw(frame, roi, st)
    b = overlay.draw(frame, roi, dict(st, letter="L"))
    c = overlay.draw(frame, roi, dict(st, letter=None))
    assert a.shape == frame.shape and (frame == 90).all()       # the frame is not drawn on
    panel = (slice(0, 68), slice(0, 70))
    assert (a[panel] != b[panel]).any()                          # the letter is drawn
    assert tuple(a[100, 300]) == overlay.GREEN and tuple(c[100, 300]) == overlay.AMBER
    small = overlay.draw(np.zeros((28, 28), np.uint8), (0, 0, 28, 28), st)
    assert small.shape == (504, 504, 3)                          # enlarged to stay readable


# ---------------------------------------------------------------------------- accuracy
def test_bench_accuracy_matches_independent_keras_eval(models, dataset, host_float):
    """The benchmark's accuracy (app's own CSV reader, preprocessing, labels) equals a plain
    Keras evaluation with the repo's loader on the same rows."""
    import tensorflow as tf
    from dpu_app import bench
    from dpu_app.datasets import load_kaggle_csv
    n = 1500
    _d = load_kaggle_csv(str(TEST_CSV), limit=n)
    pix, raw = _d.pixels, _d.raw
    res = bench.bench_csv(host_float, pix, raw, threads=2, batch=8)
    km = tf.keras.models.load_model(models["float"], compile=False)
    keras_correct = int((km.predict(dataset.float()[:n], verbose=0).argmax(1) == dataset.y[:n]).sum())
    assert abs(res["correct"] - keras_correct) <= 1     # TFLite vs TF float: ties at most
    assert res["same_predictions_with_preprocess"]
    assert res["fps_infer_only"] > 0 and res["images"] == n


def test_host_runtimes_agree(models, dataset):
    from dpu_app.host_backend import HostBackend
    x = dataset.float()[:200]
    for path in (models["float"], models["quant"]):
        tfl = HostBackend(path, models["labels_list"], Preprocess(), runtime="tflite")
        tfn = HostBackend(path, models["labels_list"], Preprocess(), runtime="tf")
        assert tfl.runtime == "tflite" and tfn.runtime == "tf"
        assert (tfl.infer(x).argmax(1) == tfn.infer(x).argmax(1)).all()
        np.testing.assert_allclose(tfl.infer(x), tfn.infer(x), atol=1e-4)
    assert tfl.quantized and tfl.name == "host-tflite-quantized"


def test_frame_bench_on_640x480(models, host_float):
    from dpu_app import bench
    from dpu_app.processing import FrameProcessor, Roi
    from dpu_app.datasets import load_kaggle_csv
    _d = load_kaggle_csv(str(TEST_CSV), limit=100)
    pix, raw = _d.pixels, _d.raw
    frames, truth = bench.synth_frames(pix, raw, 200)
    assert frames[0].shape == (480, 640, 3)
    r = bench.bench_frames(FrameProcessor(host_float, Roi("auto")), frames, truth, 200)
    assert r["frames"] == 200 and r["fps"] > 0
    assert set(r["stages_ms"]) >= {"preprocess", "infer", "overlay"}
    # synth frames are linearly enlarged, so not exact; still mostly the right letter
    assert r["raw_frame_accuracy"] > 0.3


# ---------------------------------------------------------------------------- faults
def run_cli(args, timeout=180):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, "-m", "dpu_app", *args], cwd=APP_DIR.parent,
                          capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("error:")]
    assert len(errs) == 1 and lines[-1] == errs[0], stderr
    return errs[0]


def test_cli_camera_absent(models):
    if any(p.startswith("video") for p in os.listdir("/dev")):
        pytest.skip("this machine has a camera")
    r = run_cli(["--model", models["float"], "--source", "0", "--no-display"])
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "camera 0" in line and "/dev/video" in line


def test_cli_bad_arguments():
    r = run_cli(["--frobnicate"])
    assert r.returncode == 2 and "unrecognized arguments: --frobnicate" in one_error_line(r.stderr)
    r = run_cli(["--model", "x.h5", "--threshold", "2"])
    assert r.returncode == 2 and "--threshold 2.0" in one_error_line(r.stderr)


@pytest.mark.parametrize("case", ["no_model", "missing_model", "no_labels", "labels_23",
                                  "corrupt_h5", "corrupt_h5_no_labels", "xmodel_on_host",
                                  "bad_roi", "empty_roi", "record_dir", "not_a_model",
                                  "bench_no_csv", "bad_manifest", "csv_missing"])
def test_expected_faults_are_one_line(case, tmp_path, models, capsys):
    m = models["float"]
    args = {"no_model": [],
            "missing_model": ["--model", str(tmp_path / "nope.h5")],
            "xmodel_on_host": ["--model", str(tmp_path / "a.xmodel"), "--backend", "host"],
            "bad_roi": ["--model", m, "--roi", "1,2", "--source", str(TEST_CSV)],
            "empty_roi": ["--model", m, "--roi", "0,0,0,0", "--source", str(TEST_CSV)],
            "not_a_model": ["--model", str(TEST_CSV)],
            "record_dir": ["--model", m, "--source", str(TEST_CSV), "--record",
                           str(tmp_path / "no" / "x.mp4")],
            "bench_no_csv": ["--model", m, "--bench"],
            "bad_manifest": ["--model", m, "--manifest", str(tmp_path / "m.json")],
            "csv_missing": ["--model", m, "--source", str(tmp_path / "t.csv")]}.get(case)
    if case == "no_labels":
        shutil.copy(m, tmp_path / "model.h5")
        args = ["--model", str(tmp_path / "model.h5")]
    elif case == "labels_23":
        (tmp_path / "l.txt").write_text("\n".join(models["labels_list"][:23]) + "\n")
        args = ["--model", m, "--labels", str(tmp_path / "l.txt")]
    elif case.startswith("corrupt_h5"):       # the model's fault comes first, labels or not
        (tmp_path / "model.h5").write_bytes(b"garbage" * 100)
        if case == "corrupt_h5":
            shutil.copy(models["labels"], tmp_path / "labels.txt")
        args = ["--model", str(tmp_path / "model.h5")]
    elif case == "xmodel_on_host":
        (tmp_path / "a.xmodel").write_bytes(b"x")
        (tmp_path / "labels.txt").write_text("\n".join(models["labels_list"]))
    elif case == "bad_manifest":
        (tmp_path / "m.json").write_text("{not json")
    if "--source" not in args and "--bench" not in args:
        args = args + ["--source", str(TEST_CSV)]     # a model fault, whatever the cameras
    rc = app.main(args + ["--no-display"])
    err = capsys.readouterr().err
    assert rc == 2
    line = one_error_line(err)
    want = {"no_model": "no model given", "missing_model": "not found",
            "no_labels": "no labels for", "labels_23": "has 25 outputs but there are 23 labels",
            "corrupt_h5": "is not an HDF5 file", "corrupt_h5_no_labels": "is not an HDF5 file",
            "xmodel_on_host": "runs on the board",
            "bad_roi": "--roi 1,2", "empty_roi": "the box is empty",
            "not_a_model": "is neither a .h5 (Keras, PC) nor an .xmodel", "record_dir":
            "does not exist",
            "bench_no_csv": "--bench needs --eval-photos DIR", "bad_manifest": "not readable JSON",
            "csv_missing": "not found"}[case]
    assert want in line, line


@pytest.mark.parametrize("case", ["bench_no_csv", "csv_missing", "photos_missing",
                                  "photos_empty", "photos_a_file", "json_under_a_file",
                                  "summary_json_a_folder"])
def test_bad_scoring_inputs_are_reported_before_the_model_loads(models, capsys, monkeypatch,
                                                                 tmp_path, case):
    """--bench without a CSV, a missing --csv or --eval-photos folder, an output file that
    cannot be written: one line at once, not after seconds of model loading (nor after the
    session or benchmark whose results it was to keep). An empty --eval-photos is a fault,
    not a fall-back to the camera."""
    from dpu_app import backends
    loaded = []
    monkeypatch.setattr(backends, "open_backend", lambda *a, **k: loaded.append(1))
    args = {"bench_no_csv": ["--bench"],
            "csv_missing": ["--bench", "--csv", str(tmp_path / "t.csv.gz")],
            "photos_missing": ["--eval-photos", str(tmp_path / "photos")],
            "photos_empty": ["--eval-photos", ""],
            "photos_a_file": ["--eval-photos", str(TEST_CSV)],
            "json_under_a_file": ["--bench", "--csv", str(TEST_CSV), "--json",
                                  str(TEST_CSV / "b.json")],
            "summary_json_a_folder": ["--source", str(TEST_CSV), "--summary-json",
                                      str(tmp_path)]}[case]
    rc = app.main(["--model", models["float"], "--no-display", *args])
    want = {"bench_no_csv": "--bench needs --eval-photos DIR", "csv_missing": "t.csv.gz: file not found",
            "photos_missing": "photo folder not found",
            "photos_empty": "--eval-photos (empty): photo folder not found",
            "photos_a_file": "is a file, not a folder",
            "json_under_a_file": "is a file, not a folder: pick another path",
            "summary_json_a_folder": "give a file name"}[case]
    assert rc == 2 and not loaded
    assert want in one_error_line(capsys.readouterr().err)


def test_a_missing_xmodel_points_at_the_board_bundle(tmp_path, capsys):
    rc = app.main(["--model", str(tmp_path / "model" / "signnt.xmodel"), "--no-display"])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and "make deploy" in line and "make train" not in line


def test_missing_camera_is_reported_before_the_model_loads(models, capsys, monkeypatch):
    from dpu_app import backends
    loaded = []
    monkeypatch.setattr(backends, "open_backend", lambda *a, **k: loaded.append(1))

    class NoCamera:
        def __init__(self, *a, **k):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    rc = app.main(["--model", models["float"], "--source", "7", "--no-display"],
                  capture_factory=NoCamera)
    assert rc == 2 and not loaded
    assert "camera 7 could not be opened" in one_error_line(capsys.readouterr().err)


def test_viewer_choice(monkeypatch):
    """A window only with a display AND an OpenCV with GUI support; else the web viewer."""
    import cv2
    from dpu_app.sinks import gui_available
    a = app.build_parser().parse_args(["--model", "m.h5"])
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert not gui_available() and app.choose_viewer(a) == "web"
    monkeypatch.setenv("DISPLAY", ":0")
    headless = "NONE" in next(ln for ln in cv2.getBuildInformation().splitlines() if "GUI:" in ln)
    assert gui_available() is (not headless)
    assert app.choose_viewer(app.build_parser().parse_args(["--no-display"])) == "none"
    assert app.choose_viewer(app.build_parser().parse_args(["--web"])) == "web"


# ---------------------------------------------------------------------------- photo folders
def test_eval_photos_reproduces_the_trainers_heldout_figures(small_build, capsys):
    """`--eval-photos` on the validation photos the trainer exported goes JPEG -> hand square
    -> grey -> INTER_AREA -> model -> decision: it must give exactly the figures the trainer
    computed for the same photos (train/metrics.json), threshold and mirror from the
    manifest beside the model."""
    build, _ = small_build
    m = json.loads((build / "train" / "metrics.json").read_text())
    out = io.StringIO()
    js = build / "eval.json"
    rc = app.main(["--model", str(build / "train" / "model.h5"), "--eval-photos",
                   str(build / "train" / "photos_val"), "--json", str(js)], out=out)
    assert rc == 0, capsys.readouterr().err
    res = json.loads(js.read_text())
    for name in ("photos_val", "no_hand_val"):
        for key in ("images", "no_hand") + (("top3", "shown_right") if name == "photos_val"
                                            else ()):
            assert res["sets"][name][key] == pytest.approx(m["sets"][name][key], abs=1e-4)
    assert res["sets"]["photos_val"]["top1"] == pytest.approx(m["photo_val_accuracy"], abs=1e-4)
    assert res["threshold"] == m["threshold"]
    assert "hand crops from" in out.getvalue() and "read as 'no hand'" in out.getvalue()


def test_eval_photos_bad_folder_is_one_line(tmp_path, models, capsys):
    (tmp_path / "photos" / "J").mkdir(parents=True)
    rc = app.main(["--model", models["float"], "--eval-photos", str(tmp_path / "photos")])
    assert rc == 2
    line = one_error_line(capsys.readouterr().err)
    assert "'J' is not a letter this model knows" in line


def test_preprocessing_comes_from_the_model_without_a_manifest(tmp_path, models):
    """A model copied without its manifest still gets its own input size (here 28) and the
    default threshold."""
    from dpu_app.app import build_parser, resolve_model
    shutil.copy(models["float"], tmp_path / "model.h5")
    shutil.copy(models["labels"], tmp_path / "labels.txt")
    r = resolve_model(build_parser().parse_args(["--model", str(tmp_path / "model.h5")]))
    assert r.preprocess is None and r.manifest is None and r.threshold == 0.5
    from dpu_app.backends import open_backend
    b = open_backend("host", r.model, r.labels, r.preprocess)
    assert b.input_shape == (28, 28, 1) and b.preprocess.width == 28


def test_start_line_names_where_frames_go():
    assert app.describe_outputs("none", [], None) == "no viewer"
    assert app.describe_outputs("none", ["rec"], "out.mp4") == "recording to out.mp4"
    assert app.describe_outputs("web", ["web", "rec"], "o.mp4") == "viewer web, recording to o.mp4"
    assert app.describe_outputs("web", ["rec"], "o.mp4") == "recording to o.mp4"  # no viewer here


@pytest.mark.parametrize("realtime", ["yes", "auto"])
def test_a_video_file_plays_at_its_own_rate_when_shown(tmp_path, models, dataset, capsys,
                                                       realtime):
    """A clip shown in a viewer used to play at hundreds of frames a second (a 5 s clip over
    before the viewer's page was open). --realtime yes, or auto with a viewer, paces it at the
    file's own rate: 20 frames at 20 fps take at least 19 / 20 s (unpaced, a few ms each).
    auto without a viewer (here --no-display, as in benchmarks) does not pace."""
    video = tmp_path / "clip.avi"
    make_sign_video(video, [dataset.x[0]], hold=20, fps=20.0)
    rc = app.main(["--model", models["float"], "--source", str(video), "--no-display",
                   "--realtime", realtime, "--quiet", "--summary-json", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 20
    if realtime == "yes":
        assert "at its own 20 fps" in err and summary["seconds"] >= 19 / 20
        # said as the way out, not read as the state ("(--realtime no: as fast as possible)")
        assert "(pass --realtime no to read it as fast as possible)" in err
    else:
        assert "at its own" not in err


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_app_like_ctrl_c(tmp_path, models, dataset, sig):
    """kill / systemd (SIGTERM) and a closed ssh session (SIGHUP) used to end the app with a
    bare 'Terminated': no summary, camera and viewer not released by the app."""
    import signal
    video = tmp_path / "clip.avi"
    make_sign_video(video, [dataset.x[0]], hold=20, fps=20.0)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    p = subprocess.Popen([sys.executable, "-m", "dpu_app", "--model", models["float"],
                          "--source", str(video), "--loop", "--no-display", "--realtime", "yes"],
                         cwd=APP_DIR.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    first = p.stdout.readline()                 # the first frame's letter: the loop runs
    assert first.startswith("letter"), first
    p.send_signal(getattr(signal, sig))
    out, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert "stopped: interrupted" in stderr and "Traceback" not in stderr
    assert out.splitlines()[-1].startswith("final text")
