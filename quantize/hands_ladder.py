"""Freeze, quantize and the accuracy ladder for model.kind landmarks.

Every rung of the ladder (float -> frozen -> int8 -> board) is the whole hand pipeline
(dpu_app/hands.py, the app's own code) run on the validation photos that `make train` set
aside (train/photos_val/) with that rung's network: letter top-1 and "no hand" figures, and
the landmark error against the float network (pixels at 224, on the same crops).

Calibration for vai_q (pof2s) uses real hand crops: the first-pass and re-cut squares of the
training photos (train/heldout.npz names them), so the int8 ranges are those of the hands the
app will feed.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dpu_app import hands as H
from toolchain import stages as S
from toolchain.errors import UserError

LADDER_BACKGROUNDS = 1          # background squares per validation photo on every rung


def load_refs(path: Path) -> dict:
    """The landmark heldout.npz (train): validation and calibration references."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "kind" not in z.files or str(z["kind"]) != "landmarks":
                raise UserError(f"{path} is not a landmark model's heldout file: run "
                                f"'make train' again (model.kind changed?)")
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: run 'make train' first") from None
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path} is damaged ({type(e).__name__}): run 'make train' again"
                        ) from None


def photo_reader(keep: int):
    """read(config-relative training photo file) -> BGR image, the last `keep` files kept
    in memory; an unreadable file is one line naming it."""
    import cv2
    from toolchain.config import resolve_path
    memo: dict = {}

    def read(f) -> np.ndarray:
        f = str(f)
        img = memo.get(f)
        if img is None:
            img = cv2.imread(str(resolve_path(f)), cv2.IMREAD_COLOR)
            if img is None:
                raise UserError(f"{f}: a training photo could not be read: restore it "
                                f"(git checkout -- {f}) or run make train again")
            if len(memo) >= keep:
                memo.clear()
            memo[f] = img
        return img
    return read


def crops_of(files, squares, limit: int | None = None, seed: int = 0) -> np.ndarray:
    """uint8 BGR crops (N, 224, 224, 3) of config-relative photo files at squares."""
    idx = np.arange(len(files))
    if limit is not None and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(len(idx), limit, replace=False))
    out = np.empty((len(idx), H.NET_SIZE, H.NET_SIZE, 3), np.uint8)
    read = photo_reader(keep=1)
    for j, i in enumerate(idx):
        H.cut(read(files[i]), H.Square(*[float(v) for v in squares[i]]), out=out[j])
    return out


def pipeline_for(net, train_dir: Path, man: dict):
    """A HandPipeline with `net` and the trainer's classifier and constants."""
    from dpu_app.hands import Constants, HandPipeline, LetterClassifier
    hands = man.get("hands") or {}
    clf = LetterClassifier.load(str(train_dir / hands["classifier"]["file"]))
    return HandPipeline(net, clf, man["labels"], Constants.from_manifest(hands, "manifest"),
                        mirror=bool(man["recognition"].get("mirror")))


def eval_rung(net, bundle_dir: Path, man: dict, threshold: float, photos_dir: Path):
    """(scores, hands): the whole pipeline with `net` (and the bundle's classifier) on the
    validation photos (train/photos_val/)."""
    from dpu_app.evaluate import eval_hands
    pipe = pipeline_for(net, bundle_dir, man)
    if not Path(photos_dir).is_dir():
        raise UserError(f"{photos_dir} does not exist: run 'make train' again (it sets the "
                        f"validation photos aside there)")
    res = eval_hands(pipe, str(photos_dir), threshold, backgrounds=LADDER_BACKGROUNDS)
    found = res.pop("hands")
    scores = {k: res[k] for k in ("photos_val", "no_hand_val") if k in res}
    if "photos_val" in scores:
        scores["photos_val"]["accuracy"] = scores["photos_val"].get("top1")
    return scores, found


def reference_crops(photos_dir: Path, found: list) -> np.ndarray:
    """The validation hands' crops at the squares the float pipeline's last pass read."""
    from dpu_app.contract import NO_HAND
    from dpu_app.datasets import read_photo, scan_photo_folder
    pf = scan_photo_folder(str(photos_dir), verify=False)
    photos = [p for p in pf.photos if p.label != NO_HAND]
    out = np.empty((len(found), H.NET_SIZE, H.NET_SIZE, 3), np.uint8)
    for j, (p, h) in enumerate(zip(photos, found)):
        H.cut(read_photo(p), h.square, out=out[j])
    return out


def landmark_error(net, crops: np.ndarray, ref_lm: np.ndarray) -> dict:
    """Landmark distance (x, y) of `net` against the float network on the same crops, in
    pixels of the 224 input: mean, 95th percentile, max."""
    if not len(crops):
        return {}
    lm = _landmarks(net, crops)
    d = np.sqrt(((lm[..., :2] - ref_lm[..., :2]) ** 2).sum(-1))
    return {"mean_px": round(float(d.mean()), 3), "p95_px": round(float(np.percentile(d, 95)), 3),
            "max_px": round(float(d.max()), 3), "crops": int(len(crops))}


def float_net(tf_model):
    """`net` for a Keras model (float or quantized): uint8 crops -> raw outputs."""
    def net(crops):
        return tf_model.predict(H.to_input(crops), batch_size=32,
                                verbose=0)
    return net


def frozen_net(graph_def, in_name: str, out_name: str):
    from quantize.freeze import run_frozen

    def net(crops):
        return run_frozen(graph_def, in_name, out_name,
                          H.to_input(crops), batch=64)
    return net


def describe(name: str, scores: dict, lm_err: dict | None = None) -> str:
    pv, bg = scores.get("photos_val") or {}, scores.get("no_hand_val") or {}
    parts = [f"{name}: photos top-1 {pv.get('top1', 0) * 100:.1f}% ({pv.get('images', 0)}), "
             f"hands read as no hand {pv.get('no_hand', 0) * 100:.1f}%"]
    if bg.get("images"):
        parts.append(f"backgrounds no hand {bg['no_hand'] * 100:.1f}% ({bg['images']})")
    if lm_err:
        parts.append(f"landmarks vs float {lm_err['mean_px']:.2f} px mean, "
                     f"{lm_err['p95_px']:.2f} px p95 (224 px input)")
    return "; ".join(parts)


# --------------------------------------------------------------------------- freeze
def freeze_hands(cfg, build_dir: Path) -> dict:
    from quantize.freeze import freeze_graph, read_manifest, tf115_problems, trained_model
    from toolchain.artifacts import atomic_write_json, provenance, staged_dir
    from toolchain.ladder import where_label
    t0 = time.monotonic()
    src, tf, model = trained_model(cfg, build_dir)
    train_dir = src.parent
    man = read_manifest(train_dir)
    refs = load_refs(S.inp(cfg, build_dir, "freeze", "heldout"))
    gd, inputs, outputs = freeze_graph(model)
    stripped, problems = tf115_problems(gd)
    if problems:
        raise UserError("freeze: the frozen graph has what TF 1.15 cannot read: "
                        + "; ".join(problems[:5]))
    threshold = man["recognition"]["threshold"]
    print("freeze: scoring the float network through the hand pipeline (photos_val)",
          flush=True)
    photos_dir = S.out(cfg, build_dir, "train", "photos_val")
    f_scores, f_hands = eval_rung(float_net(model), train_dir, man, threshold, photos_dir)
    crops = reference_crops(photos_dir, f_hands)
    ref_lm = _landmarks(float_net(model), crops)
    h5, pb = S.out(cfg, build_dir, "freeze", "model"), S.out(cfg, build_dir, "freeze", "frozen")
    out_dir = h5.parent
    calib = crops_of(refs["calib_files"], refs["calib_squares"], limit=64, seed=cfg.seed)
    ref_raw = float_net(model)(calib)
    with staged_dir(out_dir) as stage:
        model.save(str(stage / h5.name), include_optimizer=False, save_format="h5")
        (stage / pb.name).write_bytes(gd.SerializeToString())
        reloaded = tf.keras.models.load_model(str(stage / h5.name), compile=False)
        pb_gd = tf.compat.v1.GraphDef()
        pb_gd.ParseFromString((stage / pb.name).read_bytes())
        fnet = frozen_net(pb_gd, inputs[0], outputs[0])
        h5_diff = float(np.abs(float_net(reloaded)(calib) - ref_raw).max())
        pb_diff = float(np.abs(fnet(calib) - ref_raw).max())
        print("freeze: scoring the frozen graph through the hand pipeline", flush=True)
        z_scores, _ = eval_rung(fnet, train_dir, man, threshold, photos_dir)
        z_err = landmark_error(fnet, crops, ref_lm)
        io = {"input": inputs[0], "output": outputs[0],
              "input_shape": [None, H.NET_SIZE, H.NET_SIZE, 3],
              "output_shape": [None, H.RAW_WIDTH], "input_range": [0.0, 1.0],
              "output_kind": "hand landmarks (dpu_app.hands.decode)"}
        atomic_write_json(stage / S.out(cfg, build_dir, "freeze", "io").name, io)
        _bundle(stage, stage / h5.name, man, threshold, man["recognition"]["how"], train_dir)
        metrics = {"kind": "landmarks",
                   "scores": {"float": f_scores, "frozen": z_scores},
                   "landmarks": {"frozen": z_err},
                   "where": {"float": where_label(f"TF {tf.__version__}"),
                             "frozen": where_label("tf.compat.v1")},
                   "max_abs_diff_h5": h5_diff, "max_abs_diff_pb": pb_diff,
                   "tf115_attrs_stripped": stripped, "nodes": len(pb_gd.node),
                   "seconds": round(time.monotonic() - t0, 1)}
        atomic_write_json(stage / S.out(cfg, build_dir, "freeze", "metrics").name, metrics)
        atomic_write_json(stage / "provenance.json", provenance(
            "freeze", cfg, inputs={"model": {"path": str(src)}}))
    print(f"frozen: {out_dir / pb.name} (input '{inputs[0]}', output '{outputs[0]}', "
          f"{metrics['nodes']} nodes)")
    print(f"check on {len(calib)} hand crops: max |diff| vs the float network: .h5 "
          f"{h5_diff:.2e}, .pb {pb_diff:.2e} (outputs scaled for int8: dpu_app.hands.decode)")
    print(describe("float ", f_scores))
    print(describe("frozen", z_scores, z_err))
    return metrics


def _bundle(stage: Path, model_path: Path, man: dict, threshold: float, how: str,
            train_dir: Path) -> None:
    """labels, classifier (from `train_dir`, unless it is already in `stage`) and manifest
    beside a landmark network (freeze, quantize, compile): the folder is a complete bundle
    for dpu_app."""
    import shutil
    from dpu_app.contract import (LABELS_FILE, MANIFEST_FILE, Preprocess, make_manifest,
                                  sha256_file)
    from toolchain.artifacts import atomic_write_json, atomic_write_text
    clf = man["hands"]["classifier"]["file"]
    if (train_dir / clf).resolve() != (stage / clf).resolve():
        shutil.copy2(train_dir / clf, stage / clf)
    atomic_write_text(stage / LABELS_FILE, "\n".join(man["labels"]) + "\n")
    new = make_manifest(model_file=model_path.name, sha256=sha256_file(str(model_path)),
                        labels=man["labels"],
                        preprocess=Preprocess.from_dict(man["preprocess"], "manifest"),
                        threshold=threshold, how=how,
                        mirror=bool(man["recognition"].get("mirror")),
                        extra={"kind": "landmarks", "hands": man["hands"]})
    atomic_write_json(stage / MANIFEST_FILE, new)


# --------------------------------------------------------------------------- quantize
def quantize_hands(cfg, build_dir: Path) -> dict:
    from quantize.freeze import read_manifest
    from quantize.quantize import (_check_drop, _read_json, checked_model, quantizer_api,
                                   run_quantizer, vitis_inspect)
    from toolchain.artifacts import atomic_write_json, provenance, staged_dir
    from toolchain.runners import execution_context
    t0 = time.monotonic()
    src, tf, model, check = checked_model(cfg, build_dir)
    VitisQuantizer, quantize_scope, strategy, impl = quantizer_api()
    freeze_dir = src.parent
    freeze_m = _read_json(S.inp(cfg, build_dir, "quantize", "metrics")) or {}
    man = read_manifest(freeze_dir)
    if man.get("kind") != "landmarks":
        raise UserError(f"{freeze_dir}/manifest.json is not a landmark model's: run 'make "
                        f"freeze' again (model.kind changed?)")
    refs = load_refs(S.inp(cfg, build_dir, "quantize", "heldout"))
    threshold = man["recognition"]["threshold"]
    calib = crops_of(refs["calib_files"], refs["calib_squares"], limit=cfg.quantize.calib_size,
                     seed=cfg.seed + 7)
    import dataclasses
    qcfg = dataclasses.replace(cfg.quantize, include_fast_ft=cfg.quantize.landmarks_fast_ft)
    print(f"quantizing with {impl}: strategy {strategy}, {len(calib)} calibration hand crops "
          f"(first-pass and re-cut squares of training photos), CLE "
          f"{'on' if qcfg.include_cle else 'off'}, fast fine-tune "
          f"{'on' if qcfg.include_fast_ft else 'off'} (quantize.landmarks_fast_ft)", flush=True)
    from model.net import dpu_violations
    from quantize.dwsplit import split_depthwise
    deploy = split_depthwise(model, cfg.quantize.dw_split_groups,
                             cfg.quantize.conv_split_groups)
    problems = dpu_violations(deploy)
    if problems:
        raise UserError("DPU check failed on the split network: " + "; ".join(problems[:5]))
    probe = H.to_input(calib[:8])
    split_diff = float(np.abs(deploy.predict(probe, verbose=0) - model.predict(probe, verbose=0)
                              ).max())
    print(f"split for int8 (quantize/dwsplit.py): depthwise layers by weight magnitude into up "
          f"to {cfg.quantize.dw_split_groups} groups, expand convolutions by output channel "
          f"into up to {cfg.quantize.conv_split_groups}: {len(model.layers)} -> "
          f"{len(deploy.layers)} layers, the same function in float (max |diff| "
          f"{split_diff:.1e})", flush=True)
    if split_diff > 1e-3:
        raise UserError(f"the split network differs from the float network by {split_diff:.2g}"
                        f" (expected float rounding only): set quantize.conv_split_groups=1 "
                        f"and quantize.dw_split_groups=1, and report it")
    qmodel = run_quantizer(VitisQuantizer, quantize_scope, strategy, deploy,
                           H.to_input(calib), qcfg)
    del calib
    finetuned = finetune_int8(qmodel, model, refs, cfg) \
        if cfg.quantize.landmarks_finetune_steps else None
    q_out = S.out(cfg, build_dir, "quantize", "model")
    out_dir, q_name = q_out.parent, q_out.name
    photos_dir = S.out(cfg, build_dir, "train", "photos_val")
    with staged_dir(out_dir) as stage:
        qmodel.save(str(stage / q_name), include_optimizer=False)
        with quantize_scope():
            reloaded = tf.keras.models.load_model(str(stage / q_name), compile=False)
        print("quantize: scoring the float and the int8 network through the hand pipeline",
              flush=True)
        f_scores, f_hands = eval_rung(float_net(model), freeze_dir, man, threshold, photos_dir)
        crops = reference_crops(photos_dir, f_hands)
        ref_lm = _landmarks(float_net(model), crops)
        qnet = float_net(reloaded)
        q_err = landmark_error(qnet, crops, ref_lm)
        refit = {}
        if cfg.quantize.landmarks_refit_classifier:
            # the float classifier on int8 reads first: what the refit is worth, in the metrics
            pre_scores, _ = eval_rung(qnet, freeze_dir, man, threshold, photos_dir)
            print(describe("int8 with the float network's classifier", pre_scores), flush=True)
            import copy
            _, sha, secs = refit_classifier(qnet, refs, man, cfg, stage)
            man = copy.deepcopy(man)
            man["hands"]["classifier"]["sha256"] = sha
            man["hands"]["classifier"]["refit"] = "on the int8 network's reads (quantize)"
            clf_dir = stage
            refit = {"float_classifier": pre_scores, "seconds": round(secs, 1)}
        else:
            clf_dir = freeze_dir
        q_scores, q_hands = eval_rung(qnet, clf_dir, man, threshold, photos_dir)
        q_threshold, q_how = threshold, man["recognition"]["how"]
        if cfg.recognition.threshold is None and q_hands:
            from dpu_app import scoring
            pipe = pipeline_for(qnet, clf_dir, man)
            probs = pipe.probs(q_hands)
            q_threshold = scoring.calibrate_threshold(probs, man["labels"],
                                                      cfg.recognition.max_hand_rejection)
            q_how = (f"calibrated on the int8 network's own pipeline outputs (the float "
                     f"network's threshold was {threshold:.2f})")
            if abs(q_threshold - threshold) > 1e-9:
                q_scores, _ = eval_rung(qnet, clf_dir, man, q_threshold, photos_dir)
        atomic_write_json(stage / "dpu_check.json", dict(check, vitis_inspector=vitis_inspect(
            model, stage)))
        _bundle(stage, stage / q_name, man, q_threshold, q_how, clf_dir)
        lm = dict(freeze_m.get("landmarks") or {})
        lm["int8"] = q_err
        ladder = write_hands_ladder(build_dir, cfg, freeze_m, f_scores, q_scores, lm,
                                    {"float": threshold, "frozen": threshold,
                                     "int8": q_threshold}, impl)
        metrics = {"kind": "landmarks", "int8": q_scores, "float": f_scores,
                   "landmarks": lm, "calib_images": int(min(len(refs["calib_files"]),
                                                            cfg.quantize.calib_size)),
                   "classifier_refit": refit or None, "finetune": finetuned,
                   "quantizer": impl, "strategy": strategy, "where": execution_context(),
                   "seconds": round(time.monotonic() - t0, 1)}
        atomic_write_json(stage / S.out(cfg, build_dir, "quantize", "metrics").name, metrics)
        atomic_write_json(stage / "provenance.json", provenance(
            "quantize", cfg, inputs={"model": {"path": str(src)}}, extra={"quantizer": impl}))
        print(describe("float", f_scores))
        print(describe("int8 ", q_scores, q_err))
        _check_drop(cfg, ladder)
    print(f"quantized: {q_out}")
    return metrics


def finetune_int8(qmodel, model, refs: dict, cfg) -> dict:
    """quantize/finetune.py on the calibration squares of the training photos: one photo in
    eight (by file, seeded) only checks, the rest trains."""
    from quantize.finetune import finetune
    q = cfg.quantize
    files, squares = refs["calib_files"], refs["calib_squares"]
    names = np.unique(files)
    rng = np.random.default_rng(cfg.seed + 11)
    held = np.isin(files, rng.choice(names, max(1, len(names) // 8), replace=False))
    tr, ck = np.nonzero(~held)[0], np.nonzero(held)[0]
    tr = np.sort(rng.choice(tr, min(len(tr), q.landmarks_finetune_steps *
                                    q.landmarks_finetune_batch), replace=False))
    ck = np.sort(rng.choice(ck, min(len(ck), 256), replace=False))
    print(f"quantize: fine-tuning the int8 network toward the float one "
          f"({q.landmarks_finetune_steps} batches of {q.landmarks_finetune_batch} from "
          f"{len(tr)} hand crops, {len(ck)} crops of other photos to check; "
          f"quantize.landmarks_finetune_steps)", flush=True)
    res = finetune(qmodel, model, crops_of(files[tr], squares[tr]),
                   crops_of(files[ck], squares[ck]), q.landmarks_finetune_steps,
                   q.landmarks_finetune_batch, q.landmarks_finetune_lr, cfg.seed,
                   log=lambda m: print(m, flush=True))
    print(f"quantize: fine-tuned in {res['seconds']:.0f}s: landmarks vs float on the check "
          f"crops {res['check_px_before']:.2f} -> {res['check_px_after']:.2f} px"
          + ("" if res["kept"] else " (not closer: the calibrated weights are kept)"),
          flush=True)
    return res


def refit_classifier(qnet, refs: dict, man: dict, cfg, out_dir: Path):
    """The letter classifier trained again, as make train trains it, on what the int8
    network reads from the same training photos and start squares (the app's pipeline): the
    board's classifier then learns the landmarks the DPU gives, not the float network's.
    Writes out_dir/<classifier file>; returns (classifier, its sha256, seconds)."""
    from dpu_app.contract import NO_HAND, sha256_file
    from model.hand_classifier import train_classifier
    from model.hand_train import read_chunked
    t0 = time.monotonic()
    if "train_starts" not in refs:
        raise UserError("train/heldout.npz was written by an older release (no training "
                        "squares): run 'make train' again")
    files, ys = refs["train_files"], refs["train_letters"]
    starts = [H.Square(*[float(v) for v in sq]) for sq in refs["train_starts"]]
    letters = [lab for lab in man["labels"] if lab != NO_HAND]
    print(f"quantize: reading {len(files)} training hands with the int8 network "
          f"({cfg.hands.passes} passes each) to refit the letter classifier", flush=True)
    read = photo_reader(keep=512)
    lms = np.zeros((len(files), H.N_LANDMARKS, 3))
    pres = np.zeros(len(files))
    for i, h in read_chunked([lambda f=f: read(f) for f in files], starts, qnet, cfg):
        lms[i], pres[i] = h.landmarks, h.presence
    keep = pres >= cfg.hands.presence
    clf = train_classifier(lms[keep], ys[keep], letters, cfg.hands.classifier, cfg.seed)
    path = out_dir / man["hands"]["classifier"]["file"]
    np.savez(path, **clf.save_arrays())
    secs = time.monotonic() - t0
    print(f"quantize: classifier refit on {int(keep.sum())} int8 reads ({int((~keep).sum())} "
          f"below hand presence) in {secs:.0f}s", flush=True)
    return clf, sha256_file(str(path)), secs


def _landmarks(net, crops):
    if not len(crops):
        return np.zeros((0, H.N_LANDMARKS, 3), np.float32)
    return np.concatenate([H.decode(net(crops[i:i + 32]))[0] for i in range(0, len(crops), 32)])


def write_hands_ladder(build_dir: Path, cfg, freeze_m: dict, f_scores: dict, q_scores: dict,
                       lm: dict, thresholds: dict, impl: str) -> dict:
    from toolchain import ladder as L
    sc, where = freeze_m.get("scores", {}), freeze_m.get("where", {})
    art = {name: S.STAGES[st].outputs(cfg)[key] for name, st, key in
           (("float", "train", "model"), ("frozen", "freeze", "frozen"),
            ("int8", "quantize", "model"))}
    rungs = [L.rung("float", art["float"], where.get("float", "?"), f_scores or sc.get("float")),
             L.rung("frozen", art["frozen"], where.get("frozen", "?"), sc.get("frozen")),
             L.rung("int8", art["int8"], L.where_label(impl), q_scores),
             L.rung("board", "compile/<name>.xmodel", "ZCU104 DPU via VART (make board-bench)",
                    None)]
    for r in rungs:
        if lm.get(r["rung"]):
            r["landmark_px"] = lm[r["rung"]]
    images = {k: (f_scores.get(k) or {}).get("images") for k in ("photos_val", "no_hand_val")}
    ladder = L.build(rungs, images, {"photos_val": cfg.quantize.max_photo_drop_pt}, thresholds)
    ladder["kind"] = "landmarks"
    L.write(build_dir, ladder)
    return ladder
