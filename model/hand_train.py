"""`make train` for model.kind landmarks: the pretrained hand-landmark network, converted to
Keras for the DPU, and a letter classifier trained on what the app's own hand pipeline
(dpu_app/hands.py) reads from the photos.

    model.h5        the landmark network (Keras 2, functional, DPU layers only): input 224x224
                    BGR in [0, 1], one output of 65 (landmarks, presence and handedness logits,
                    scaled for int8: dpu_app.hands.decode)
    classifier.npz  the letter classifier (numpy MLP on the landmark features)
    labels.txt      the 24 letters, then `nothing`
    manifest.json   what the app reads: preprocessing, the pipeline's constants ("hands"),
                    the classifier's file and checksum, the calibrated threshold
    metrics.json    photo validation (by source photo), backgrounds, per letter, timings
    heldout.npz     the validation hands' float landmarks and presence (the ladder's
                    reference), and the squares of training hands (quantize calibrates on them)
    photos_val/     the validation photos as a folder of their own (make eval-photos)
    confusion.png, config.yaml, provenance.json

The network is run on the photos through the app's host backend (TFLite from model.h5); its
reads are cached by network, pipeline constants and photo checksum in <build>/cache/hands/.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import yaml

from dpu_app import hands as H
from dpu_app import scoring
from dpu_app.contract import (LABELS_FILE, LETTERS, MANIFEST_FILE, NO_HAND, Preprocess,
                              make_manifest, sha256_file)
from dpu_app.datasets import background_squares, box_pixels, read_photo
from toolchain import stages as S
from toolchain.artifacts import (atomic_file, atomic_write_json, atomic_write_text,
                                 clean_stale_partials, provenance, staged_dir)
from toolchain.config import REPO_ROOT, to_dict
from toolchain.errors import UserError

NETWORK_DIR = "data/hand_landmark"
CLASSIFIER_FILE = "classifier.npz"
CACHE_VERSION = 1


def network_file(name: str) -> Path:
    return REPO_ROOT / NETWORK_DIR / f"hand_landmark_{name}.tflite"


def preprocess() -> Preprocess:
    return Preprocess(width=H.NET_SIZE, height=H.NET_SIZE, color="bgr", scale=H.INPUT_SCALE,
                      resize="linear")


def hands_section(cfg, classifier_sha: str, tflite_sha: str, presence: float) -> dict:
    """The manifest's "hands": everything the app needs to run the same pipeline."""
    h = cfg.hands
    return {"network": h.network, "network_sha256": tflite_sha, "passes": h.passes,
            "guide_scale": h.guide_scale, "roi_scale": h.roi_scale, "roi_shift": h.roi_shift,
            "presence": presence, "lm_scale": H.LM_SCALE, "logit_scale": H.LOGIT_SCALE,
            "classifier": {"file": CLASSIFIER_FILE, "sha256": classifier_sha}}


# --------------------------------------------------------------------------- network
def build_network(cfg, tf):
    """The shipped .tflite (checked), converted to the deployable Keras model."""
    from model import handnet
    path = handnet.check_network(network_file(cfg.hands.network))
    return deploy_model(handnet.convert(path, bgr=True)), path


def deploy_model(model):
    """One output for the DPU: the three heads (landmarks, presence, handedness: Dense layers
    on the same pooled features) merged into one Dense of 65, scaled for int8 (landmark x, y
    as (pixels - 112) / 112, z / 112, logits / 16: dpu_app.hands.decode undoes it). One
    output tensor keeps the compiled graph one DPU subgraph with one input and one output."""
    import tensorflow as tf
    heads = []
    for out in model.outputs[:3]:
        layer = out.node.layer
        if not isinstance(layer, tf.keras.layers.Dense):
            raise UserError(f"landmark network: output '{layer.name}' is not a Dense layer "
                            f"(the converter changed?)")
        heads.append(layer)
    feats = {id(h.input) for h in heads}
    if len(feats) != 1:
        raise UserError("landmark network: its three heads do not read the same features")
    first = next(layer for layer in model.layers
                 if isinstance(layer, tf.keras.layers.Conv2D))
    if first.input is not model.inputs[0]:
        raise UserError("landmark network: its first layer is not the input convolution")
    w0 = first.get_weights()
    # the input is pixel * INPUT_SCALE (1/258) where the network expects pixel / 255
    first.set_weights([w0[0] / np.float32(255.0 * H.INPUT_SCALE)] + w0[1:])
    ws, bs = [], []
    c = np.float32(H.NET_SIZE / 2)
    for i, h in enumerate(heads):
        w, b = h.get_weights()
        if i == 0:                                  # landmarks: (x, y, z) x 21
            off = np.tile(np.array([c, c, 0], np.float32), H.N_LANDMARKS)
            w, b = w / np.float32(H.LM_SCALE), (b - off) / np.float32(H.LM_SCALE)
        else:
            w, b = w / np.float32(H.LOGIT_SCALE), b / np.float32(H.LOGIT_SCALE)
        ws.append(w)
        bs.append(b)
    head = tf.keras.layers.Dense(H.RAW_WIDTH, name="hand")
    y = head(heads[0].input)
    head.set_weights([np.concatenate(ws, axis=1), np.concatenate(bs)])
    return tf.keras.Model(model.inputs[0], y, name=model.name)


class NetRunner:
    """The app's host backend on a saved network, as the hand pipeline's `net` callable."""

    def __init__(self, model_path: Path):
        from dpu_app.backends import open_backend
        self.backend = open_backend("host", str(model_path), list(LETTERS) + [NO_HAND],
                                    preprocess(), raw_width=H.RAW_WIDTH)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return self.backend.infer(H.to_input(crops))


# --------------------------------------------------------------------------- reads + cache
class ReadCache:
    """Hand reads keyed by (photo sha256, start square), one .npz per network and pipeline
    constants. A damaged cache file is noted and rebuilt, never trusted."""

    def __init__(self, build_dir: Path, key: dict):
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(build_dir) / "cache" / "hands" / f"reads-{digest}.npz"
        self.items: dict = {}
        self.dirty = False
        if self.path.exists():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    keys = [str(k) for k in z["keys"]]
                    vals = z["values"].astype(np.float64)
                if vals.shape != (len(keys), 63 + 2 + 8):
                    raise ValueError(f"values {vals.shape}")
                self.items = dict(zip(keys, vals))
            except Exception as e:                               # noqa: BLE001
                print(f"note: hand-read cache {self.path} is damaged ({type(e).__name__}); "
                      f"reading the photos again", flush=True)
                self.items = {}

    @staticmethod
    def key(photo_sha: str, sq: H.Square) -> str:
        return f"{photo_sha}:{sq.cx:.2f},{sq.cy:.2f},{sq.side:.2f},{sq.angle:.4f}"

    def get(self, k: str):
        v = self.items.get(k)
        if v is None:
            return None
        return H.Hand(v[:63].reshape(21, 3), float(v[63]), float(v[64]), H.Square(*v[65:69]),
                      H.Square(*v[69:73]), -1)

    def put(self, k: str, hand: H.Hand) -> None:
        sq, nx = hand.square, hand.next_square
        self.items[k] = np.concatenate([hand.landmarks.reshape(63), [hand.presence,
                                        hand.handedness, sq.cx, sq.cy, sq.side, sq.angle,
                                        nx.cx, nx.cy, nx.side, nx.angle]])
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.items)
        with atomic_file(self.path, suffix=".npz") as tmp:
            np.savez(tmp, keys=np.array(keys), values=np.stack([self.items[k] for k in keys]))


def read_chunked(loaders: list, starts: list, net, cfg, step: int = 256):
    """(index, Hand) for each (image loader, start square): the pipeline's passes and re-cut
    (cfg.hands), `step` images at a time so only a chunk of photos is in memory."""
    for j in range(0, len(loaders), step):
        images = [load() for load in loaders[j:j + step]]
        got = H.read_hands(images, list(starts[j:j + step]), net, cfg.hands.passes,
                           batch=cfg.hands.batch, roi=(cfg.hands.roi_scale, cfg.hands.roi_shift))
        yield from enumerate(got, start=j)


def read_all(jobs: list, net, cfg, cache: ReadCache, what: str) -> list:
    """jobs: [(image loader, photo sha256, start square)] -> [Hand], reading only what the
    cache does not have."""
    out: list = [None] * len(jobs)
    todo = []
    for i, (_, sha, sq) in enumerate(jobs):
        got = cache.get(cache.key(sha, sq))
        if got is None:
            todo.append(i)
        else:
            out[i] = got
    if todo:
        t0 = time.monotonic()
        print(f"  reading {len(todo)} {what} ({cfg.hands.passes} passes of the "
              f"{cfg.hands.network} network each; {len(jobs) - len(todo)} cached)", flush=True)
        for k, hand in read_chunked([jobs[i][0] for i in todo], [jobs[i][2] for i in todo],
                                    net, cfg):
            i = todo[k]
            out[i] = hand
            cache.put(cache.key(jobs[i][1], jobs[i][2]), hand)
        cache.save()
        print(f"  {len(todo)} {what} read in {time.monotonic() - t0:.0f}s", flush=True)
    return out


class _Image:
    """Reads a photo when asked (the cache usually spares it)."""
    _memo: dict = {}

    def __init__(self, photo):
        self.photo = photo

    def __call__(self):
        img = self._memo.get(self.photo.path)
        if img is None:
            img = read_photo(self.photo)
            self._memo.clear()
            self._memo[self.photo.path] = img
        return img


def _photo_sha(photo) -> str:
    return hashlib.sha256(Path(photo.path).read_bytes()).hexdigest()


def _size(photo) -> tuple:
    img = _Image(photo)()
    return img.shape[1], img.shape[0]


# --------------------------------------------------------------------------- the stage
def train(cfg, build_dir: str | Path) -> dict:
    from model.bundle import export_photo_folder
    from model.data import DataError, select_photos
    from toolchain.tfsetup import configure_tf
    t_start = time.monotonic()
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(build_dir)
    if not cfg.data.photos:
        raise UserError("model.kind landmarks trains its letter classifier on photos, and "
                        "data.photos is empty: give a photo folder (data.photos) or choose "
                        "model.kind=cnn for Sign MNIST only")
    try:
        sel = select_photos(cfg.data, cfg.seed, no_hand=True)
    except DataError as e:
        raise UserError(str(e)) from None
    for f in sel.folders:
        if not (REPO_ROOT / f["path"] / "manifest.csv").exists() and \
                not (Path(f["path"]) / "manifest.csv").exists():
            print(f"note: {f['path']} has no manifest.csv: each whole picture is taken as the "
                  f"hand's box (see data/asl_photos/README.md for how to give boxes)")
    val_idx = set(sel.val)
    train_photos = [p for p in sel.training() if p.label != NO_HAND]
    val_photos = [sel.photos[i] for i in sel.val]
    print(f"photos: {len(train_photos)} training, {len(val_photos)} validation (by source "
          f"photo, seed {cfg.seed}); network {cfg.hands.network}, {cfg.hands.passes} passes",
          flush=True)
    tf = configure_tf(cfg)
    net_model, tflite = build_network(cfg, tf)
    tflite_sha = sha256_file(str(tflite))
    names = {k: Path(v).name for k, v in S.STAGES["train"].outputs(cfg).items()}
    out_dir = S.out(cfg, build_dir, "train", "model").parent
    letters = list(LETTERS)
    labels = letters + [NO_HAND]
    with staged_dir(out_dir) as stage:
        model_path = stage / names["model"]
        net_model.save(str(model_path), include_optimizer=False, save_format="h5")
        net = NetRunner(model_path)
        weights = hashlib.sha256()
        for w in net_model.get_weights():
            weights.update(np.ascontiguousarray(w).tobytes())
        cache = ReadCache(build_dir, {"v": CACHE_VERSION, "tflite": tflite_sha,
                                      "network": weights.hexdigest(),
                                      "input_scale": H.INPUT_SCALE,
                                      "passes": cfg.hands.passes, "roi": [cfg.hands.roi_scale,
                                                                          cfg.hands.roi_shift],
                                      "runtime": net.backend.name})
        t_read = time.monotonic()
        shas = {id(p): _photo_sha(p) for p in train_photos + val_photos}
        sizes = {id(p): _size(p) for p in train_photos + val_photos}
        rng = np.random.default_rng(cfg.seed + 17)

        def start(p, jitter=False):
            box = box_pixels(p, *sizes[id(p)])
            if jitter:
                return H.jitter_square(box, cfg.hands.guide_scale, rng)
            return H.guide_square(box, cfg.hands.guide_scale)

        tr_jobs = [(_Image(p), shas[id(p)], start(p)) for p in train_photos]
        tr_y = [letters.index(p.label) for p in train_photos]
        for _ in range(cfg.hands.jitter_copies):
            tr_jobs += [(_Image(p), shas[id(p)], start(p, True)) for p in train_photos]
            tr_y += [letters.index(p.label) for p in train_photos]
        va_hand = [p for p in val_photos if p.label != NO_HAND]
        va_jobs = [(_Image(p), shas[id(p)], start(p)) for p in va_hand]
        bg_jobs = []
        for p in val_photos:
            w, h = sizes[id(p)]
            for (x, y, s) in background_squares(p, w, h, cfg.data.background_crops):
                bg_jobs.append((_Image(p), shas[id(p)], H.Square(x + s / 2, y + s / 2, s, 0.0)))
        tr_hands = read_all(tr_jobs, net, cfg, cache, "training hands")
        va_hands = read_all(va_jobs, net, cfg, cache, "validation hands")
        bg_hands = read_all(bg_jobs, net, cfg, cache, "validation backgrounds")
        read_s = time.monotonic() - t_read

        # the classifier learns from the hands the network found (presence above threshold)
        tr_lm = np.stack([h.landmarks for h in tr_hands])
        tr_pres = np.array([h.presence for h in tr_hands])
        keep = tr_pres >= cfg.hands.presence
        from model.hand_classifier import train_classifier
        t_fit = time.monotonic()
        clf = train_classifier(tr_lm[keep], np.array(tr_y)[keep], letters,
                               cfg.hands.classifier, cfg.seed)
        fit_s = time.monotonic() - t_fit
        np.savez(stage / CLASSIFIER_FILE, **clf.save_arrays())

        mirror = cfg.recognition.mirror
        va_y = np.array([labels.index(p.label) for p in va_hand])
        va_lm = np.stack([h.landmarks for h in va_hands]) if va_hands else \
            np.zeros((0, 21, 3))
        va_pres = np.array([h.presence for h in va_hands])
        va_probs = scoring.hand_probs(clf.probs(va_lm, mirror), va_pres, cfg.hands.presence,
                                      labels)
        bg_probs = scoring.hand_probs(
            clf.probs(np.stack([h.landmarks for h in bg_hands]), mirror),
            np.array([h.presence for h in bg_hands]), cfg.hands.presence, labels) \
            if bg_hands else np.zeros((0, len(labels)), np.float32)
        if cfg.recognition.threshold is not None:
            threshold, how = cfg.recognition.threshold, "set in recognition.threshold"
        elif len(va_probs):
            threshold = scoring.calibrate_threshold(va_probs, labels,
                                                    cfg.recognition.max_hand_rejection)
            how = (f"calibrated: the highest letter confidence at which at most "
                   f"{cfg.recognition.max_hand_rejection:.0%} of the validation hands read "
                   f"'no hand' (hand presence {cfg.hands.presence:.2f} counted)")
        else:
            threshold, how = 0.5, "no validation photos: default"
        sets = {"photos_val": scoring.score_hands(va_probs, va_y, labels, threshold)}
        sets["photos_val"]["accuracy"] = sets["photos_val"].get("top1")
        sets["photos_val"]["presence_below"] = round(float((va_pres < cfg.hands.presence)
                                                           .mean()), 5) if len(va_pres) else None
        if len(bg_probs):
            sets["no_hand_val"] = scoring.score_backgrounds(bg_probs, labels, threshold)
        tr_probs = clf.probs(tr_lm[keep], mirror)
        train_acc = float((tr_probs.argmax(1) == np.array(tr_y)[keep]).mean())

        clf_sha = sha256_file(str(stage / CLASSIFIER_FILE))
        atomic_write_text(stage / LABELS_FILE, "\n".join(labels) + "\n")
        man = make_manifest(model_file=model_path.name, sha256=sha256_file(str(model_path)),
                            labels=labels, preprocess=preprocess(), threshold=threshold,
                            how=how, mirror=mirror,
                            extra={"kind": "landmarks", "hands": hands_section(
                                cfg, clf_sha, tflite_sha, cfg.hands.presence)})
        atomic_write_json(stage / MANIFEST_FILE, man)
        _write_heldout(stage / names["heldout"], va_hand, va_hands, tr_hands, train_photos,
                       sel, tr_jobs, tr_y)
        export_photo_folder([sel.names[i] for i in sorted(val_idx)], stage / names["photos_val"])
        _confusion(stage, va_probs, va_y, labels, sets)
        pv = sets["photos_val"]
        metrics = {
            "kind": "landmarks", "network": cfg.hands.network, "passes": cfg.hands.passes,
            "test_accuracy": None,
            "photo_val_accuracy": pv.get("top1"), "photo_val_top3": pv.get("top3"),
            "photo_val_images": pv.get("images", 0),
            "photo_val_sources": len({p.source for p in va_hand}),
            "train_hands": int(keep.sum()), "train_hands_no_presence": int((~keep).sum()),
            "train_accuracy": round(train_acc, 5),
            "threshold": threshold, "threshold_how": how, "sets": sets,
            "per_letter_accuracy": pv.get("per_letter", {}),
            "classes": labels, "input_size": H.NET_SIZE,
            "epochs_run": 0, "train_seconds": round(fit_s, 1),
            "read_seconds": round(read_s, 1),
            "stage_seconds": round(time.monotonic() - t_start, 1),
            "params": int(net_model.count_params()),
            "classifier_params": int(sum(w.size + b.size for w, b in clf.weights)),
        }
        atomic_write_json(stage / "metrics.json", metrics)
        atomic_write_text(stage / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        atomic_write_json(stage / "provenance.json", provenance("train", cfg, inputs={
            "network": {"path": str(Path(NETWORK_DIR) / tflite.name), "sha256": tflite_sha},
            "photos": sel.folders}, extra={"outputs": sorted(p.name for p in stage.iterdir())}))
    _print_summary(metrics, sets, out_dir)
    return metrics


def _write_heldout(path: Path, va_photos, va_hands, tr_hands, tr_photos, sel, tr_jobs,
                   tr_y) -> None:
    """The ladder's reference (validation hands: files as in photos_val/, float landmarks,
    presence), the quantizer's calibration squares (training photos, config paths) and the
    training reads' start squares and letters (quantize refits the classifier on what the
    int8 network reads from them)."""
    names = {id(p): n for p, n in zip(sel.photos, sel.names)}
    n_tr = len(tr_photos)
    calib_files, calib_sq = [], []
    for i, h in enumerate(tr_hands):                 # first read of each training photo
        p = tr_photos[i % n_tr]
        for sq in (h.square, h.next_square):
            calib_files.append(names[id(p)])
            calib_sq.append([sq.cx, sq.cy, sq.side, sq.angle])
    with atomic_file(path, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp, kind=np.array("landmarks"),
            val_files=np.array([p.rel for p in va_photos]),
            val_landmarks=np.stack([h.landmarks for h in va_hands]) if va_hands
            else np.zeros((0, 21, 3)),
            val_presence=np.array([h.presence for h in va_hands]),
            calib_files=np.array(calib_files), calib_squares=np.array(calib_sq),
            train_files=np.array([names[id(job[0].photo)] for job in tr_jobs]),
            train_starts=np.array([[sq.cx, sq.cy, sq.side, sq.angle] for _, _, sq in tr_jobs]),
            train_letters=np.array(tr_y, np.int64))


def _confusion(stage: Path, probs, y, labels, sets) -> None:
    from model import evaluate as E
    from model import reports
    if not len(y):
        return
    panels = [("real photos, validation (hand pipeline)",
               E.confusion(y, probs.argmax(1), len(labels)), sets["photos_val"]["top1"])]
    reports.plot_confusion(panels, labels, stage / "confusion.png")


def _print_summary(m: dict, sets: dict, out_dir: Path) -> None:
    from model.bundle import timing
    from model.evaluate import headline
    print(f"\n{headline(sets)}")
    print(f"app threshold {m['threshold']:.2f}: {m['threshold_how']}")
    pv = sets.get("photos_val") or {}
    worst = scoring.weakest(pv.get("per_letter", {}), 3) if pv.get("images") else []
    if worst:
        print("weakest letters (photos): " + ", ".join(f"{k} {v * 100:.0f}%" for k, v in worst))
    print(f"network reads {m['read_seconds']:.0f}s, classifier "
          f"{timing(m['train_seconds'], m['stage_seconds'])}; outputs in {out_dir}/")
