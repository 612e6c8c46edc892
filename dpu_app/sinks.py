"""Where annotated frames go: a local window, the web viewer, a recorded video file."""
from __future__ import annotations

import os
import sys

from .errors import AppError, info
from .processing import STAGES, FrameProcessor


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
    """Hands each frame (JPEG, guide box only) and the state to dpu_app/web.py's WebViewer,
    and applies the page's buttons (clear, space, backspace) to the spelled text."""

    wants_panel = False          # the page renders letter, top-3 and text from the state

    def __init__(self, host: str, port: int, quality: int = 80, backend_label: str = ""):
        try:
            from .web import WebViewer
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
        for cmd in self.viewer.take_commands():
            {"clear": proc.speller.clear, "space": proc.speller.space,
             "backspace": proc.speller.backspace}[cmd]()
            state["text"] = proc.speller.text
        ok, jpg = self._cv2.imencode(".jpg", canvas, [self._cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            pub = {k: state[k] for k in ("letter", "confidence", "top3", "text", "fps",
                                         "frames", "dropped", "threshold")}
            pub["ms"] = {k: state["ms"][k] for k in (*STAGES, "network", "classifier")
                         if k in state["ms"]}
            if state.get("hand"):               # the hand pipeline: the page's hand row
                pub["hand"] = {k: state["hand"][k] for k in ("presence", "tracked", "passes")}
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
