"""Benchmarks, in the style of Xilinx's app_mt.py but honest about what is timed.

CSV benchmark (`app.py --bench --csv sign_mnist_test.csv.gz --threads 4`):
  * the test images are split into one contiguous slice per thread; each thread has its own
    runner (VART) / interpreter (host) and warms it up before the clock starts;
  * "infer only": the images were preprocessed beforehand (app_mt.py's figure);
  * "with preprocess": each thread goes from the raw 28x28 uint8 pixels through the live
    preprocessing (crop_to_input) and inference: the end-to-end figure;
  * throughput = images / (wall time from releasing the threads to the last join);
  * accuracy = predicted letter (labels[argmax]) vs the Kaggle label's letter, for every image.

Frame benchmark (`--bench-frames N`): 640x480 BGR frames, each a test image enlarged into the
ROI on a grey background, single stream through preprocess + infer + smoothing/spelling +
overlay (no capture, display or JPEG). Reports frames/s and mean per-stage milliseconds.
"""
from __future__ import annotations

import os
import platform
import threading
import time

import numpy as np

from .contract import crop_to_input
from .datasets import kaggle_letter
from .errors import AppError


def check_result(res) -> list:
    """What is wrong with a `--bench --json` result (empty when it is usable): the contract
    between this app and the toolchain that reads it back from the board."""
    if not isinstance(res, dict):
        return ["not a JSON object"]
    bad = []
    for key in ("accuracy", "fps"):
        v = res.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            bad.append(f"no numeric '{key}'")
    if not bad:
        if not 0.0 <= res["accuracy"] <= 1.0:
            bad.append(f"accuracy {res['accuracy']} is not a fraction in 0..1")
        if not res["fps"] > 0:
            bad.append(f"fps {res['fps']} is not positive")
    if not isinstance(res.get("sets"), dict):
        bad.append("no 'sets' object (per test set figures)")
    return bad


def machine_info() -> dict:
    d = {"platform": platform.platform(), "machine": platform.machine(),
         "cpus": os.cpu_count(), "python": platform.python_version(),
         "numpy": np.__version__}
    try:
        import cv2
        d["opencv"] = cv2.__version__
    except ImportError:
        pass
    try:
        d["loadavg_1min_at_start"] = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        pass
    return d


def _percentiles(v: list[float]) -> dict:
    if not v:
        return {}
    a = np.asarray(v)
    return {"mean": round(float(a.mean()), 4), "p50": round(float(np.percentile(a, 50)), 4),
            "p95": round(float(np.percentile(a, 95)), 4), "n": int(a.size)}


def _run_threads(n_threads: int, work) -> float:
    """Start n threads running work(i, start_barrier); return the wall time from the barrier
    to the last join. Each thread warms up before waiting on the barrier."""
    barrier = threading.Barrier(n_threads + 1)
    errors: list[BaseException] = []

    def wrap(i):
        try:
            work(i, barrier)
        except BaseException as e:                               # noqa: BLE001
            errors.append(e)
            try:
                barrier.abort()
            except threading.BrokenBarrierError:
                pass

    ts = [threading.Thread(target=wrap, args=(i,), name=f"bench-{i}") for i in range(n_threads)]
    for t in ts:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall


def bench_csv(backend, pixels: np.ndarray, raw_labels: np.ndarray, threads: int = 1,
              batch: int | None = None) -> dict:
    """Throughput (infer only / with preprocess) and accuracy over the CSV images."""
    pp = backend.preprocess
    labels = backend.labels
    n = len(pixels)
    batch = int(batch or backend.batch)
    roi = (0, 0, pixels.shape[2], pixels.shape[1])
    truth = np.array([kaggle_letter(r) for r in raw_labels])

    # preprocessing, single thread, timed per image (the live path: grey, resize, scale)
    x = np.empty((n, *backend.input_shape), np.float32)
    t0 = time.perf_counter()
    for i in range(n):
        crop_to_input(pixels[i], roi, pp, out=x[i])
    pre_s = time.perf_counter() - t0

    slices = np.array_split(np.arange(n), threads)
    probs_a = np.empty((n, len(labels)), np.float32)
    probs_b = np.empty((n, len(labels)), np.float32)
    lat: list[list[float]] = [[] for _ in range(threads)]

    def infer_only(i, barrier):
        idx = slices[i]
        backend.infer(x[:1], worker=i)                           # warm-up: runner/interpreter
        barrier.wait()
        lo, hi = (int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, 0)
        for s in range(lo, hi, batch):
            e = min(hi, s + batch)
            t = time.perf_counter()
            probs_a[s:e] = backend.infer(x[s:e], worker=i)
            lat[i].append((time.perf_counter() - t) * 1e3)

    def with_pre(i, barrier):
        idx = slices[i]
        buf = np.zeros((batch, *backend.input_shape), np.float32)
        backend.infer(buf[:1], worker=i)
        barrier.wait()
        lo, hi = (int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, 0)
        for s in range(lo, hi, batch):
            e = min(hi, s + batch)
            for j in range(s, e):
                crop_to_input(pixels[j], roi, pp, out=buf[j - s])
            probs_b[s:e] = backend.infer(buf[:e - s], worker=i)

    wall_a = _run_threads(threads, infer_only)
    wall_b = _run_threads(threads, with_pre)
    pred_a = np.asarray(labels)[probs_a.argmax(1)]
    pred_b = np.asarray(labels)[probs_b.argmax(1)]
    correct = pred_a == truth
    per_letter = {}
    for letter in sorted(set(truth.tolist())):
        m = truth == letter
        per_letter[letter] = round(float(correct[m].mean()), 4)
    worst = sorted(per_letter.items(), key=lambda kv: kv[1])[:3]
    all_lat = [v for t in lat for v in t]
    return {
        "images": n,
        "threads": threads,
        "batch": batch,
        "accuracy": round(float(correct.mean()), 5),
        "correct": int(correct.sum()),
        "same_predictions_with_preprocess": bool((pred_a == pred_b).all()),
        "fps_infer_only": round(n / wall_a, 1),
        "fps_with_preprocess": round(n / wall_b, 1),
        "seconds_infer_only": round(wall_a, 4),
        "seconds_with_preprocess": round(wall_b, 4),
        "stages_ms": {
            "preprocess_per_image": round(pre_s / n * 1e3, 5),
            "infer_per_call": _percentiles(all_lat),
            "infer_per_image": round(float(np.sum(all_lat)) / n, 5) if all_lat else None,
        },
        "per_letter_accuracy": per_letter,
        "weakest_letters": [[k, v] for k, v in worst],
    }


def csv_accuracy(backend, pixels: np.ndarray, raw_labels: np.ndarray, mirror: bool) -> dict:
    """Accuracy of the app's prediction (with mirror averaging when the manifest says so) over
    the CSV images: the figure the ladder's rungs report; not timed."""
    from .scoring import app_probs
    pp = backend.preprocess
    roi = (0, 0, pixels.shape[2], pixels.shape[1])
    truth = np.array([kaggle_letter(r) for r in raw_labels])
    pred = []
    for s in range(0, len(pixels), 256):
        x = np.stack([crop_to_input(p, roi, pp) for p in pixels[s:s + 256]])
        pred += [backend.labels[i] for i in app_probs(backend.infer, x, mirror).argmax(1)]
    correct = np.array(pred) == truth
    per_letter = {letter: round(float(correct[truth == letter].mean()), 4)
                  for letter in sorted(set(truth.tolist()))}
    return {"images": int(len(truth)), "accuracy": round(float(correct.mean()), 5),
            "per_letter": per_letter}


def synth_frames(pixels: np.ndarray | None, raw: np.ndarray | None, count: int,
                 size=(640, 480), roi_frac: float = 0.6, seed: int = 0):
    """`count` distinct-ish 640x480 BGR frames: test images enlarged into the centred ROI on a
    grey background with a little noise. Returns (frames list, truth letters or None)."""
    import cv2
    w, h = size
    side = int(round(min(w, h) * roi_frac))
    x0, y0 = (w - side) // 2, (h - side) // 2
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    m = min(count, 64)
    for i in range(m):
        f = np.full((h, w, 3), 110, np.uint8)
        f += rng.integers(0, 20, size=(h, w, 3), dtype=np.uint8)
        if pixels is not None:
            j = int(rng.integers(0, len(pixels)))
            img = cv2.resize(pixels[j], (side, side), interpolation=cv2.INTER_LINEAR)
            f[y0:y0 + side, x0:x0 + side] = img[:, :, None]
            truth.append(kaggle_letter(raw[j]))
        frames.append(f)
    return frames, (truth if pixels is not None else None)


def bench_frames(processor, frames: list, truth: list | None, n: int) -> dict:
    """Single stream: every frame through FrameProcessor.process (preprocess, infer,
    smoothing, spelling, overlay). The same few frames are cycled; the clock covers all n."""
    for f in frames[:3]:
        processor.process(f)                                     # warm-up
    processor.timer.total.clear()
    processor.timer.count.clear()
    hits = 0
    t0 = time.perf_counter()
    for i in range(n):
        state, _ = processor.process(frames[i % len(frames)])
        if truth is not None and state["raw_letter"] == truth[i % len(frames)]:
            hits += 1
    wall = time.perf_counter() - t0
    ms = processor.timer.means()
    ms.pop("capture", None)
    out = {"frames": n, "frame_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
           "seconds": round(wall, 4), "fps": round(n / wall, 1), "stages_ms": ms,
           "overlay": processor.draw}
    if truth is not None:
        out["raw_frame_accuracy"] = round(hits / n, 4)
    return out


def hand_frame(photo, roi, size=(640, 480)) -> np.ndarray:
    """A frame of `size` with the photo scaled and moved so that its hand box fills the app's
    guide box (`roi`, a processing.Roi); the border is the photo's own edge, replicated."""
    import cv2
    from .datasets import box_pixels, read_photo
    w, h = size
    gx, gy, gw, gh = roi.resolve(h, w)
    img = read_photo(photo)
    x0, y0, x1, y1 = box_pixels(photo, img.shape[1], img.shape[0])
    k = min(gw, gh) / max(x1 - x0, y1 - y0)
    m = np.array([[k, 0, gx + gw / 2 - k * (x0 + x1) / 2],
                  [0, k, gy + gh / 2 - k * (y0 + y1) / 2]], np.float64)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def photo_frames(root: str, roi, count: int, hold: int = 10, size=(640, 480), seed: int = 0):
    """640x480 frames of a still hand each, for the hand pipeline: photos of a labelled folder
    (with hand boxes) placed by `hand_frame`, each held for `hold` frames (a person holding a
    letter: the first frame searches, the rest are tracked). Returns (frames, truth letters)."""
    from .contract import NO_HAND
    from .datasets import scan_photo_folder
    pf = scan_photo_folder(root, verify=False)
    photos = [p for p in pf.photos if p.label != NO_HAND and p.box is not None]
    if not photos:
        raise AppError(f"{root}: no photos with hand boxes to make frames of")
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for i in rng.permutation(len(photos))[:max(1, count // hold)]:
        p = photos[int(i)]
        frames += [hand_frame(p, roi, size)] * hold
        truth += [p.label] * hold
    return frames, truth


def bench_hand_frames(processor, frames: list, truth: list) -> dict:
    """Single stream through HandFrameProcessor.process, frames in order (tracking carries
    from frame to frame). Reports frames/s, mean ms per step, network passes per frame and
    how often the raw letter was right."""
    for f in frames[:2]:
        processor.process(f)                                     # warm-up
    processor.reset()
    processor.timer.total.clear()
    processor.timer.count.clear()
    processor.passes_run = 0
    hits = tracked = 0
    t0 = time.perf_counter()
    for f, t in zip(frames, truth):
        state, _ = processor.process(f)
        hits += state["raw_letter"] == t
        tracked += bool(state["hand"]["tracked"])
    wall = time.perf_counter() - t0
    n = len(frames)
    ms = processor.timer.means()
    ms.pop("capture", None)
    return {"frames": n, "frame_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
            "seconds": round(wall, 4), "fps": round(n / wall, 1), "stages_ms": ms,
            "passes_per_frame": round(processor.passes_run / n, 3),
            "tracked_share": round(tracked / n, 4), "raw_frame_accuracy": round(hits / n, 4),
            "overlay": processor.draw}
