"""The live pipeline: capture thread -> ROI crop -> infer -> smoothing -> spelling -> overlay -> out.

    capture   FrameGrabber thread reads the source; for a camera the newest frame wins (older
              ones are dropped and counted), for files every frame is processed in order.
    process   FrameProcessor: crop the ROI like the training data (grey, INTER_AREA to 28x28,
              /255), infer, EMA of the probabilities, spelling, overlay; times every stage.
    out       sinks: local cv2 window, web viewer (dpu_app/web.py), --record file; stdout lines
              `letter X 0.97` / `text "..."` whenever they change.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import time

import numpy as np

import overlay
from common import AppError, Preprocess, crop_to_input, info, warn
from sources import Frame, Source
from spelling import Smoother, Speller

STAGES = ("capture", "preprocess", "infer", "overlay")


# ---------------------------------------------------------------------------- ROI
class Roi:
    """ROI spec: 'auto' (centred square, 60% of the short side; whole frame for small images),
    'full', 'center:F' (centred square, fraction F of the short side), 'x,y,w,h' in pixels, or
    'x,y,w,h' as fractions of the frame (all values <= 1 with a decimal point)."""

    def __init__(self, spec: str = "auto", multiple: int = 28):
        self.spec = spec.strip().lower()
        self.multiple = max(1, multiple)
        self._cache: dict = {}
        self._parsed = self._parse(self.spec)

    @staticmethod
    def _parse(spec: str):
        if spec in ("auto", "full"):
            return (spec,)
        if spec.startswith("center"):
            try:
                f = float(spec.split(":", 1)[1]) if ":" in spec else 0.6
            except ValueError:
                f = -1
            if not 0 < f <= 1:
                raise AppError(f"--roi {spec}: the centre fraction must be in (0, 1], e.g. center:0.6")
            return ("center", f)
        parts = spec.split(",")
        if len(parts) != 4:
            raise AppError(f"--roi {spec}: give auto, full, center:0.6, or x,y,w,h")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise AppError(f"--roi {spec}: x,y,w,h must be numbers") from None
        frac = all("." in p for p in parts) and all(0 <= v <= 1 for v in vals)
        if frac:
            return ("frac", *vals)
        if any(v != int(v) or v < 0 for v in vals):
            raise AppError(f"--roi {spec}: pixel x,y,w,h must be whole numbers >= 0 (or all "
                           f"fractions like 0.25,0.2,0.5,0.6)")
        return ("px", *[int(v) for v in vals])

    def resolve(self, h: int, w: int) -> tuple[int, int, int, int]:
        key = (h, w)
        r = self._cache.get(key)
        if r is not None:
            return r
        p = self._parsed
        if p[0] == "full" or (p[0] == "auto" and min(h, w) < 160):
            r = (0, 0, w, h)
        elif p[0] in ("auto", "center"):
            f = 0.6 if p[0] == "auto" else p[1]
            side = max(1, int(round(min(h, w) * f)))
            if p[0] == "auto" and side >= 2 * self.multiple:
                # a whole multiple of the model input: INTER_AREA then averages exact pixel
                # blocks, and takes OpenCV's fast integer-ratio path (0.02 ms instead of 0.2)
                side -= side % self.multiple
            r = ((w - side) // 2, (h - side) // 2, side, side)
        elif p[0] == "frac":
            _, fx, fy, fw, fh = p
            r = (int(round(fx * w)), int(round(fy * h)), int(round(fw * w)), int(round(fh * h)))
        else:
            r = p[1:]
        x, y, rw, rh = r
        x2, y2 = min(w, x + rw), min(h, y + rh)
        if x >= w or y >= h or x2 - x < 2 or y2 - y < 2:
            raise AppError(f"--roi {self.spec} lies outside the {w}x{h} frame: pick a box inside it")
        r = (x, y, x2 - x, y2 - y)
        self._cache[key] = r
        return r


# ---------------------------------------------------------------------------- processing
class StageTimer:
    """Per-stage milliseconds: last value, exponential average (display) and totals (summary)."""

    def __init__(self, alpha: float = 0.1):
        self.alpha = alpha
        self.avg: dict[str, float] = {}
        self.total: dict[str, float] = collections.defaultdict(float)
        self.count: dict[str, int] = collections.defaultdict(int)

    def add(self, stage: str, ms: float) -> None:
        a = self.avg.get(stage)
        self.avg[stage] = ms if a is None else a + self.alpha * (ms - a)
        self.total[stage] += ms
        self.count[stage] += 1

    def means(self) -> dict[str, float]:
        return {k: round(self.total[k] / self.count[k], 4) for k in self.total if self.count[k]}


class FpsMeter:
    def __init__(self, window: int = 30):
        self.times: collections.deque = collections.deque(maxlen=window)

    def tick(self, t: float) -> float:
        self.times.append(t)
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(1e-9, self.times[-1] - self.times[0])


class FrameProcessor:
    """One frame through preprocess, infer, smoothing, spelling and overlay, timed."""

    def __init__(self, backend, roi: Roi, threshold: float = 0.6, smooth: float = 0.5,
                 stable: int = 8, gap: int = 15, draw: bool = True, flip: bool = False):
        self.backend = backend
        self.labels = backend.labels
        self.pp: Preprocess = backend.preprocess
        self.roi = roi
        self.threshold = threshold
        self.smoother = Smoother(smooth)
        self.speller = Speller(stable=stable, gap=gap)
        self.timer = StageTimer()
        self.fps = FpsMeter()
        self.draw = draw
        self.flip = flip
        self._x = np.empty((1, *backend.input_shape), np.float32)
        self.frames = 0
        self.dropped = 0

    def process(self, image: np.ndarray, capture_ms: float = 0.0) -> tuple[dict, np.ndarray | None]:
        import cv2
        t0 = time.perf_counter()
        if self.flip:
            image = cv2.flip(image, 1)
        roi = self.roi.resolve(*image.shape[:2])
        crop_to_input(image, roi, self.pp, out=self._x[0])
        t1 = time.perf_counter()
        probs = self.backend.infer(self._x)[0]
        t2 = time.perf_counter()
        sm = self.smoother.update(probs)
        order = np.argsort(sm)[::-1][:3]
        top = int(order[0])
        conf = float(sm[top])
        letter = self.labels[top] if conf >= self.threshold else None
        added = self.speller.update(letter)
        self.frames += 1
        fps = self.fps.tick(t2)
        self.timer.add("capture", capture_ms)
        self.timer.add("preprocess", (t1 - t0) * 1e3)
        self.timer.add("infer", (t2 - t1) * 1e3)
        state = {
            "letter": letter,
            "confidence": round(conf, 4),
            "top3": [[self.labels[int(i)], round(float(sm[int(i)]), 4)] for i in order],
            "text": self.speller.text,
            "fps": round(fps, 2),
            "ms": {k: round(v, 3) for k, v in self.timer.avg.items()},
            "frames": self.frames,
            "dropped": self.dropped,
            "raw_letter": self.labels[int(np.argmax(probs))],
            "added": added,
        }
        canvas = None
        if self.draw:
            canvas = overlay.draw(image, roi, state, self._x[0], self.speller.progress)
            t3 = time.perf_counter()
            self.timer.add("overlay", (t3 - t2) * 1e3)
            state["ms"]["overlay"] = round(self.timer.avg["overlay"], 3)
        return state, canvas


# ---------------------------------------------------------------------------- capture thread
class FrameGrabber:
    """Reads the source in its own thread. latest_only: keep only the newest frame (camera);
    otherwise hand over every frame in order (files), so results do not depend on timing."""

    def __init__(self, source: Source, latest_only: bool):
        self.source = source
        self.latest_only = latest_only
        self.dropped = 0
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._eof = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> "FrameGrabber":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop:
                f = self.source.read()
                with self._cond:
                    if f is None:
                        self._eof = True
                        self._cond.notify_all()
                        return
                    if self.latest_only:
                        if self._frame is not None:
                            self.dropped += 1
                    else:
                        while self._frame is not None and not self._stop:
                            self._cond.wait(0.1)
                    self._frame = f
                    self._cond.notify_all()
        except BaseException as e:                               # noqa: BLE001  (re-raised)
            with self._cond:
                self.error = e
                self._eof = True
                self._cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        """The next frame; None at the end of the source. Raises TimeoutError, or the
        capture thread's error."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._frame is None and not self._eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self._cond.wait(min(left, 0.25))
            if self._frame is None:
                if self.error is not None:
                    raise self.error
                return None
            f, self._frame = self._frame, None
            self._cond.notify_all()
            return f

    def stop(self) -> None:
        self._stop = True
        self.source.stop()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)


# ---------------------------------------------------------------------------- outputs
def gui_available() -> bool:
    """A local window is possible: a display is set and this OpenCV has a GUI backend
    (opencv-python-headless has none)."""
    import cv2
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return False
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return "NONE" not in line.upper()
    return True


class WindowSink:
    def __init__(self, title: str = "sign language (q quits, c clears)"):
        import cv2
        self._cv2 = cv2
        self.title = title
        self._shown = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error as e:
            raise AppError(f"could not open a window ({str(e).strip().splitlines()[-1][:120]}): "
                           f"use --web or --no-display") from None

    def show(self, canvas, state, proc: FrameProcessor) -> bool:
        cv2 = self._cv2
        cv2.imshow(self.title, canvas)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        if key == ord("c"):
            proc.speller.clear()
        elif key in (8, 127):
            proc.speller.backspace()
        elif key == ord(" "):
            proc.speller.space()
        try:                                 # closed with the mouse: stop (once it was shown:
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1  # some
        except cv2.error:                    # backends report 0 before the first paint)
            visible = False
        if visible:
            self._shown = True
        elif self._shown:
            return False
        return True

    def close(self) -> None:
        try:
            self._cv2.destroyWindow(self.title)
        except Exception:                                        # noqa: BLE001
            pass


class ViewerMissing(AppError):
    """dpu_app/web.py cannot be imported."""


class WebSink:
    """Hands each annotated frame (JPEG) and the state to dpu_app/web.py's WebViewer."""

    def __init__(self, host: str, port: int, quality: int = 80, backend_label: str = ""):
        try:
            from web import WebViewer
        except ImportError as e:
            raise ViewerMissing(f"the web viewer (dpu_app/web.py) is not available ({e}): use "
                                f"a local display, --record FILE or --no-display") from None
        import cv2
        self._cv2 = cv2
        self.quality = quality
        self.backend_label = backend_label
        try:
            self.viewer = WebViewer(host=host, port=port)
            self.viewer.start()
        except AppError:
            raise
        except OSError as e:
            raise AppError(f"web viewer could not listen on {host}:{port} ({e.strerror or e}): "
                           f"pick another --port or stop the program using it") from None
        except Exception as e:                                   # noqa: BLE001
            # web.ViewerError: one-line message by contract; its base class depends on which
            # copy of common.py web.py found, so do not rely on it being our AppError
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise AppError(msg) from None
        where = self.viewer.url
        if host in ("0.0.0.0", "", "::"):
            where += f" (from another computer: http://<this machine's IP>:{self.viewer.port}/)"
        info(f"web viewer: {where}")

    def show(self, canvas, state, proc) -> bool:
        ok, jpg = self._cv2.imencode(".jpg", canvas, [self._cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            pub = {k: state[k] for k in ("letter", "confidence", "top3", "text", "fps",
                                         "frames", "dropped")}
            pub["ms"] = {k: state["ms"][k] for k in STAGES if k in state["ms"]}
            if self.backend_label:
                pub["backend"] = self.backend_label
            self.viewer.publish(jpg.tobytes(), pub)
        return True

    def close(self) -> None:
        try:
            self.viewer.stop()
        except Exception:                                        # noqa: BLE001
            pass


class Recorder:
    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, path: str, fps: float):
        ext = os.path.splitext(path)[1].lower()
        if ext not in self.FOURCC:
            raise AppError(f"--record {path}: use a .mp4, .avi, .mkv or .mov file name")
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise AppError(f"--record {path}: folder {d} does not exist")
        self.path = path
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self.fourcc = self.FOURCC[ext]
        self._w = None
        self.size = None
        self.frames = 0

    def show(self, canvas, state, proc) -> bool:
        import cv2
        if self._w is None:
            self.size = (canvas.shape[1], canvas.shape[0])
            self._w = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                                      self.size)
            if not self._w.isOpened():
                raise AppError(f"--record {self.path}: OpenCV cannot write {self.fourcc} video "
                               f"here; try a .avi name (MJPG)")
        if (canvas.shape[1], canvas.shape[0]) != self.size:
            canvas = cv2.resize(canvas, self.size, interpolation=cv2.INTER_AREA)
        self._w.write(canvas)
        self.frames += 1
        return True

    def close(self) -> None:
        if self._w is not None:
            self._w.release()


# ---------------------------------------------------------------------------- the loop
class LivePipeline:
    def __init__(self, processor: FrameProcessor, source: Source, sinks: list,
                 max_frames: int = 0, first_frame_timeout: float = 10.0,
                 stall_warn: float = 5.0, out=sys.stdout, on_frame=None, print_text=True):
        self.proc = processor
        self.source = source
        self.sinks = sinks
        self.max_frames = max_frames
        self.first_frame_timeout = first_frame_timeout
        self.stall_warn = stall_warn
        self.out = out
        self.on_frame = on_frame
        self.print_text = print_text
        self.grabber = FrameGrabber(source, latest_only=source.live)

    def _say(self, line: str) -> None:
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def run(self) -> dict:
        proc = self.proc
        need_canvas = bool(self.sinks)
        proc.draw = need_canvas
        self.grabber.start()
        last_letter, last_text = object(), ""
        t_start = time.perf_counter()
        first = True
        stopped_by = "end of source"
        try:
            while True:
                if self.max_frames and proc.frames >= self.max_frames:
                    stopped_by = "--max-frames"
                    break
                tw = time.perf_counter()
                try:
                    frame = self.grabber.get(self.first_frame_timeout if first else self.stall_warn)
                except TimeoutError:
                    if first:
                        raise AppError(f"{self.source} opened but delivered no frame in "
                                       f"{self.first_frame_timeout:.0f}s: the camera may be "
                                       f"busy or unsupported; try another /dev/video node, "
                                       f"unplug/replug it, or check 'v4l2-ctl --all'") from None
                    warn(f"no frame from {self.source} for {self.stall_warn:.0f}s; still waiting")
                    continue
                if frame is None:
                    break
                first = False
                capture_ms = (time.perf_counter() - tw) * 1e3
                proc.dropped = self.grabber.dropped
                state, canvas = proc.process(frame.image, capture_ms)
                state["truth"] = frame.truth
                state["source_frame"] = frame.index
                if self.print_text:
                    if state["letter"] != last_letter:
                        last_letter = state["letter"]
                        if last_letter is not None:
                            self._say(f"letter {last_letter} {state['confidence']:.2f}")
                        else:
                            self._say("letter -")
                    if state["text"] != last_text:
                        last_text = state["text"]
                        self._say(f'text "{last_text}"')
                keep = True
                if canvas is not None:
                    t = time.perf_counter()
                    for s in self.sinks:
                        keep = s.show(canvas, state, proc) and keep
                    proc.timer.add("output", (time.perf_counter() - t) * 1e3)
                if self.on_frame is not None:
                    self.on_frame(state, canvas)
                if not keep:
                    stopped_by = "viewer closed"
                    break
        except KeyboardInterrupt:
            stopped_by = "interrupted"
        finally:
            self.grabber.stop()
            for s in self.sinks:
                s.close()
            self.source.close()
        wall = time.perf_counter() - t_start
        return {
            "frames": proc.frames,
            "dropped": self.grabber.dropped,
            "bad_frames": self.source.bad_frames,
            "reconnects": self.source.reconnects,
            "text": proc.speller.text,
            "seconds": round(wall, 3),
            "fps": round(proc.frames / wall, 2) if wall > 0 else 0.0,
            "ms": proc.timer.means(),
            "stopped_by": stopped_by,
        }
