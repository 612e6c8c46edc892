"""Headless web viewer: the live camera view and the recognised letter, in a browser.

Runs on the board with nothing but python3's standard library (no numpy or cv2 needed
here: the app hands over JPEG bytes it already encoded). The app calls:

    viewer = WebViewer(host="0.0.0.0", port=8080).start()   # ViewerError if the port is taken
    viewer.publish(jpeg_bytes, state)                          # every processed frame
    print(viewer.url)
    viewer.stop()

`state` is a dict:
    {"letter": "A" or None, "confidence": 0.93, "top3": [["A", 0.93], ["S", 0.04], ...],
     "text": "HELLO", "fps": 27.5,
     "ms": {"capture": 3.1, "preprocess": 0.4, "infer": 1.2, "overlay": 0.9},
     "frames": 1234, "dropped": 5}
Optional: "backend" (e.g. "DPU ZCU104" or "CPU"), shown in the page header.
Extra keys are passed through to /state.json unchanged (values must be JSON-able; numpy
scalars are converted, NaN/inf become null).

Routes (anything else is 404):
    GET /             a small page that shows the stream and polls /state.json with fetch()
    GET /stream.mjpg  multipart/x-mixed-replace MJPEG; every client gets the newest frame, a
                      slow client skips frames instead of queueing them
    GET /state.json   the latest state plus "seq" (frames published so far), "viewers" (open
                      streams) and "server_id" (changes when the viewer restarts)
    POST /clear, /space, /backspace
                      edit the spelled text (the page's buttons); the app applies them with
                      the next frame (`viewer.take_commands()`)

The stream carries the picture and the guide box only; the letter, confidence, top-3 and
text are drawn by the page from /state.json, so what the page shows is one state.

The default bind is 127.0.0.1 (this machine only); the board app passes --host 0.0.0.0 so a
laptop on the same network can open http://<board-ip>:<port>/.
"""
from __future__ import annotations

import errno
import json
import math
import os
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .errors import AppError

__all__ = ["WebViewer", "ViewerError", "PAGE"]

BOUNDARY = "frame"
COMMANDS = ("clear", "space", "backspace")


class ViewerError(AppError):
    """An expected fault starting the viewer (port in use, bad host): one clear line."""
    exit_code = 2


def _clean(obj):
    """A JSON-safe deep copy: numpy scalars to Python, tuples to lists, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    item = getattr(obj, "item", None)          # numpy scalar / 0-d array
    if callable(item):
        try:
            return _clean(item())
        except (TypeError, ValueError):
            pass
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return str(obj)


def _as_jpeg(data) -> bytes:
    if hasattr(data, "tobytes") and not isinstance(data, (bytes, bytearray)):
        data = data.tobytes()                  # e.g. the ndarray cv2.imencode returns
    data = bytes(data)
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("WebViewer.publish expects JPEG bytes (cv2.imencode('.jpg', img)[1]), "
                         f"got {len(data)} bytes starting {data[:4]!r}")
    return data


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign language live</title>
<style>
 body{margin:0;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#111;color:#eee}
 header{padding:8px 16px;background:#1d1d1d;display:flex;justify-content:space-between;align-items:center}
 header h1{font-size:18px;margin:0;font-weight:600} #backend{color:#999;font-weight:400}
 #status{font-size:13px;color:#aaa} #status.ok{color:#6c6} #status.bad{color:#e66}
 main{display:flex;flex-wrap:wrap;gap:16px;padding:16px}
 #view{flex:2 1 480px;min-width:320px;align-self:flex-start;position:relative;background:#000;border-radius:6px;overflow:hidden}
 #frame{display:block;width:100%;height:auto;min-height:240px;image-rendering:auto}
 #waiting{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;color:#888;font-size:20px}
 #panel{flex:1 1 260px;min-width:240px;display:flex;flex-direction:column;gap:12px}
 .card{background:#1d1d1d;border-radius:6px;padding:12px}
 #letter{font-size:140px;line-height:1;font-weight:700;text-align:center;color:#ffd54a}
 #conf{text-align:center;font-size:18px;color:#ccc}
 .bar{height:8px;background:#333;border-radius:4px;overflow:hidden}
 .bar>div{height:100%;background:#4a9eff}
 #top3{display:grid;grid-template-columns:max-content 1fr 4em;gap:8px;align-items:center} #top3 .row{display:contents}
 #top3 .l{font-weight:700;font-size:20px} #top3 .p{text-align:right;font-variant-numeric:tabular-nums}
 #text{font-size:28px;letter-spacing:2px;min-height:1.3em;max-height:5.4em;overflow-y:auto;word-break:break-all;font-family:ui-monospace,monospace}
 .buttons{display:flex;gap:8px;margin-top:8px} .buttons button{flex:1;padding:6px;font-size:15px;background:#333;color:#eee;border:1px solid #555;border-radius:4px;cursor:pointer}
 .buttons button:hover{background:#444} #conf.nohand{color:#ffb74a}
 table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums} td{padding:2px 0} td:first-child{white-space:nowrap;padding-right:12px}
 td.v{text-align:right} h2{font-size:13px;color:#999;margin:0 0 6px;font-weight:500;text-transform:uppercase}
</style></head>
<body>
<header><h1>Sign language live <span id="backend"></span></h1><span id="status">connecting&hellip;</span></header>
<main>
 <div id="view"><img id="frame" src="/stream.mjpg" alt="live camera stream">
  <div id="waiting">waiting for frames&hellip;</div></div>
 <div id="panel">
  <div class="card"><div id="letter">&ndash;</div><div id="conf">&nbsp;</div>
   <div class="bar"><div id="confbar" style="width:0%"></div></div></div>
  <div class="card"><h2>Top 3</h2><div id="top3"></div></div>
  <div class="card"><h2>Text</h2><div id="text"></div>
   <div class="buttons"><button id="clear" title="clear the spelled text">Clear</button>
    <button id="space">Space</button><button id="backspace">&#9003; Delete</button></div></div>
  <div class="card"><h2>Speed</h2><table>
   <tr><td>fps</td><td class="v" id="fps">&ndash;</td></tr>
   <tr><td>capture</td><td class="v" id="ms-capture">&ndash;</td></tr>
   <tr id="row-preprocess"><td>preprocess</td><td class="v" id="ms-preprocess">&ndash;</td></tr>
   <tr id="row-infer"><td>inference</td><td class="v" id="ms-infer">&ndash;</td></tr>
   <tr id="row-network" hidden><td>landmark network</td><td class="v" id="ms-network">&ndash;</td></tr>
   <tr id="row-classifier" hidden><td>letter classifier</td><td class="v" id="ms-classifier">&ndash;</td></tr>
   <tr><td>overlay</td><td class="v" id="ms-overlay">&ndash;</td></tr>
   <tr id="row-hand" hidden><td>hand presence</td><td class="v" id="hand">&ndash;</td></tr>
   <tr><td>frames / dropped</td><td class="v" id="frames">&ndash;</td></tr>
  </table></div>
 </div>
</main>
<script>
"use strict";
const POLL_MS = 250;
const $ = (id) => document.getElementById(id);
const num = (v, d) => (typeof v === "number" && isFinite(v)) ? v.toFixed(d) : "\\u2013";
let serverId = null;
function reloadStream() { $("frame").src = "/stream.mjpg?t=" + Date.now(); }
$("frame").addEventListener("error", () => setTimeout(reloadStream, 1000));
function render(s) {
  $("waiting").style.display = (s.seq > 0) ? "none" : "flex";
  const none = (s.letter === null || s.letter === undefined || s.letter === "");
  $("letter").textContent = none ? "\\u2013" : String(s.letter);
  const c = (typeof s.confidence === "number") ? s.confidence : 0;
  const held = !!(s.hand && s.hand.tracked);       // a hand is there, its letter is unsure
  $("conf").textContent = !none ? "confidence " + (100 * c).toFixed(1) + " %"
                        : held ? "hand found \\u2013 letter not sure yet"
                        : "no hand \\u2013 hold your hand in the box";
  $("conf").className = none ? "nohand" : "";
  $("confbar").style.width = Math.max(0, Math.min(100, 100 * c)).toFixed(1) + "%";
  const top = $("top3"); top.textContent = "";
  for (const pair of (Array.isArray(s.top3) ? s.top3 : [])) {
    const row = document.createElement("div"); row.className = "row";
    const l = document.createElement("span"); l.className = "l"; l.textContent = String(pair[0]);
    const bar = document.createElement("div"); bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = Math.max(0, Math.min(100, 100 * (+pair[1] || 0))).toFixed(1) + "%";
    bar.appendChild(fill);
    const p = document.createElement("span"); p.className = "p";
    p.textContent = (100 * (+pair[1] || 0)).toFixed(1) + "%";
    row.append(l, bar, p); top.appendChild(row);
  }
  const tx = $("text"), txt = (typeof s.text === "string") ? s.text : "";
  if (tx.textContent !== txt) { tx.textContent = txt; tx.scrollTop = tx.scrollHeight; }
  $("backend").textContent = (typeof s.backend === "string" && s.backend) ? "\u00b7 " + s.backend : "";
  document.title = "Sign language live" + ((typeof s.backend === "string" && s.backend) ? " - " + s.backend : "");
  $("fps").textContent = num(s.fps, 1);
  const ms = s.ms || {};
  for (const k of ["capture", "preprocess", "infer", "network", "classifier", "overlay"]) {
    const has = typeof ms[k] === "number", row = $("row-" + k);
    if (row) row.hidden = !has && (k !== "preprocess" && k !== "infer" || "network" in ms);
    $("ms-" + k).textContent = has ? num(ms[k], 1) + " ms" : "\\u2013";
  }
  const hd = s.hand, hrow = $("row-hand");
  hrow.hidden = !(hd && typeof hd.presence === "number");
  if (!hrow.hidden)
    $("hand").textContent = num(hd.presence, 2) + (hd.tracked ? " \\u00b7 tracked" : " \\u00b7 searching");
  $("frames").textContent = (s.frames ?? "\\u2013") + " / " + (s.dropped ?? "\\u2013");
  const st = $("status"); st.className = "ok";
  st.textContent = "live \\u00b7 frame " + s.seq + " \\u00b7 " + s.viewers + " viewer(s)";
  if (serverId !== null && s.server_id !== serverId) reloadStream();
  serverId = s.server_id;
}
async function poll() {
  try {
    const r = await fetch("/state.json", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    const st = $("status"); st.className = "bad";
    st.textContent = "connection lost (" + e.message + "), retrying\\u2026";
  }
  setTimeout(poll, POLL_MS);
}
for (const cmd of ["clear", "space", "backspace"])
  $(cmd).addEventListener("click", () => fetch("/" + cmd, {method: "POST"}).then(poll0));
function poll0() { fetch("/state.json", {cache: "no-store"}).then(r => r.json()).then(render)
  .catch(() => {}); }
poll();
</script>
</body></html>
"""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True      # TIME_WAIT only; a live listener still makes bind fail
    request_queue_size = 16


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server_version = "SignViewer/1"
    protocol_version = "HTTP/1.0"
    viewer: "WebViewer"             # set on a per-viewer subclass

    def log_message(self, fmt, *args):  # no per-request noise on the board's console
        pass

    def _send(self, code: int, ctype: str, body: bytes, extra: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        cmd = urlsplit(self.path).path.strip("/")
        if cmd not in COMMANDS:
            self._send(404, "text/plain; charset=utf-8",
                       b"not found: POST /clear, /space or /backspace\n")
            return
        self.viewer._command(cmd)
        self._send(204, "text/plain; charset=utf-8", b"")

    def do_GET(self):
        path = urlsplit(self.path).path
        try:
            if path == "/":
                self._send(200, "text/html; charset=utf-8", PAGE.encode())
            elif path == "/state.json":
                self._send(200, "application/json", self.viewer._state_json())
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(404, "text/plain; charset=utf-8",
                           b"not found: this viewer serves /, /stream.mjpg and /state.json\n")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            pass                    # the client went away: drop it quietly

    def _stream(self):
        v = self.viewer
        if not v._enter_stream():
            self._send(503, "text/plain; charset=utf-8",
                       b"too many open streams; close another viewer tab\n")
            return
        try:
            self.connection.settimeout(v.send_timeout)   # a stalled client is dropped
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store, no-cache, must-revalidate")
            self.send_header("Pragma", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            seq = 0
            while True:
                jpeg, seq = v._next_frame(seq, timeout=0.5)
                if v._stopping.is_set():
                    return
                if jpeg is None:            # idle: notice a client that hung up
                    if self._client_gone():
                        return
                    continue
                self.wfile.write(b"--" + BOUNDARY.encode() + b"\r\n"
                                 b"Content-Type: image/jpeg\r\n"
                                 b"Content-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n"
                                 + jpeg + b"\r\n")
                self.wfile.flush()
        finally:
            v._leave_stream()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True


class WebViewer:
    """MJPEG + JSON web viewer in a daemon thread. See the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, max_streams: int = 8,
                 send_timeout: float = 10.0):
        self.host = host
        self.port = int(port)
        self.max_streams = max_streams
        self.send_timeout = send_timeout
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._state: dict = {"letter": None, "confidence": 0.0, "top3": [], "text": "",
                             "fps": 0.0, "ms": {}, "frames": 0, "dropped": 0}
        self._seq = 0
        self._streams = 0
        self._commands: list[str] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.server_id = f"{os.getpid():x}-{time.time_ns():x}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "WebViewer":
        if self._server is not None:
            return self
        cls = _Server6 if ":" in self.host else _Server
        handler = type("Handler", (_Handler,), {"viewer": self})
        try:
            server = cls((self.host, self.port), handler)
        except socket.gaierror as e:
            raise ViewerError(f"web viewer: cannot resolve host '{self.host}' ({e.strerror}): "
                              f"use 127.0.0.1 (this machine only) or 0.0.0.0 (every "
                              f"interface, to view from another computer)") from None
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ViewerError(
                    f"web viewer: port {self.port} on {self.host} is already in use (another "
                    f"app or viewer still running?): stop it, or pick a free port with "
                    f"--port N") from None
            if e.errno == errno.EACCES:
                raise ViewerError(f"web viewer: no permission to listen on port {self.port} "
                                  f"(ports below 1024 need root): use --port 8080") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise ViewerError(f"web viewer: {self.host} is not an address of this machine: "
                                  f"use 127.0.0.1 or 0.0.0.0") from None
            raise ViewerError(f"web viewer: cannot listen on {self.host}:{self.port}: "
                              f"{e.strerror or e}") from None
        self._server = server
        self.port = server.server_address[1]          # the real port when port=0
        self._stopping.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"web-viewer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        with self._cond:                               # let open streams notice and close
            while self._streams and time.monotonic() < deadline:
                self._cond.wait(0.05)

    def __enter__(self) -> "WebViewer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """Where this machine's browser finds the page (0.0.0.0 binds: use the board's IP
        from elsewhere)."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    # ------------------------------------------------------------------ producer side
    def publish(self, jpeg_bytes, state: dict | None = None) -> int:
        """Make `jpeg_bytes` the newest frame and `state` the newest state; returns the
        frame counter. Never blocks on clients."""
        jpeg = _as_jpeg(jpeg_bytes)
        clean = _clean(dict(state or {}))
        with self._cond:
            self._jpeg = jpeg
            self._state = clean
            self._seq += 1
            self._cond.notify_all()
            return self._seq

    def take_commands(self) -> list[str]:
        """The page's button presses since the last call (clear / space / backspace)."""
        with self._cond:
            out, self._commands = self._commands, []
        return out

    def _command(self, cmd: str) -> None:
        with self._cond:
            if len(self._commands) < 64:
                self._commands.append(cmd)

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def viewers(self) -> int:
        return self._streams

    # ------------------------------------------------------------------ server side
    def _state_json(self) -> bytes:
        with self._cond:
            out = dict(self._state)
            out["seq"] = self._seq
            out["viewers"] = self._streams
            out["server_id"] = self.server_id
        return json.dumps(out, allow_nan=False).encode()

    def _next_frame(self, after_seq: int, timeout: float):
        """The newest frame once there is one newer than `after_seq` (else None on timeout)."""
        with self._cond:
            if self._seq <= after_seq and not self._stopping.is_set():
                self._cond.wait(timeout)
            if self._seq > after_seq and self._jpeg is not None:
                return self._jpeg, self._seq
            return None, after_seq

    def _enter_stream(self) -> bool:
        with self._cond:
            if self._streams >= self.max_streams:
                return False
            self._streams += 1
            return True

    def _leave_stream(self) -> None:
        with self._cond:
            self._streams -= 1
            self._cond.notify_all()


def _demo(argv=None) -> int:  # python3 dpu_app/web.py --port 8080: a moving test pattern
    import argparse
    ap = argparse.ArgumentParser(description="serve a synthetic test stream (needs cv2)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    a = ap.parse_args(argv)
    import cv2
    import numpy as np
    try:
        viewer = WebViewer(a.host, a.port).start()
    except ViewerError as e:
        print(f"error: {e}")
        return 2
    print(f"viewer at {viewer.url} (Ctrl-C stops)")
    letters, i = "ABCDEFGHIKLMNOPQRSTUVWXY", 0
    try:
        while True:
            img = np.full((240, 320, 3), 40, np.uint8)
            cv2.putText(img, letters[i % 24], (120, 170), cv2.FONT_HERSHEY_SIMPLEX, 4,
                        (0, 220, 255), 8)
            viewer.publish(cv2.imencode(".jpg", img)[1],
                           {"letter": letters[i % 24], "confidence": 0.9, "top3": [],
                            "text": letters[: i % 24 + 1], "fps": 2.0, "ms": {},
                            "frames": i + 1, "dropped": 0})
            i += 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        viewer.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(_demo())
