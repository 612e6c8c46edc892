"""The headless web viewer (dpu_app/web.py): plain-HTTP contract tests and a real browser.

Everything talks to 127.0.0.1 only. The browser tests drive a real headless Chromium over the
DevTools protocol on a pipe (--remote-debugging-pipe: NUL-separated JSON on fds 3/4, so no
websocket library is needed) and are skipped when /usr/bin/chromium is absent
(CI: apt-get install -y chromium).
"""
from __future__ import annotations

import base64
import fcntl
import gzip
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest


from dpu_app.errors import AppError
from dpu_app.web import PAGE, ViewerError, WebViewer

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- helpers

def jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def pattern(i: int, size=(120, 160)) -> bytes:
    img = np.zeros((*size, 3), np.uint8)
    cv2.putText(img, str(i), (10, 90), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (255, 255, 255), 4)
    return jpeg(img)


def state(letter="A", **kw) -> dict:
    s = {"letter": letter, "confidence": 0.91, "top3": [[letter, 0.91], ["S", 0.05], ["E", 0.02]],
         "text": "HI" + (letter or ""), "fps": 27.4,
         "ms": {"capture": 3.2, "preprocess": 0.4, "infer": 1.1, "overlay": 0.8},
         "frames": 10, "dropped": 1}
    s.update(kw)
    return s


def get(url: str, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers, r.read()


@pytest.fixture
def viewer():
    v = WebViewer(port=0).start()
    yield v
    v.stop()


class MjpegReader:
    """Reads multipart/x-mixed-replace parts from a raw HTTP connection."""

    def __init__(self, port: int, path="/stream.mjpg"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.f = self.sock.makefile("rb")
        status = self.f.readline()
        assert b" 200 " in status, status
        self.headers = {}
        while True:
            line = self.f.readline().strip()
            if not line:
                break
            k, _, v = line.decode().partition(":")
            self.headers[k.strip().lower()] = v.strip()
        ctype = self.headers["content-type"]
        assert ctype.startswith("multipart/x-mixed-replace")
        self.boundary = ctype.split("boundary=")[1].encode()

    def part(self) -> tuple[dict, bytes]:
        line = self.f.readline()
        while line in (b"\r\n", b"\n"):
            line = self.f.readline()
        assert line.strip() == b"--" + self.boundary, line
        hdrs = {}
        while True:
            line = self.f.readline().strip()
            if not line:
                break
            k, _, v = line.decode().partition(":")
            hdrs[k.strip().lower()] = v.strip()
        body = self.f.read(int(hdrs["content-length"]))
        assert self.f.read(2) == b"\r\n"
        return hdrs, body

    def close(self):
        self.f.close()
        self.sock.close()


def wait_for(pred, timeout=5.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ----------------------------------------------------------------------------- plain HTTP

def test_binds_loopback_by_default():
    v = WebViewer(port=0)
    assert v.host == "127.0.0.1"
    v.start()
    try:
        assert v._server.server_address[0] == "127.0.0.1"
        assert v.url == f"http://127.0.0.1:{v.port}/" and v.port > 0
    finally:
        v.stop()
    assert not v.running


def test_page_state_and_404(viewer):
    status, hdrs, body = get(viewer.url)
    assert status == 200 and hdrs["Content-Type"].startswith("text/html")
    html = body.decode()
    assert html == PAGE
    for needle in ('src="/stream.mjpg"', "fetch(\"/state.json\"", 'id="letter"', 'id="top3"',
                   'id="text"', 'id="fps"', 'id="ms-infer"'):
        assert needle in html, needle
    assert "http://" not in html and "https://" not in html     # nothing fetched from outside

    status, hdrs, body = get(viewer.url + "state.json")
    s = json.loads(body)
    assert hdrs["Content-Type"] == "application/json" and s["seq"] == 0 and s["letter"] is None

    for path in ("nope", "stream.mjpg/x", "state.json/..", "../etc/passwd", "index.html", "favicon.ico"):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(viewer.url + path)
        assert e.value.code == 404, path


def test_state_json_is_the_latest_state_plus_counter(viewer):
    viewer.publish(pattern(1), state("A"))
    viewer.publish(pattern(2), state("B", confidence=np.float32(0.5), fps=float("nan"),
                                      top3=(("B", np.float64(0.5)), ("A", 0.25)),
                                      frames=np.int64(42)))
    _, _, body = get(viewer.url + "state.json?t=123")
    s = json.loads(body)
    assert s["seq"] == 2 and s["letter"] == "B" and s["frames"] == 42
    assert s["confidence"] == 0.5 and s["fps"] is None           # NaN -> null, valid JSON
    assert s["top3"] == [["B", 0.5], ["A", 0.25]]
    assert s["ms"] == {"capture": 3.2, "preprocess": 0.4, "infer": 1.1, "overlay": 0.8}
    assert s["viewers"] == 0 and isinstance(s["server_id"], str)
    assert s["dropped"] == 1 and s["text"] == "HIB"


def test_mjpeg_stream_delivers_well_formed_parts(viewer):
    viewer.publish(pattern(0), state())
    stop = threading.Event()

    def producer():
        i = 1
        while not stop.is_set():
            viewer.publish(pattern(i), state(frames=i))
            i += 1
            time.sleep(0.03)
    t = threading.Thread(target=producer, daemon=True)
    t.start()
    r = MjpegReader(viewer.port)
    try:
        assert r.headers["cache-control"].startswith("no-store")
        seen = []
        for _ in range(6):
            hdrs, body = r.part()
            assert hdrs["content-type"] == "image/jpeg"
            img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape == (120, 160, 3)
            seen.append(body)
        assert len(set(seen)) == 6                           # a new frame in every part
        assert viewer.viewers == 1
    finally:
        stop.set()
        t.join()
        r.close()
    assert wait_for(lambda: viewer.viewers == 0)


def test_each_client_gets_the_newest_frame_not_a_backlog(viewer):
    for i in range(1, 51):
        viewer.publish(pattern(i), state(frames=i))
    frame, seq = viewer._next_frame(0, timeout=0.01)
    assert seq == 50 and frame == pattern(50)
    frame, seq = viewer._next_frame(50, timeout=0.05)           # nothing newer: no frame
    assert frame is None and seq == 50
    r = MjpegReader(viewer.port)                                  # a new client starts at the newest
    try:
        _, body = r.part()
        assert body == pattern(50)
    finally:
        r.close()


def test_clients_that_disconnect_are_dropped(viewer, capfd):
    stop = threading.Event()

    def producer():
        i = 0
        while not stop.is_set():
            viewer.publish(pattern(i % 7), state())
            i += 1
            time.sleep(0.01)
    t = threading.Thread(target=producer, daemon=True)
    t.start()
    try:
        readers = [MjpegReader(viewer.port) for _ in range(3)]
        for r in readers:
            r.part()
        assert wait_for(lambda: viewer.viewers == 3)
        for r in readers:                                    # abrupt close mid-stream
            r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            r.close()
        assert wait_for(lambda: viewer.viewers == 0, timeout=5)
        status, _, _ = get(viewer.url + "state.json")        # still serving
        assert status == 200
    finally:
        stop.set()
        t.join()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err


def test_too_many_streams_get_503():
    v = WebViewer(port=0, max_streams=1).start()
    try:
        v.publish(pattern(1), state())
        r = MjpegReader(v.port)
        r.part()
        with pytest.raises(urllib.error.HTTPError) as e:
            get(v.url + "stream.mjpg")
        assert e.value.code == 503
        r.close()
    finally:
        v.stop()


def test_stop_ends_open_streams_and_frees_the_port():
    v = WebViewer(port=0).start()
    port = v.port
    v.publish(pattern(1), state())
    r = MjpegReader(port)
    r.part()
    t0 = time.monotonic()
    v.stop()
    assert time.monotonic() - t0 < 3 and v.viewers == 0
    assert r.f.read() == b""                                    # server closed the stream
    r.close()
    v2 = WebViewer(port=port).start()                           # port reusable at once
    v2.stop()


def test_port_in_use_is_one_clear_line():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        with pytest.raises(ViewerError) as e:
            WebViewer(port=port).start()
        msg = str(e.value)
        assert isinstance(e.value, AppError)                    # the app prints "error: ..."
        assert f"port {port}" in msg and "already in use" in msg and "--port" in msg
        assert "\n" not in msg
    finally:
        busy.close()


def test_bad_host_is_one_clear_line():
    with pytest.raises(ViewerError, match="not an address of this machine|cannot resolve"):
        WebViewer(host="192.0.2.77", port=0).start()            # TEST-NET: bind fails, no traffic


def test_publish_rejects_non_jpeg_and_accepts_imencode_output(viewer):
    with pytest.raises(ValueError, match="JPEG"):
        viewer.publish(b"\x89PNG....", state())
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert viewer.publish(buf, state()) == 1                    # ndarray from cv2 works as is


def post(url):
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def test_buttons_post_commands_the_app_takes_once(viewer):
    assert viewer.take_commands() == []
    assert post(viewer.url + "clear") == 204 and post(viewer.url + "space") == 204
    assert post(viewer.url + "backspace") == 204
    assert viewer.take_commands() == ["clear", "space", "backspace"]
    assert viewer.take_commands() == []                  # each press is applied once
    with pytest.raises(urllib.error.HTTPError) as e:
        post(viewer.url + "shutdown")
    assert e.value.code == 404 and viewer.take_commands() == []


def test_web_sink_applies_the_buttons_and_sends_one_state(monkeypatch):
    """The app's side: a Clear press empties the spelled text before the next state goes
    out, and the frame sent to the page carries the guide box only (the page draws letter,
    top-3 and text from the same state, so the two cannot disagree)."""
    from dpu_app import overlay
    from dpu_app.sinks import WebSink
    from dpu_app.spelling import Speller
    sink = WebSink("127.0.0.1", 0)
    try:
        proc = types.SimpleNamespace(speller=Speller(stable=1, gap=5))
        proc.speller.update("A"), proc.speller.update(None), proc.speller.update("B")
        assert proc.speller.text == "AB"
        post(sink.viewer.url + "clear")
        frame = np.full((480, 640, 3), 90, np.uint8)
        st = dict(state("B"), text=proc.speller.text, threshold=0.4)
        canvas = overlay.draw(frame, (180, 100, 280, 280), st, panel=False)
        sink.show(canvas, st, proc)
        assert proc.speller.text == "" and st["text"] == ""
        _, _, body = get(sink.viewer.url + "state.json")
        assert json.loads(body)["text"] == ""
        assert sink.wants_panel is False
        # no letter panel burned in: the top-left corner is the camera picture, untouched
        assert np.array_equal(canvas[:60, :240], frame[:60, :240])
        full = overlay.draw(frame, (180, 100, 280, 280), st, panel=True)
        assert not np.array_equal(full[:60, :240], frame[:60, :240])
    finally:
        sink.close()


def test_head_requests(viewer):
    conn = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=5)
    conn.request("HEAD", "/state.json")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b""
    conn.close()


def test_web_module_needs_only_the_standard_library():
    """The board has python3 (+numpy/cv2, but web.py must not depend on them)."""
    code = ("import sys, builtins\n"
            "real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name.split('.')[0] in ('numpy', 'cv2', 'toolchain', 'yaml'):\n"
            "        raise ImportError(name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "from dpu_app import web\n"
            "v = web.WebViewer(port=0).start()\n"
            "v.publish(b'\\xff\\xd8\\xff\\xd9', {'letter': 'A'})\n"
            "print(v.url); v.stop()\n")
    out = subprocess.run([sys.executable, "-c", code,
                          str(REPO)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("http://127.0.0.1:")


# ----------------------------------------------------------------------------- real browser

class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, width=1100, height=820):
        self.profile = tempfile.mkdtemp(prefix="chromium-test-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        hi_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)

        def child_fds():                     # fd 3: commands in, fd 4: replies out
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-dev-shm-usage", "--mute-audio", "--no-default-browser-check",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=False,
                                     preexec_fn=child_fds)
        for fd in (to_chrome_r, from_chrome_w, hi_r, hi_w):
            os.close(fd)
        self._id = 0
        self._replies: dict[int, dict] = {}
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                 flatten=True, session=False)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self._from_chrome, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cv:
                        self._replies[msg["id"]] = msg
                        self._cv.notify_all()

    def call(self, method, session=True, timeout=20, **params):
        self._id += 1
        mid = self._id
        msg = {"id": mid, "method": method, "params": params}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        with self._cv:
            if not self._cv.wait_for(lambda: mid in self._replies, timeout):
                raise TimeoutError(f"Chromium did not answer {method} within {timeout}s")
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def wait_js(self, expression, timeout=15.0):
        end = time.monotonic() + timeout
        value = None
        while time.monotonic() < end:
            try:
                value = self.js(expression)
            except RuntimeError as e:          # e.g. the page is still about:blank
                value = e
            if value and not isinstance(value, Exception):
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression!r} (last value {value!r})")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.call("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def sign_samples(tmp_path_factory):
    """A few real test images per letter, from the shipped Kaggle test CSV."""
    from model.data import LETTERS, load_csv, raw_to_class
    src = REPO / "data" / "sign_mnist" / "sign_mnist_test.csv.gz"
    with gzip.open(src, "rt") as f:
        lines = [next(f) for _ in range(200)]
    small = tmp_path_factory.mktemp("csv") / "few.csv"
    small.write_text("".join(lines))
    ds = load_csv(small)
    out = {}
    for img, cls in zip(ds.x, ds.y):
        out.setdefault(LETTERS[int(cls)], []).append(img)
    assert raw_to_class([0])[0] == 0
    return out


def annotated_frame(gray28: np.ndarray, letter: str, conf: float, n: int) -> bytes:
    """What the app sends the web page: the upscaled camera crop and the guide box (the
    letter is on the page, drawn from the state; the frame number helps spot new frames)."""
    big = cv2.resize(gray28, (336, 336), interpolation=cv2.INTER_CUBIC)
    img = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    img = cv2.copyMakeBorder(img, 0, 0, 72, 72, cv2.BORDER_CONSTANT, value=(30, 30, 30))
    cv2.rectangle(img, (80, 8), (472, 328), (0, 200, 0), 3)
    cv2.putText(img, f"#{n}", (400, 326), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    return jpeg(img)


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: the browser test needs headless Chromium "
                    f"(apt-get update && apt-get install -y chromium)")
    b = Chromium()
    yield b
    b.close()


def test_page_in_headless_chromium_shows_stream_and_follows_the_letter(browser, viewer,
                                                                        sign_samples, tmp_path):
    current = {"letter": "A", "text": ""}
    stop = threading.Event()

    def producer():                                   # the app's loop, ~12 fps
        n = 0
        while not stop.is_set():
            letter = current["letter"]
            pool = sign_samples[letter or "A"]
            sample = pool[n % len(pool)]
            top3 = [[letter, 0.87], ["S" if letter != "S" else "E", 0.08], ["M", 0.03]]
            viewer.publish(annotated_frame(sample, letter or "-", 0.87, n),
                           state(letter, confidence=0.87, top3=top3, text=current["text"],
                                 fps=12.3, frames=n, dropped=0, backend="test frames"))
            n += 1
            stop.wait(0.08)
    t = threading.Thread(target=producer, daemon=True)
    t.start()
    try:
        browser.call("Page.navigate", url=viewer.url)
        # the page rendered, the MJPEG <img> decoded frames, and the poller shows letter A
        assert browser.wait_js("document.getElementById('frame').naturalWidth > 0")
        assert browser.js("document.getElementById('frame').naturalWidth") == 480
        assert browser.js("document.getElementById('frame').naturalHeight") == 336
        assert browser.wait_js("document.getElementById('letter').textContent === 'A'")
        assert browser.wait_js("document.getElementById('waiting').style.display === 'none'")
        assert browser.wait_js("getComputedStyle(document.getElementById('waiting')).display"
                               " === 'none'")
        assert browser.js("document.getElementById('status').className") == "ok"
        assert browser.js("document.getElementById('backend').textContent") == "\u00b7 test frames"
        assert viewer.viewers >= 1                       # the <img> holds an MJPEG stream open
        seq_a = browser.js("document.getElementById('status').textContent")

        # the sign changes: the page follows without a reload
        current.update(letter="B", text="AB")
        assert browser.wait_js("document.getElementById('letter').textContent === 'B'")
        assert browser.wait_js("document.getElementById('text').textContent === 'AB'")
        top3 = browser.js("[...document.querySelectorAll('#top3 .l')].map(e => e.textContent)")
        assert top3 == ["B", "S", "M"]
        assert browser.js("document.getElementById('conf').textContent") == "confidence 87.0 %"
        assert browser.js("document.getElementById('fps').textContent") == "12.3"
        assert browser.js("document.getElementById('ms-infer').textContent") == "1.1 ms"
        assert browser.js("document.getElementById('status').textContent") != seq_a

        # the <img> keeps decoding new MJPEG parts: the image content changes over time
        grab = ("(() => { const i = document.getElementById('frame');"
                " const c = document.createElement('canvas'); c.width = 64; c.height = 64;"
                " const g = c.getContext('2d'); g.drawImage(i, 0, 0, 64, 64);"
                " return Array.from(g.getImageData(0, 0, 64, 64).data).join(','); })()")
        first = browser.js(grab)
        assert browser.wait_js(f"{grab} !== {json.dumps(first)}", timeout=10)

        time.sleep(0.3)
        shot = browser.screenshot(tmp_path / "web_viewer.png")
        png = cv2.imread(str(shot))
        assert png is not None and png.shape[:2] == (820, 1100)
        print(f"\nweb viewer screenshot: {shot}")

        # Clear: the button posts to the app, which empties the text in the next state
        current.update(text="ABC")
        assert browser.wait_js("document.getElementById('text').textContent === 'ABC'")
        browser.js("document.getElementById('clear').click()")
        assert wait_for(lambda: viewer.take_commands() == ["clear"], timeout=10)
        current.update(text="")
        assert browser.wait_js("document.getElementById('text').textContent === ''")

        # no hand: the page says so, in the same place the letter goes
        current.update(letter=None)
        assert browser.wait_js("document.getElementById('conf').textContent.startsWith("
                               "'no hand')")
        assert browser.js("document.getElementById('letter').textContent") == "\u2013"

        # the viewer goes away: the page says so instead of freezing silently
        viewer.stop()
        assert browser.wait_js("document.getElementById('status').className === 'bad'")
    finally:
        stop.set()
        t.join()


def test_no_hand_top3_labels_do_not_overlap_their_bars(browser, viewer):
    """In the "no hand" state the first of the top 3 is 'nothing': its label ran over its bar
    (the label column was 2em wide). The labels share a column as wide as the widest, so
    every bar starts after every label, at the same x."""
    top3 = [["nothing", 0.9], ["A", 0.06], ["S", 0.02]]
    viewer.publish(jpeg(np.zeros((48, 64, 3), np.uint8)), state(None, confidence=0.9,
                                                                top3=top3))
    browser.call("Page.navigate", url=viewer.url)
    assert browser.wait_js("document.querySelectorAll('#top3 .l').length === 3")
    boxes = browser.js("[...document.querySelectorAll('#top3 .l')].map(l => {"
                       " const r = l.getBoundingClientRect();"
                       " const b = l.nextElementSibling.getBoundingClientRect();"
                       " return [r.left + l.scrollWidth, b.left]; })")
    assert all(label_end <= bar_left for label_end, bar_left in boxes), boxes
    assert len({bar_left for _, bar_left in boxes}) == 1, boxes
