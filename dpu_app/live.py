"""The live loop: capture thread -> FrameProcessor -> sinks, stdout lines, run summary."""
from __future__ import annotations

import sys
import time

from .capture import FrameGrabber
from .errors import AppError, warn
from .processing import FrameProcessor
from .sources import Source


# ---------------------------------------------------------------------------- the loop
class LivePipeline:
    def __init__(self, processor: FrameProcessor, source: Source, sinks: list,
                 max_frames: int = 0, first_frame_timeout: float = 10.0,
                 stall_warn: float = 5.0, out=sys.stdout, on_frame=None, print_text=True,
                 pace_fps: float = 0.0):
        self.proc = processor
        self.pace_fps = pace_fps        # > 0: show a file's frames at this rate, not at once
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
        proc.panel = any(getattr(s, "wants_panel", True) for s in self.sinks)
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
                if first:
                    t_play = time.perf_counter()
                first = False
                capture_ms = (time.perf_counter() - tw) * 1e3
                if self.pace_fps > 0:             # the clip's own speed, as a camera would
                    wait = t_play + proc.frames / self.pace_fps - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
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
