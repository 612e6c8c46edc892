"""Frame sources and the capture side of the pipeline: camera absent, camera unplugged mid-run,
unreadable frames, file sources, ROI. No TensorFlow: a numpy stand-in backend where a model is
needed (the real-model paths are in test_dpu_app_pipeline.py)."""
import gzip
import io
import subprocess
import sys

import numpy as np
import pytest

from vart_emulation import APP_DIR, TEST_CSV, fake_capture_factory, place_in_frame

from dpu_app import sources
from dpu_app.contract import Preprocess
from dpu_app.datasets import kaggle_letter
from dpu_app.errors import AppError
from dpu_app.capture import FrameGrabber
from dpu_app.live import LivePipeline
from dpu_app.processing import FrameProcessor, Roi


class MeanBackend:
    """numpy stand-in: class = mean brightness bucket of the 28x28 input (24 buckets)."""
    kind = name = "fake"

    def __init__(self):
        self.labels = list("ABCDEFGHIKLMNOPQRSTUVWXY")
        self.preprocess = Preprocess()
        self.input_shape = (28, 28, 1)
        self.batch = 1
        self.model_path = "fake"

    def infer(self, x):
        m = x.reshape(len(x), -1).mean(1)
        idx = np.minimum((m * 24).astype(int), 23)
        p = np.full((len(x), 24), 0.001, np.float32)
        p[np.arange(len(x)), idx] = 1.0
        return p / p.sum(1, keepdims=True)

    def describe(self):
        return {"backend": "fake"}

    def close(self):
        pass


def grey_frames(levels):
    return [np.full((480, 640, 3), v, np.uint8) for v in levels]


# ---------------------------------------------------------------------------- camera absent
def test_camera_absent_lists_devices(monkeypatch):
    monkeypatch.setattr(sources, "list_video_devices", lambda: ["/dev/video2", "/dev/video3"])
    monkeypatch.setattr(sources.sys, "platform", "linux")
    plan = {"frames": grey_frames([10]), "never": True}
    with pytest.raises(AppError) as e:
        sources.open_source("0", capture_factory=fake_capture_factory(plan))
    msg = str(e.value)
    assert "camera 0 could not be opened" in msg and "/dev/video2, /dev/video3" in msg
    assert "\n" not in msg


def test_camera_absent_none_found(monkeypatch):
    monkeypatch.setattr(sources, "list_video_devices", lambda: [])
    monkeypatch.setattr(sources.sys, "platform", "linux")
    plan = {"frames": grey_frames([10]), "never": True}
    with pytest.raises(AppError, match="no /dev/video\\* devices found"):
        sources.open_source("1", capture_factory=fake_capture_factory(plan))


def test_camera_device_path_missing(monkeypatch):
    monkeypatch.setattr(sources.sys, "platform", "linux")
    with pytest.raises(AppError, match="camera /dev/video97 does not exist"):
        sources.open_source("/dev/video97")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="V4L2 listing is Linux only")
def test_camera_absent_cli_one_line_nonzero():
    """The real cv2 V4L2 path, no camera on this machine: one line, exit 2, no traceback.
    (The whole app with a model and --source 0 is in test_dpu_app_pipeline.py.)"""
    if sources.list_video_devices():
        pytest.skip("this machine has a camera")
    code = ("import sys\n"
            "from dpu_app.errors import AppError\nfrom dpu_app import sources\n"
            "try:\n    sources.open_source('0')\n"
            "except AppError as e:\n    print('error:', e, file=sys.stderr); sys.exit(2)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=APP_DIR.parent)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and "camera 0" in lines[0] and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------- unplugged
def test_camera_unplugged_reconnects_with_backoff():
    frames = grey_frames([20, 200])
    plan = {"frames": frames, "fail_after": 5, "down_opens": 2}
    sleeps = []
    cam = sources.CameraSource("0", capture_factory=fake_capture_factory(plan),
                               sleep=sleeps.append, api=0)
    got = [cam.read() for _ in range(12)]
    assert all(f is not None for f in got)
    assert cam.reconnects == 1
    assert [f.index for f in got] == list(range(12))
    # two failed reopen tries then success: backoff 0.5, 1.0, 2.0 (plus tiny read retries)
    backoffs = [s for s in sleeps if s >= 0.5]
    assert backoffs == [0.5, 1.0, 2.0]


def test_camera_gone_for_good_gives_one_clear_error():
    plan = {"frames": grey_frames([20]), "fail_after": 2, "down_opens": 10 ** 6}
    cam = sources.CameraSource("0", capture_factory=fake_capture_factory(plan),
                               sleep=lambda s: None, api=0, max_reconnects=3)
    cam.read()
    cam.read()
    with pytest.raises(AppError, match="disconnected and did not come back after 3 tries"):
        cam.read()


def test_camera_garbage_frames_are_skipped_and_counted():
    plan = {"frames": grey_frames([20]), "garbage_at": {2, 3, 5}}
    cam = sources.CameraSource("0", capture_factory=fake_capture_factory(plan),
                               sleep=lambda s: None, api=0)
    got = [cam.read() for _ in range(5)]
    assert all(f is not None and f.image.shape == (480, 640, 3) for f in got)
    assert cam.bad_frames == 3


def test_pipeline_survives_unplug_midrun(capsys):
    """Live pipeline on a fake camera that is unplugged after 6 frames and comes back."""
    plan = {"frames": grey_frames([30, 30, 30, 200]), "fail_after": 6, "down_opens": 1}
    cam = sources.CameraSource("0", capture_factory=fake_capture_factory(plan),
                               sleep=lambda s: None, api=0)
    proc = FrameProcessor(MeanBackend(), Roi("auto"), stable=2, gap=3)
    out = io.StringIO()
    summary = LivePipeline(proc, cam, sinks=[], max_frames=20, out=out).run()
    assert summary["frames"] == 20
    assert summary["reconnects"] == 1
    assert summary["stopped_by"] == "--max-frames"
    assert "camera 0 lost" in capsys.readouterr().err


def test_grabber_newest_frame_wins_for_cameras():
    """A live source faster than the consumer: older frames are dropped, never queued. The
    source delivers a burst of 50 frames while the consumer waits, then blocks: the consumer
    gets only the 50th, and 49 count as dropped (no sleeps decide the outcome)."""
    import threading

    burst_stored, release = threading.Event(), threading.Event()

    class Burst(sources.Source):
        kind, live = "camera", True

        def __init__(self):
            super().__init__("burst")
            self.n = 0

        def read(self):
            self.n += 1
            if self.n == 51:                   # asked for more: frame 50 has been stored
                burst_stored.set()
                release.wait(10)
                return None
            return self._deliver(np.full((4, 4), self.n, np.uint8), 0.0)

    g = FrameGrabber(Burst(), latest_only=True).start()
    assert burst_stored.wait(10)
    f = g.get(5.0)
    assert int(f.image[0, 0]) == 50 and g.dropped == 49
    release.set()
    assert g.get(5.0) is None                  # then the end of the source, nothing queued
    g.stop()


# ---------------------------------------------------------------------------- files
def test_image_folder_skips_unreadable(tmp_path):
    import cv2
    img = np.full((28, 28), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    (tmp_path / "b.png").write_bytes(b"not a png")
    cv2.imwrite(str(tmp_path / "c.png"), img)
    src = sources.open_source(str(tmp_path), hold=2)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert len(frames) == 4 and src.bad_frames == 1


def test_empty_folder_and_missing_source(tmp_path):
    with pytest.raises(AppError, match="has no images"):
        sources.open_source(str(tmp_path))
    with pytest.raises(AppError, match="source .* not found"):
        sources.open_source(str(tmp_path / "nope.mp4"))


def test_undecodable_video(tmp_path):
    p = tmp_path / "broken.mp4"
    p.write_bytes(b"\x00" * 1000)
    with pytest.raises(AppError, match="could not be opened"):
        sources.open_source(str(p))


def test_video_file_reads_every_frame(tmp_path):
    import cv2
    p = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"FFV1"), 30, (64, 48))
    for i in range(7):
        w.write(np.full((48, 64, 3), i * 30, np.uint8))
    w.release()
    src = sources.open_source(str(p))
    vals = []
    while (f := src.read()) is not None:
        vals.append(int(f.image[0, 0, 0]))
    assert vals == [i * 30 for i in range(7)]


def test_csv_source_truth_letters():
    src = sources.open_source(str(TEST_CSV), limit=5, hold=3)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert len(frames) == 15
    from model.data import LETTERS, load_csv
    ds = load_csv(TEST_CSV)                      # the trainer's reading of the same file
    want = [LETTERS[c] for c in ds.y[:5]]
    assert [frames[i * 3].truth for i in range(5)] == want
    assert np.array_equal(frames[0].image, ds.x[0])
    assert kaggle_letter(10) == "K"                     # raw Kaggle label 10 is K, not L


# ---------------------------------------------------------------------------- ROI
def test_roi_specs():
    assert Roi("full").resolve(480, 640) == (0, 0, 640, 480)
    x, y, w, h = Roi("auto").resolve(480, 640)
    assert w == h == 280 and (x, y) == (180, 100)         # 60% of 480 = 288 -> 280 (10 x 28)
    assert Roi("auto").resolve(28, 28) == (0, 0, 28, 28)   # small images: whole frame
    assert Roi("center:0.5").resolve(480, 640) == (200, 120, 240, 240)
    assert Roi("10,20,100,50").resolve(480, 640) == (10, 20, 100, 50)
    assert Roi("0.5,0.5,0.25,0.25").resolve(400, 800) == (400, 200, 200, 100)
    assert Roi("600,400,100,100").resolve(480, 640) == (600, 400, 40, 80)   # clipped
    for bad in ("1,2,3", "a,b,c,d", "center:2", "-5,0,10,10"):
        with pytest.raises(AppError):
            Roi(bad)
    with pytest.raises(AppError, match="outside the 640x480 frame"):
        Roi("700,0,50,50").resolve(480, 640)


def test_crop_matches_training_recipe():
    """Enlarge a test image x10 into the ROI of a 640x480 frame; the crop must give back
    exactly the CSV's float input (grey, INTER_AREA to 28x28, /255)."""
    from dpu_app.contract import crop_to_input
    from model.data import load_csv
    ds = load_csv(TEST_CSV)
    img = ds.x[3]
    frame = place_in_frame(img)                              # ROI (180, 100, 280, 280)
    x = crop_to_input(frame, Roi("auto").resolve(480, 640), Preprocess())
    assert x.dtype == np.float32 and x.shape == (28, 28, 1)
    assert np.array_equal(x, ds.float()[3])
