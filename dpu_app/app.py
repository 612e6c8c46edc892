#!/usr/bin/env python3
"""Live sign-language recognition (Sign Language MNIST letters) on a webcam, video or images;
with the compiled .xmodel on the ZCU104's DPU (vart backend) or with the Keras model on a PC
(host backend). See dpu_app/README.md.

    python3 -m dpu_app --model build/train/model.h5 --source 0              # PC, webcam
    python3 -m dpu_app --model signnet.xmodel --source /dev/video0 --web    # board
    python3 -m dpu_app --model M --bench --csv sign_mnist_test.csv.gz --threads 4 --json b.json

(run from the folder that holds dpu_app/: the repository on a PC, /home/root/signlang on the
board.)

Every expected fault ends with one line `error: ...` and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")     # before cv2 is imported anywhere

from .contract import (DEFAULT_THRESHOLD, LABELS_FILE, Preprocess,  # noqa: E402
                       check_manifest_model, find_manifest, load_labels, load_manifest)
from .errors import AppError, info, warn  # noqa: E402

import numpy as np  # noqa: E402

EXIT_FAULT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):                                    # one line, not usage + error
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_FAULT)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python3 -m dpu_app", description=__doc__.split("\n\n")[0],
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("model")
    g.add_argument("--model", help="compiled .xmodel (board) or Keras .h5, float or quantized (PC)")
    g.add_argument("--manifest", help="deploy manifest JSON (default: the one beside the .xmodel)")
    g.add_argument("--labels", help="labels file, one letter a line (default: manifest's, or "
                                    "labels.txt beside the model)")
    g.add_argument("--backend", default="auto", choices=("auto", "vart", "host"),
                   help="auto: vart for .xmodel, host otherwise")
    g.add_argument("--host-runtime", default="auto", choices=("auto", "tflite", "tf"),
                   help="host backend engine: tflite (fast, converted at start) or tf "
                        "(default auto: tflite when it matches tf)")
    g = ap.add_argument_group("input")
    g.add_argument("--source", default="0",
                   help="camera index or /dev/videoN, video file, folder of images, or Kaggle "
                        "CSV (default 0)")
    g.add_argument("--width", type=int, default=640, help="camera capture width (default 640)")
    g.add_argument("--height", type=int, default=480, help="camera capture height (default 480)")
    g.add_argument("--roi", default="auto",
                   help="where to sign: auto (centred square, 60%% of the short side), full, "
                        "center:0.5, x,y,w,h pixels or fractions")
    g.add_argument("--flip", action="store_true", help="mirror frames before everything "
                                                       "(left-handed signing)")
    g.add_argument("--hold", type=int, default=1,
                   help="show each image of a folder/CSV source for N frames")
    g.add_argument("--loop", action="store_true", help="restart a file source at its end")
    g.add_argument("--realtime", choices=["auto", "yes", "no"], default="auto",
                   help="play a video file at its own frame rate: auto = when it is shown in "
                        "a window or the web viewer (else as fast as the model reads it)")
    g.add_argument("--reconnect-tries", type=int, default=0,
                   help="give up after N camera reconnect tries (default 0 = keep trying)")
    g = ap.add_argument_group("recognition and spelling")
    g.add_argument("--threshold", type=float, default=None,
                   help="confidence needed for a letter; below it, or when 'nothing' wins, the "
                        "app shows 'no hand' (default: the manifest's calibrated threshold, "
                        f"else {DEFAULT_THRESHOLD})")
    g.add_argument("--mirror", dest="mirror", action="store_const", const=True, default=None,
                   help="average each prediction with the mirror image's (default: the "
                        "manifest's recognition.mirror)")
    g.add_argument("--no-mirror", dest="mirror", action="store_const", const=False,
                   help="do not (one inference a frame)")
    g.add_argument("--smooth", type=float, default=0.5,
                   help="EMA weight of the newest frame, 1 = no smoothing (default 0.5)")
    g.add_argument("--stable", type=int, default=8,
                   help="frames a letter must hold to be spelled (default 8)")
    g.add_argument("--gap", type=int, default=15,
                   help="frames without a letter that add a space (default 15)")
    g = ap.add_argument_group("output")
    g.add_argument("--no-display", action="store_true", help="no window and no web viewer")
    g.add_argument("--web", action="store_true", help="use the web viewer even with a display")
    g.add_argument("--host", default="127.0.0.1", help="web viewer address (default 127.0.0.1; "
                                                       "0.0.0.0 to reach the board from a PC)")
    g.add_argument("--port", type=int, default=8080, help="web viewer port (default 8080)")
    g.add_argument("--record", metavar="FILE", help="write the annotated stream (.mp4/.avi)")
    g.add_argument("--max-frames", type=int, default=0, help="stop after N frames")
    g.add_argument("--quiet", action="store_true", help="no letter/text lines on stdout")
    g.add_argument("--summary-json", metavar="FILE", help="write the run summary as JSON")
    g = ap.add_argument_group("evaluation and benchmark")
    g.add_argument("--eval-photos", metavar="DIR",
                   help="score a labelled photo folder (one folder per letter, optional "
                        "manifest.csv with hand boxes) through this app's pipeline and exit")
    g.add_argument("--bench", action="store_true", help="benchmark over a Kaggle CSV (and "
                   "--eval-photos DIR when given)")
    g.add_argument("--csv", help="Kaggle Sign Language MNIST CSV(.gz) for --bench")
    g.add_argument("--threads", default="1", help="threads, or a list like 1,2,4 (default 1)")
    g.add_argument("--batch", type=int, default=0,
                   help="images per inference call (default: the DPU batch; 1 on the host)")
    g.add_argument("--limit", type=int, default=0,
                   help="use only the first N CSV rows (default 0: all of them)")
    g.add_argument("--bench-frames", type=int, default=-1,
                   help="640x480 frames for the frame benchmark (default 1000 with --bench; 0 = "
                        "skip)")
    g.add_argument("--json", metavar="FILE", help="write the benchmark results as JSON")
    g.add_argument("--eval-backgrounds", type=int, default=4, metavar="N",
                   help="--eval-photos: 'no hand' squares cut from each photo away from its "
                        "hand box (default 4; 0 = none)")
    g.add_argument("--jitter-seed", type=int, default=None, metavar="N",
                   help="--eval-photos with a landmark model: misplace each guide box the way "
                        "a person misplaces a hand (centre +-20%% of the box, size x0.8-1.6), "
                        "seeded by N")
    return ap


def _check_args(a) -> None:
    if a.threshold is not None and not 0.0 <= a.threshold <= 1.0:
        raise AppError(f"--threshold {a.threshold}: must be in 0..1")
    if not 0.0 < a.smooth <= 1.0:
        raise AppError(f"--smooth {a.smooth}: must be in (0, 1] (1 = no smoothing)")
    for name in ("stable", "gap", "hold"):
        if getattr(a, name) < 1:
            raise AppError(f"--{name} {getattr(a, name)}: must be at least 1")
    for name in ("max_frames", "limit", "reconnect_tries", "batch", "width", "height"):
        if getattr(a, name) < 0:
            raise AppError(f"--{name.replace('_', '-')} {getattr(a, name)}: must be >= 0")
    if not 0 <= a.port <= 65535:
        raise AppError(f"--port {a.port}: must be 0..65535")
    if a.no_display and a.web:
        raise AppError("--no-display and --web contradict each other: pick one")
    try:
        a.thread_list = [int(t) for t in str(a.threads).split(",") if t.strip()]
    except ValueError:
        raise AppError(f"--threads {a.threads}: give a number or a list like 1,2,4") from None
    if not a.thread_list or min(a.thread_list) < 1 or max(a.thread_list) > 64:
        raise AppError(f"--threads {a.threads}: each must be 1..64")
    # the inputs of --bench / --eval-photos, before seconds of model loading
    if a.bench and not _bench_csv(a) and not a.eval_photos:
        raise AppError("--bench needs --eval-photos DIR (a labelled photo folder: the hand "
                       "pipeline's benchmark) or --csv FILE (the Kaggle test CSV, e.g. "
                       "data/sign_mnist/sign_mnist_test.csv.gz)")
    if a.csv and not os.path.isfile(a.csv):
        raise AppError(f"--csv {a.csv}: file not found (give a Kaggle Sign Language MNIST CSV, "
                       f"e.g. data/sign_mnist/sign_mnist_test.csv.gz)")
    if a.eval_photos is not None and not os.path.isdir(a.eval_photos):
        what = "is a file, not a folder" if os.path.isfile(a.eval_photos) else "not found"
        raise AppError(f"--eval-photos {a.eval_photos or '(empty)'}: photo folder {what} (a "
                       f"folder with one sub-folder per letter, see data/asl_photos/README.md)")
    # where results go, before a session or a benchmark whose results would then be lost
    for flag, path in (("--summary-json", a.summary_json), ("--json", a.json)):
        if path is not None:
            check_writable(flag, path)


def check_writable(flag: str, path: str) -> None:
    """An output file can be written: not a folder, and its nearest existing parent is a
    writable folder (missing folders below it are created when the file is written)."""
    if not path or os.path.isdir(path):
        raise AppError(f"{flag} {path or '(empty)'}: give a file name, e.g. results.json")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise AppError(f"{flag} {path}: {parent} is a file, not a folder: pick another path")
    if not os.access(parent, os.W_OK):
        raise AppError(f"{flag} {path}: folder {parent} is not writable: pick another path")


def viewer_shown(viewer: str, sinks: list, record: str | None) -> bool:
    """A window or the web viewer is up (the sinks hold more than the recorder)."""
    return viewer in ("window", "web") and len(sinks) > bool(record)


def describe_outputs(viewer: str, sinks: list, record: str | None) -> str:
    """Where the annotated frames go, for the start line: 'viewer web', 'recording to x.mp4'."""
    shown = [f"viewer {viewer}"] if viewer_shown(viewer, sinks, record) else []
    if record:
        shown.append(f"recording to {record}")
    return ", ".join(shown) or "no viewer"


def _bench_csv(a) -> str | None:
    """The CSV a benchmark reads: --csv, or a CSV given as --source."""
    return a.csv or (a.source if str(a.source).lower().endswith((".csv", ".csv.gz")) else None)


@dataclass
class Resolved:
    model: str
    labels: list
    preprocess: Preprocess | None       # None: read from the model's input
    fix: tuple                          # (input, output) fix points from the manifest
    threshold: float
    manifest: str | None
    mirror: bool = False
    hands: dict | None = None           # the manifest's "hands": the landmark pipeline


def check_model_file(model: str) -> None:
    """The model file exists and looks like what its name says, before anything else is
    blamed (labels, manifest) and before seconds of loading."""
    if not os.path.exists(model):
        if model.endswith(".xmodel"):
            raise AppError(f"model {model} not found: on the board the bundle's model is "
                           f"model/<name>.xmodel (copied by `make deploy` from the PC), or pass "
                           f"--model PATH")
        raise AppError(f"model {model} not found: train one (make train -> build/train/model.h5),"
                       f" or pass --model PATH")
    if not os.path.isdir(model) and not model.endswith((".h5", ".xmodel")):
        raise AppError(f"model {model} is neither a .h5 (Keras, PC) nor an .xmodel (board): "
                       f"give build/train/model.h5, build/quantize/quantized.h5 or the .xmodel")
    if os.path.isdir(model) or os.path.getsize(model) == 0:
        raise AppError(f"model {model} is {'a folder' if os.path.isdir(model) else 'empty'}: "
                       f"give the .h5 (PC) or .xmodel (board) file")
    if model.endswith(".h5"):
        with open(model, "rb") as f:
            if f.read(8) != b"\x89HDF\r\n\x1a\n":
                raise AppError(f"model {model} is not an HDF5 file (damaged, or not a Keras "
                               f".h5): copy it again or re-run make train")


def resolve_model(a) -> Resolved:
    """Model file, labels, preprocessing, fix points and threshold, from the flags and the
    manifest beside the model (cheap: no model is loaded here)."""
    man = load_manifest(a.manifest) if a.manifest else None
    model = a.model or (man.model_path if man else None)
    if not model:
        raise AppError("no model given: pass --model build/train/model.h5 (PC), or --model "
                       "NAME.xmodel / --manifest manifest.json (board)")
    check_model_file(model)
    found = None
    if man is None:
        found = find_manifest(model)
        if found:
            man = load_manifest(found)
    if man is not None and man.model_path \
            and os.path.basename(man.model_path) == os.path.basename(model):
        check_manifest_model(man, model)
    if found:
        info(f"manifest: {found}")
    if a.labels:
        labels = load_labels(a.labels)
    elif man is not None and man.labels:
        labels = man.labels
    else:
        beside = os.path.join(os.path.dirname(os.path.abspath(model)), LABELS_FILE)
        if not os.path.isfile(beside):
            raise AppError(f"no labels for {model}: put the trainer's labels.txt beside it, or "
                           f"pass --labels FILE (or --manifest)")
        labels = load_labels(beside)
    threshold = a.threshold
    if threshold is None:
        threshold = man.threshold if man is not None and man.threshold is not None \
            else DEFAULT_THRESHOLD
    mirror = a.mirror if a.mirror is not None else bool(man is not None and man.mirror)
    hands = None
    if man is not None and man.data.get("kind") == "landmarks":
        hands = man.data.get("hands")
        if not isinstance(hands, dict):
            raise AppError(f"manifest {man.path}: kind 'landmarks' without a 'hands' section: "
                           f"copy the manifest written with this model (make train)")
    return Resolved(model, labels, man.preprocess if man is not None else None,
                    (man.input_fix, man.output_fix) if man is not None else (None, None),
                    float(threshold), man.path if man is not None else None, mirror, hands)


def make_backend(a, r: Resolved):
    from .backends import open_backend
    from .hands import RAW_WIDTH
    backend = open_backend(a.backend, r.model, r.labels, r.preprocess, manifest_fix=r.fix,
                           host_runtime=a.host_runtime,
                           raw_width=RAW_WIDTH if r.hands is not None else None)
    if r.hands is not None:
        try:
            backend.pipe = make_pipeline(backend, r)
        except BaseException:
            backend.close()
            raise
    return backend


def make_pipeline(backend, r: Resolved):
    """The hand pipeline of a landmark model: its network behind `backend`, the letter
    classifier named by the manifest (checked against its sha256), the constants."""
    from .contract import sha256_file
    from .hands import Constants, HandPipeline, LetterClassifier
    where = f"manifest {r.manifest}"
    c = r.hands.get("classifier") or {}
    if not isinstance(c, dict) or not c.get("file"):
        raise AppError(f"{where}: 'hands' names no classifier file: copy the manifest written "
                       f"with this model (make train)")
    path = os.path.join(os.path.dirname(os.path.abspath(r.manifest)), str(c["file"]))
    if c.get("sha256") and os.path.isfile(path) and sha256_file(path) != c["sha256"]:
        raise AppError(f"letter classifier {path} is not the one {r.manifest} was written with "
                       f"(sha256 differs): copy the model folder whole, or run make train again")
    clf = LetterClassifier.load(path)
    scale = np.float32(r.preprocess.scale if r.preprocess is not None else 1.0 / 256.0)

    def net(crops):
        return backend.infer(crops.astype(np.float32) * scale)
    return HandPipeline(net, clf, r.labels, Constants.from_manifest(r.hands, where),
                        mirror=r.mirror)


def choose_viewer(a) -> str:
    from .sinks import gui_available
    if a.no_display:
        return "none"
    if a.web:
        return "web"
    return "window" if gui_available() else "web"


def open_live_source(a, capture_factory=None):
    from .sources import open_source
    return open_source(a.source, width=a.width, height=a.height, hold=a.hold, loop=a.loop,
                       limit=a.limit, max_reconnects=a.reconnect_tries,
                       capture_factory=capture_factory)


def run_live(a, backend, src, r: Resolved, on_frame=None, out=sys.stdout) -> int:
    from .live import LivePipeline
    from .processing import FrameProcessor, Roi
    from .sinks import Recorder, ViewerMissing, WebSink, WindowSink
    try:
        roi = Roi(a.roi, multiple=backend.preprocess.width)
    except BaseException:
        src.close()
        raise
    sinks = []
    try:
        viewer = choose_viewer(a)
        if viewer == "window":
            sinks.append(WindowSink())
        elif viewer == "web":
            label = ("DPU (vart)" if backend.kind == "vart" else f"CPU ({backend.name})")
            try:
                sinks.append(WebSink(a.host, a.port, backend_label=label))
            except ViewerMissing:
                if a.web:
                    raise
                warn("no display and no web viewer (dpu_app/web.py) here: running without a "
                     "picture; letters still go to stdout (use --record FILE to keep the video)")
        if a.record:
            sinks.append(Recorder(a.record, src.fps or 30.0))
    except BaseException:
        for s in sinks:
            s.close()
        src.close()
        raise
    if r.hands is not None:
        from .processing import HandFrameProcessor
        proc = HandFrameProcessor(backend.pipe, roi, threshold=r.threshold, smooth=a.smooth,
                                  stable=a.stable, gap=a.gap, flip=a.flip)
    else:
        proc = FrameProcessor(backend, roi, threshold=r.threshold, smooth=a.smooth,
                              stable=a.stable, gap=a.gap, flip=a.flip, mirror=r.mirror)
    info(f"{backend.name}: {backend.model_path}; source {src}; threshold {r.threshold:.2f}"
         f"{', mirror-averaged' if r.mirror else ''}; "
         f"{describe_outputs(viewer, sinks, a.record)}")
    from .sources import VideoFileSource
    shown = viewer_shown(viewer, sinks, a.record)
    pace = src.fps if isinstance(src, VideoFileSource) and src.fps > 0 and (
        a.realtime == "yes" or (a.realtime == "auto" and shown)) else 0.0
    if pace:
        info(f"playing {src} at its own {pace:.0f} fps (pass --realtime no to read it as fast "
             f"as possible)")
    pipe = LivePipeline(proc, src, sinks, max_frames=a.max_frames, out=None if a.quiet else out,
                        on_frame=on_frame, pace_fps=pace)
    summary = pipe.run()
    summary["backend"] = backend.describe()
    summary["source"] = str(src)
    ms = " ".join(f"{k} {v:.2f}" for k, v in summary["ms"].items())
    info(f"{summary['frames']} frames in {summary['seconds']:.1f}s ({summary['fps']:.1f} fps; "
         f"dropped {summary['dropped']}, unreadable {summary['bad_frames']}, reconnects "
         f"{summary['reconnects']}); mean ms: {ms}; stopped: {summary['stopped_by']}")
    if shown and summary["stopped_by"] == "end of source":
        info(f"end of {src}: the viewer closes with it (--loop plays it again)")
    if not a.quiet:
        print(f'final text "{summary["text"]}"', file=out, flush=True)
    if a.summary_json:
        _write_json(a.summary_json, summary)
    return 0


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:     # temp + rename: never half-written
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise AppError(f"could not write {path} ({e.strerror or e}): check the folder") from None


def run_eval(a, backend, r: Resolved, out=sys.stdout) -> dict:
    from .evaluate import describe, eval_hands, eval_photos
    if r.hands is not None:
        res = eval_hands(backend.pipe, a.eval_photos, r.threshold,
                         backgrounds=max(0, a.eval_backgrounds), jitter_seed=a.jitter_seed)
        res.pop("hands", None)
    else:
        res = eval_photos(backend, a.eval_photos, r.threshold, r.mirror,
                          backgrounds=max(0, a.eval_backgrounds))
    for line in describe(res):
        print(f"{backend.name}: {line}", file=out, flush=True)
    return res


def run_bench(a, backend, r: Resolved, out=sys.stdout) -> int:
    from . import bench
    from .datasets import load_kaggle_csv
    from .processing import FrameProcessor, Roi
    res = {"backend": backend.describe(), "machine": bench.machine_info(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "threshold": r.threshold,
           "mirror": r.mirror,
           "note": "infer includes int8 input scaling (vart) and softmax; workers are warmed "
                   "up before timing", "sets": {}, "runs": []}
    csv = _bench_csv(a)
    if r.hands is not None:
        return run_bench_hands(a, backend, r, res, csv, out)
    if a.eval_photos:
        ev = run_eval(a, backend, r, out)
        res["photos"] = {"folder": ev["folder"], "photos": ev["photos"]}
        res["sets"].update({k: ev[k] for k in ("photos_val", "no_hand_val") if k in ev})
    if csv:
        data = load_kaggle_csv(csv, a.limit)
        pixels, raw = data.pixels, data.raw
        unknown = sorted(set(data.letters) - set(backend.labels))
        if unknown:
            raise AppError(f"the model's labels {''.join(backend.labels)} lack "
                           f"{''.join(unknown)} found in {csv}: wrong labels file?")
        res["csv"] = os.path.abspath(csv)
        backend.prepare(max(a.thread_list))       # runners made here, one after another
        for t in a.thread_list:
            run = bench.bench_csv(backend, pixels, raw, threads=t, batch=a.batch or None)
            res["runs"].append(run)
            print(f"{backend.name}: {run['images']} images, {t} thread(s), batch "
                  f"{run['batch']}: {run['fps_infer_only']:.0f} img/s infer only, "
                  f"{run['fps_with_preprocess']:.0f} img/s with preprocess", file=out, flush=True)
        acc = bench.csv_accuracy(backend, pixels, raw, r.mirror)
        res["sets"]["sign_mnist_test"] = acc
        res["accuracy"] = acc["accuracy"]
        print(f"{backend.name}: Sign MNIST test {acc['images']:,} images: accuracy "
              f"{acc['accuracy'] * 100:.2f}%{' (mirror-averaged)' if r.mirror else ''}",
              file=out, flush=True)
        res["fps"] = max(r["fps_infer_only"] for r in res["runs"])
        nf = 1000 if a.bench_frames < 0 else a.bench_frames
        if nf:
            proc = FrameProcessor(backend, Roi(a.roi, multiple=backend.preprocess.width),
                                  threshold=r.threshold, smooth=a.smooth, stable=a.stable,
                                  gap=a.gap, mirror=r.mirror)
            frames, truth = bench.synth_frames(pixels, raw, nf)
            fr = bench.bench_frames(proc, frames, truth, nf)
            res["frames"] = fr
            ms = " ".join(f"{k} {v:.3f}" for k, v in fr["stages_ms"].items())
            print(f"{backend.name}: {nf} frames 640x480 single stream (preprocess+infer+overlay)"
                  f": {fr['fps']:.0f} frames/s; mean ms {ms}", file=out, flush=True)
    if a.json:
        _write_json(a.json, res)
        info(f"wrote {a.json}")
    return 0


def run_bench_hands(a, backend, r: Resolved, res: dict, csv: str | None, out) -> int:
    """--bench for the hand pipeline: the photo folder scored by the pipeline, and a single
    stream of 640x480 frames of held hands (search, then tracking), with ms per step."""
    from . import bench
    from .processing import HandFrameProcessor, Roi
    res["note"] = ("network = crop + landmark network passes (int8 scaling on the DPU); "
                   "classifier = numpy MLP + decision; first frames warm up")
    if csv:
        warn(f"{csv}: Sign MNIST images are not scored by the hand pipeline (28x28 grey "
             f"crops hold no landmarks to find); give --eval-photos DIR")
    if a.eval_photos:
        ev = run_eval(a, backend, r, out)
        res["photos"] = {"folder": ev["folder"], "photos": ev["photos"]}
        res["sets"].update({k: ev[k] for k in ("photos_val", "no_hand_val") if k in ev})
        res["accuracy"] = ev["photos_val"].get("top1")        # what board-bench reads back
        nf = 300 if a.bench_frames < 0 else a.bench_frames
        if nf and a.bench:
            roi = Roi(a.roi)
            proc = HandFrameProcessor(backend.pipe, roi, threshold=r.threshold,
                                      smooth=a.smooth, stable=a.stable, gap=a.gap)
            frames, truth = bench.photo_frames(a.eval_photos, roi, nf)
            fr = bench.bench_hand_frames(proc, frames, truth)
            res["frames"] = fr
            res["fps"] = fr["fps"]
            ms = " ".join(f"{k} {v:.2f}" for k, v in fr["stages_ms"].items())
            print(f"{backend.name}: {fr['frames']} frames 640x480 single stream, hands held "
                  f"10 frames each: {fr['fps']:.1f} frames/s, {fr['passes_per_frame']:.2f} "
                  f"network passes a frame ({fr['tracked_share'] * 100:.0f}% tracked); mean ms "
                  f"{ms}; raw letter right on {fr['raw_frame_accuracy'] * 100:.1f}% of frames",
                  file=out, flush=True)
    if a.json:
        _write_json(a.json, res)
        info(f"wrote {a.json}")
    return 0


def check_before_loading(a) -> None:
    """What fails in a second is said before seconds of model loading: every picture of
    --eval-photos decodes (all the bad ones named, not the first after 8-13 s), and the web
    viewer's port is free (it was found busy after about 16 s)."""
    if a.eval_photos:
        from .datasets import scan_photo_folder, unreadable_photos
        pf = scan_photo_folder(a.eval_photos, verify=True)
        bad = unreadable_photos(pf)
        if bad:
            names = ", ".join(p.rel for p in bad[:5]) + (f" and {len(bad) - 5} more"
                                                         if len(bad) > 5 else "")
            raise AppError(f"{a.eval_photos}: {len(bad)} of its {len(pf.photos)} photos are "
                           f"not images OpenCV can read (damaged, empty or not JPEG/PNG): "
                           f"{names}: replace or remove them")
        if pf.manifest is None:
            print("note: no manifest.csv: each whole picture is taken as the hand's box",
                  file=sys.stderr, flush=True)
    elif not a.bench and a.port and choose_viewer(a) == "web":
        import socket
        probe = socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the viewer does
            probe.bind((a.host, a.port))
        except OSError:
            try:
                from .web import WebViewer
            except ImportError:               # run_live says so (and goes on without it)
                return
            WebViewer(a.host, a.port).start().stop(timeout=1.0)   # its ViewerError line
        finally:
            probe.close()


# Run by make (app, eval-photos, bench-app): the user typed MODEL=, SOURCE=, DIR=, not flags
MAKE_WORDS = (("--model", "MODEL="), ("--source", "SOURCE="), ("--eval-photos", "DIR="))


def in_make_words(message: str, given: dict | None = None) -> str:
    """A hint in the words of make: '--model PATH' -> 'MODEL=PATH', '--eval-photos x' ->
    'DIR=x'. `given`: {flag: the value the user gave}."""
    import re
    for flag, var in MAKE_WORDS:
        value = (given or {}).get(flag)
        if value:
            message = message.replace(f"{flag} {value}", f"{var}{value}")
        # the flag, and the space before a value or placeholder (PATH, build/x.h5, 0)
        message = re.sub(rf"(?<![\w-]){flag}(?![\w-])(?:\s+(?=[A-Z0-9/.~]|[\w-]*[/.]\w))?",
                         var, message)
    return message


def main(argv=None, *, on_frame=None, out=None, capture_factory=None) -> int:
    out = out or sys.stdout
    a = build_parser().parse_args(argv)
    backend = src = None
    try:
        _check_args(a)
        resolved = resolve_model(a)           # cheap: files, labels, manifest
        check_before_loading(a)
        scoring = a.bench or a.eval_photos
        if not scoring:       # a missing camera is reported before seconds of model loading
            src = open_live_source(a, capture_factory)
        backend = make_backend(a, resolved)
        if scoring:
            return run_bench(a, backend, resolved, out=out)
        return run_live(a, backend, src, resolved, on_frame=on_frame, out=out)
    except AppError as e:
        msg = str(e)
        if os.environ.get("DPU_APP_VIA_MAKE") == "1":
            msg = in_make_words(msg, {"--model": a.model, "--source": a.source,
                                      "--eval-photos": a.eval_photos})
        print(f"error: {msg}", file=sys.stderr, flush=True)
        return EXIT_FAULT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    finally:
        if backend is not None:
            backend.close()
        if src is not None and backend is None:     # the model failed to load
            src.close()
