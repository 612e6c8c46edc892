"""Frame sources: camera (index or /dev/videoN), video file, folder of images, Kaggle test CSV.

    src = open_source("0" | "/dev/video0" | "clip.mp4" | "images/" | "sign_mnist_test.csv.gz")
    frame = src.read()         # Frame, or None at the end of a file source; never raises on a
                               # bad frame (skipped and counted in src.bad_frames)

Cameras: opened with cv2.CAP_V4L2 on Linux. Absent -> AppError listing the /dev/video* found.
Unplugged mid-run -> the source releases it and reopens with backoff (0.5 s doubling to 5 s),
counting src.reconnects; it gives up only after `max_reconnects` tries when that is > 0.
"""
from __future__ import annotations

import glob
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .datasets import IMAGE_EXTS, kaggle_letter, load_kaggle_csv
from .errors import AppError, warn



@dataclass
class Frame:
    image: np.ndarray            # BGR (H, W, 3) or grey (H, W) uint8
    index: int                   # frames delivered by the source so far (0-based)
    t: float = field(default_factory=time.perf_counter)   # when it was read
    read_ms: float = 0.0         # time spent inside the source's read
    truth: str | None = None     # the true letter, when the source knows it (CSV)
    name: str = ""               # file name / position, for messages


def _valid_image(img) -> bool:
    return (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim in (2, 3)
            and img.shape[0] > 0 and img.shape[1] > 0 and (img.ndim == 2 or img.shape[2] in (1, 3, 4)))


class Source:
    kind = "?"
    live = False                 # True: a camera, frames come in real time (newest wins)

    def __init__(self, spec: str):
        self.spec = spec
        self.frames = 0
        self.bad_frames = 0
        self.reconnects = 0
        self.fps = 0.0           # nominal rate when known
        self._stop = threading.Event()

    def read(self) -> Frame | None:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask a blocking read / reconnect loop to give up soon (from another thread)."""
        self._stop.set()

    def close(self) -> None:
        pass

    def _deliver(self, img, t0: float, **kw) -> Frame:
        f = Frame(image=img, index=self.frames, t=time.perf_counter(),
                  read_ms=(time.perf_counter() - t0) * 1e3, **kw)
        self.frames += 1
        return f

    def __repr__(self) -> str:
        return f"{self.kind} {self.spec}"


# ---------------------------------------------------------------------------- camera
def list_video_devices() -> list[str]:
    return sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))


def _devices_text() -> str:
    devs = list_video_devices()
    if not sys.platform.startswith("linux"):
        return "give the camera index OpenCV uses on this system"
    if not devs:
        return ("no /dev/video* devices found: plug in a USB (UVC) webcam and check "
                "'v4l2-ctl --list-devices', or use a video file as --source")
    return (f"found {', '.join(devs)}: pass one of them with --source (some cameras expose "
            f"several nodes; the first is usually the picture)")


class CameraSource(Source):
    kind = "camera"
    live = True

    def __init__(self, spec: str, width: int = 0, height: int = 0, fps: float = 0,
                 capture_factory=None, api: int | None = None, max_reconnects: int = 0,
                 backoff=(0.5, 5.0), fail_reads: int = 3, sleep=time.sleep):
        super().__init__(spec)
        import cv2
        self._cv2 = cv2
        self.device = int(spec) if spec.isdigit() else spec
        self._factory = capture_factory or cv2.VideoCapture
        if api is None:
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        self._api = api
        self._want = (width, height, fps)
        self.max_reconnects = max_reconnects
        self._backoff = backoff
        self._fail_reads = fail_reads
        self._sleep = sleep
        self._cap = None
        if isinstance(self.device, str) and sys.platform.startswith("linux") \
                and not os.path.exists(self.device):
            raise AppError(f"camera {self.device} does not exist: {_devices_text()}")
        if not self._open():
            raise AppError(f"camera {spec} could not be opened: {_devices_text()}")

    def _open(self) -> bool:
        cv2 = self._cv2
        try:
            cap = self._factory(self.device, self._api)
        except Exception:                                        # noqa: BLE001
            return False
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return False
        w, h, fps = self._want
        if w:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
        if h:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        try:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)                  # less lag where supported
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        except Exception:                                        # noqa: BLE001
            pass
        self._cap = cap
        return True

    def _reconnect(self) -> bool:
        """Release and reopen with backoff. False when stopped or out of tries."""
        if self._cap is not None:
            try:
                self._cap.release()
            except Exception:                                    # noqa: BLE001
                pass
            self._cap = None
        delay, tries = self._backoff[0], 0
        while not self._stop.is_set():
            tries += 1
            if self.max_reconnects and tries > self.max_reconnects:
                raise AppError(f"camera {self.spec} was disconnected and did not come back after "
                               f"{self.max_reconnects} tries: check the USB cable, then restart "
                               f"({_devices_text()})")
            warn(f"camera {self.spec} lost; reconnecting in {delay:.1f}s (try {tries})")
            self._sleep(delay)
            if self._stop.is_set():
                return False
            if self._open():
                ok, img = self._cap.read()
                if ok and _valid_image(img):
                    self.reconnects += 1
                    warn(f"camera {self.spec} reconnected after {tries} tries")
                    self._pending = img
                    return True
                self._cap.release()
                self._cap = None
            delay = min(delay * 2, self._backoff[1])
        return False

    _pending = None

    def read(self) -> Frame | None:
        t0 = time.perf_counter()
        fails = garbage = 0
        while not self._stop.is_set():
            if self._pending is not None:
                img, self._pending = self._pending, None
                return self._deliver(img, t0, name=f"frame {self.frames}")
            if self._cap is None:
                if not self._reconnect():
                    return None
                continue
            try:
                ok, img = self._cap.read()
            except Exception:                                    # noqa: BLE001
                ok, img = False, None
            if ok and _valid_image(img):
                return self._deliver(img, t0, name=f"frame {self.frames}")
            if ok:                                               # a frame, but garbage
                self.bad_frames += 1
                garbage += 1
                if garbage < 30:
                    continue
                garbage = 0                                      # 30 in a row: reopen it
                if not self._reconnect():
                    return None
                continue
            fails += 1
            if fails >= self._fail_reads:
                if not self._reconnect():
                    return None
                fails = 0
            else:
                self._sleep(0.01)
        return None

    def close(self) -> None:
        self.stop()
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# ---------------------------------------------------------------------------- video file
class VideoFileSource(Source):
    kind = "video"

    def __init__(self, path: str, loop: bool = False, capture_factory=None):
        super().__init__(path)
        import cv2
        self._cv2 = cv2
        self.loop = loop
        factory = capture_factory or cv2.VideoCapture
        self._cap = factory(path)
        if not self._cap.isOpened():
            raise AppError(f"video {path} could not be opened: not a video OpenCV can decode "
                           f"(re-encode it, e.g. 'ffmpeg -i {os.path.basename(path)} out.mp4')")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0)
        self.count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def read(self) -> Frame | None:
        cv2 = self._cv2
        t0 = time.perf_counter()
        fails, rewound = 0, False
        while not self._stop.is_set():
            ok, img = self._cap.read()
            if ok and _valid_image(img):
                return self._deliver(img, t0, name=f"frame {self.frames}")
            pos = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES) or 0)
            if (ok or (self.count and pos < self.count - 1)) and fails < 25:
                self.bad_frames += 1                             # undecodable frame mid-file
                fails += 1
                continue
            if self.loop and self.frames and not rewound:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                rewound, fails = True, 0
                continue
            return None
        return None

    def close(self) -> None:
        self._cap.release()


# ---------------------------------------------------------------------------- images
class ImageFilesSource(Source):
    kind = "images"

    def __init__(self, spec: str, files: list[str], hold: int = 1, loop: bool = False):
        super().__init__(spec)
        import cv2
        self._cv2 = cv2
        self.files = files
        self.hold = max(1, hold)
        self.loop = loop
        self._i = 0
        self._img = None
        self._left = 0

    def read(self) -> Frame | None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            if self._left > 0 and self._img is not None:
                self._left -= 1
                return self._deliver(self._img, t0, name=os.path.basename(self.files[self._i - 1]))
            if self._i >= len(self.files):
                if not self.loop or self.bad_frames >= len(self.files):
                    return None
                self._i = 0
            path = self.files[self._i]
            self._i += 1
            img = self._cv2.imread(path, self._cv2.IMREAD_UNCHANGED)
            if img is not None and img.dtype == np.uint16:
                img = (img >> 8).astype(np.uint8)
            if not _valid_image(img):
                self.bad_frames += 1
                warn(f"skipping {path}: not an image OpenCV can read")
                continue
            if img.ndim == 3 and img.shape[2] == 4:
                img = self._cv2.cvtColor(img, self._cv2.COLOR_BGRA2BGR)
            self._img, self._left = img, self.hold
        return None


def image_folder(path: str, hold: int = 1, loop: bool = False) -> ImageFilesSource:
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise AppError(f"folder {path} has no images ({' '.join(IMAGE_EXTS)}): give a folder of "
                       f"pictures, a video, a camera or a Kaggle CSV as --source")
    return ImageFilesSource(path, files, hold, loop)


# ---------------------------------------------------------------------------- Kaggle CSV
class CsvSource(Source):
    kind = "csv"

    def __init__(self, path: str, limit: int = 0, hold: int = 1, loop: bool = False):
        super().__init__(path)
        data = load_kaggle_csv(path, limit)
        self.pixels, self.raw = data.pixels, data.raw
        self.hold = max(1, hold)
        self.loop = loop
        self._i = 0

    def read(self) -> Frame | None:
        t0 = time.perf_counter()
        i = self._i // self.hold
        if i >= len(self.pixels):
            if not self.loop:
                return None
            self._i, i = 0, 0
        self._i += 1
        return self._deliver(self.pixels[i], t0, truth=kaggle_letter(self.raw[i]),
                             name=f"row {i + 2}")


# ---------------------------------------------------------------------------- dispatch
def open_source(spec: str, *, width: int = 0, height: int = 0, fps: float = 0,
                hold: int = 1, loop: bool = False, limit: int = 0,
                max_reconnects: int = 0, capture_factory=None) -> Source:
    spec = str(spec).strip()
    if not spec:
        raise AppError("--source is empty: give a camera index (0), /dev/videoN, a video file, "
                       "a folder of images or a Kaggle CSV")
    if spec.isdigit() or spec.startswith("/dev/"):
        return CameraSource(spec, width, height, fps, capture_factory=capture_factory,
                            max_reconnects=max_reconnects)
    if os.path.isdir(spec):
        return image_folder(spec, hold, loop)
    if not os.path.exists(spec):
        raise AppError(f"source {spec} not found: give a camera index (0), /dev/videoN, a video "
                       f"file, a folder of images or a Kaggle CSV")
    low = spec.lower()
    if low.endswith((".csv", ".csv.gz")):
        return CsvSource(spec, limit, hold, loop)
    if low.endswith(IMAGE_EXTS):
        return ImageFilesSource(spec, [spec], hold, loop)
    return VideoFileSource(spec, loop, capture_factory=capture_factory)
