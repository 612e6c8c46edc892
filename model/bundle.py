"""The end of training: save the model, score the saved file, calibrate the app's threshold,
and write `<build>/train/` (a complete host bundle for the app, plus reports).

    model.h5        the float model (Keras 2 HDF5), input `image` SxSx1 in [0,1], output logits
    labels.txt      one class a line, in output order (24 letters, then `nothing`)
    manifest.json   what the app reads beside the model: labels, preprocessing, threshold
    metrics.json    every held-out set (Sign MNIST test and validation, photo validation,
                    backgrounds), per letter, the threshold and how it was chosen
    heldout.npz     the held-out sets as model inputs (uint8 SxS): Sign MNIST test, photo
                    validation crops, background crops; every later rung (frozen, int8) is
                    scored on exactly these
    photos_val/     the validation photos as a photo folder of their own (letter folders +
                    manifest.csv): `make eval-photos` and the board score these JPEGs through
                    the app's own pipeline
    history.csv/.json, curves.png, confusion.png, config.yaml, provenance.json
"""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from dpu_app import scoring
from dpu_app.contract import LABELS_FILE, MANIFEST_FILE, Preprocess, make_manifest, sha256_file
from model import evaluate as E
from model import reports
from model.steps import Steps
from toolchain.artifacts import atomic_write_json, atomic_write_text, provenance, staged_dir
from toolchain import stages as S
from toolchain.config import to_dict



def write_model_bundle(stage: Path, model_path: Path, classes, input_shape, threshold: float,
                       how: str, mirror: bool) -> dict:
    """labels.txt and manifest.json beside a saved model (train, freeze and quantize use it);
    input_shape (H, W, C) gives the preprocessing: grey for 1 channel, BGR for 3."""
    atomic_write_text(stage / LABELS_FILE, "\n".join(classes) + "\n")
    man = make_manifest(model_file=model_path.name, sha256=sha256_file(str(model_path)),
                        labels=list(classes), preprocess=Preprocess.for_input(input_shape),
                        threshold=threshold, how=how, mirror=mirror)
    atomic_write_json(stage / MANIFEST_FILE, man)
    return man


def finish(cfg, tf, model, data, run, t_start: float, out_dir: Path) -> dict:
    """Save, reload, evaluate, calibrate and report, into a staging dir swapped in at the end."""
    history = run.history
    train_seconds = history[-1]["elapsed_s"] if history else 0.0
    with staged_dir(out_dir) as stage:
        names = {k: Path(v).name for k, v in S.STAGES["train"].outputs(cfg).items()}
        model_path = stage / names["model"]
        model.save(str(model_path), include_optimizer=False, save_format="h5")
        saved = tf.keras.models.load_model(str(model_path), compile=False)   # score the file
        preds = E.predict_sets(Steps(saved).logits, data, mirror=cfg.recognition.mirror)
        threshold, how = E.calibrate(preds, data.classes, cfg.recognition)
        scores = E.score_sets(preds, data.classes, threshold)
        write_model_bundle(stage, model_path, data.classes,
                           (data.size, data.size, data.channels), threshold, how,
                           cfg.recognition.mirror)
        test = scores["sign_mnist_test"]
        metrics = {
            "test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "test_top3_accuracy": test["top3"], "test_images": test["images"],
            "val_accuracy": scores.get("sign_mnist_val", {}).get("accuracy"),
            "photo_val_accuracy": scores.get("photos_val", {}).get("accuracy"),
            "photo_val_top3": scores.get("photos_val", {}).get("top3"),
            "photo_val_images": scores.get("photos_val", {}).get("images", 0),
            "photo_val_sources": data.photos.val_sources if data.photos else 0,
            "threshold": threshold, "threshold_how": how,
            "sets": scores,
            "per_letter_accuracy": test["per_letter"],
            "classes": list(data.classes), "input_size": data.size,
            "epochs_run": len(history), "best_epoch": run.best["epoch"],
            "stopped_early": run.stopped_early,
            "train_seconds": round(train_seconds, 1),
            "stage_seconds": round(time.monotonic() - t_start, 1),
            "params": int(model.count_params()),
            "notes": reports.overfit_notes(history, scores, cfg.train.overfit_gap),
        }
        _write_reports(stage, history, preds, scores, data, run)
        atomic_write_json(stage / "metrics.json", metrics)
        write_heldout(stage / names["heldout"], data)
        if data.photos is not None:
            export_photo_folder(data.photos.val_files, stage / names["photos_val"])
        atomic_write_text(stage / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        atomic_write_json(stage / "provenance.json", provenance("train", cfg, inputs=_inputs(
            cfg, data), extra={"outputs": sorted(p.name for p in stage.iterdir())}))
    _print_summary(metrics, scores, out_dir)
    return metrics


def write_heldout(path: Path, data) -> None:
    from model.evaluate import heldout_arrays
    import numpy as np
    from toolchain.artifacts import atomic_file
    with atomic_file(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, classes=np.array(data.classes), **heldout_arrays(data))


def export_photo_folder(files: list, out: Path) -> None:
    """Copy photos (config-relative paths, e.g. data/asl_photos/A/x.jpg) into `out` as a photo
    folder of their own: letter folders plus the manifest rows of exactly these photos."""
    import csv
    import io
    import shutil
    from toolchain.config import resolve_path
    rows_by_root: dict = {}
    for f in files:
        letter_dir, name = Path(f).parent, Path(f).name
        root = letter_dir.parent
        rows_by_root.setdefault(root, set()).add(f"{letter_dir.name}/{name}")
        (out / letter_dir.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(resolve_path(f), out / letter_dir.name / name)
    header, rows = None, []
    for root, rels in rows_by_root.items():
        man = resolve_path(str(root)) / "manifest.csv"
        if not man.is_file():
            continue
        with open(man, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = header or reader.fieldnames
            rows += [r for r in reader if r["file"] in rels]
    if header:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(out / "manifest.csv", buf.getvalue())


def _inputs(cfg, data) -> dict:
    out = {"train_csv": {"path": cfg.data.train_csv, "sha256": data.kaggle_train.sha256},
           "test_csv": {"path": cfg.data.test_csv, "sha256": data.kaggle_test.sha256}}
    if data.photos:
        out["photos"] = data.photos.folders
    return out


def _write_reports(stage: Path, history, preds, scores, data, run) -> None:
    reports.write_history(history, stage / "history.csv", stage / "history.json")
    reports.plot_curves(history, stage / "curves.png", run.best["epoch"])
    panels = []
    for name, title in (("sign_mnist_test", "Sign MNIST test"),
                        ("photos_val", "real photos, validation")):
        if name in preds:
            logits, y = preds[name]
            panels.append((title, E.confusion(y, logits.argmax(1), len(data.classes)),
                           scores[name]["accuracy"]))
    reports.plot_confusion(panels, data.classes, stage / "confusion.png")


def _print_summary(m: dict, scores: dict, out_dir: Path) -> None:
    print(f"\n{E.headline(scores)}")
    print(f"app threshold {m['threshold']:.2f}: {m['threshold_how']}")
    for name, title in (("sign_mnist_test", "Sign MNIST test"), ("photos_val", "photos")):
        s = scores.get(name)
        worst = scoring.weakest(s["per_letter"], 3) if s and s.get("images") else []
        if worst:
            print(f"weakest letters ({title}): "
                  + ", ".join(f"{k} {v * 100:.0f}%" for k, v in worst))
    for n in m["notes"]:
        print(f"note: {n}")
    print(f"{timing(m['train_seconds'], m['stage_seconds'])}; outputs in {out_dir}/")


def timing(train_s: float, stage_s: float) -> str:
    """Training time counts the epochs of an interrupted run this one resumed from; the
    stage's time is this run's: say so rather than print a training longer than its stage."""
    if train_s > stage_s:
        return (f"training {train_s:.0f}s including the interrupted run it resumed from, this "
                f"run {stage_s:.0f}s")
    return f"training {train_s:.0f}s, whole stage {stage_s:.0f}s"
