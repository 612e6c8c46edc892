"""The capture thread: reads a source so the processing loop never waits on the camera."""
from __future__ import annotations

import threading
import time

from .sources import Frame, Source


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
