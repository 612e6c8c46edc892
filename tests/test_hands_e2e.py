"""model.kind landmarks end to end on a few real photos: make train's stage (the shipped
network converted, read through the app's hand pipeline, cached), the app scoring the same
photos with --eval-photos, freeze and quantize (vai_q pof2s on hand crops, every rung through
the pipeline), the bundle a board gets, and the bad inputs (altered network file, damaged
cache, a photo with no hand)."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dpu_app.contract import LETTERS, NO_HAND

QUICK_HANDS = ["--set", "runner=host", "--set", "model.kind=landmarks",
               "--set", "data.photo_limit=72", "--set", "data.background_crops=1",
               "--set", "hands.passes=2", "--set", "hands.jitter_copies=0",
               "--set", "hands.classifier.steps=300", "--set", "quantize.calib_size=32",
               "--set", "quantize.calib_batch_size=8", "--set", "quantize.include_fast_ft=false",
               "--set", "quantize.max_photo_drop_pt=100",
               "--set", "quantize.landmarks_finetune_steps=2",
               "--set", "quantize.landmarks_finetune_batch=4"]


def stage(repo_root, name, build, *extra):
    return subprocess.run([sys.executable, "-m", "toolchain", name, "--build-dir", str(build),
                           *QUICK_HANDS, *extra], cwd=repo_root, capture_output=True, text=True)


@pytest.fixture(scope="module")
def hand_build(repo_root, tmp_path_factory):
    build = tmp_path_factory.mktemp("hands")
    r = stage(repo_root, "train", build)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return build, r


def test_train_writes_a_landmark_bundle_that_reads_hands(hand_build):
    build, r = hand_build
    out = build / "train"
    m = json.loads((out / "metrics.json").read_text())
    assert m["kind"] == "landmarks" and m["classes"] == [*LETTERS, NO_HAND]
    pv = m["sets"]["photos_val"]
    assert pv["images"] > 0 and pv["top1"] > 0.3, pv        # chance is 1/24
    assert m["sets"]["no_hand_val"]["no_hand"] > 0.8
    for name in ("model.h5", "classifier.npz", "labels.txt", "manifest.json", "heldout.npz",
                 "confusion.png", "provenance.json", "photos_val/manifest.csv"):
        assert (out / name).stat().st_size > 0, name
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "landmarks" and man["preprocess"]["width"] == 224
    assert man["hands"]["passes"] == 2 and man["hands"]["classifier"]["file"] == "classifier.npz"
    assert "reading" in r.stdout and "real photos" in r.stdout


def test_a_second_training_reads_nothing_again_and_a_damaged_cache_is_rebuilt(repo_root,
                                                                              hand_build):
    build, _ = hand_build
    again = build.parent / (build.name + "-again")
    shutil.copytree(build / "cache", again / "cache")
    r = stage(repo_root, "train", again)
    assert r.returncode == 0, r.stderr[-2000:]
    assert " 0 cached" not in r.stdout and "read in" not in r.stdout      # all from cache
    first = json.loads((build / "train" / "metrics.json").read_text())
    second = json.loads((again / "train" / "metrics.json").read_text())
    assert first["sets"]["photos_val"]["top1"] == second["sets"]["photos_val"]["top1"]
    for f in (again / "cache" / "hands").iterdir():
        f.write_bytes(b"garbage")
    r = stage(repo_root, "train", again)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "cache" in r.stdout and "damaged" in r.stdout and "read in" in r.stdout


def test_the_app_scores_the_validation_photos_as_training_did(repo_root, hand_build):
    build, _ = hand_build
    out = build / "train"
    res = build / "eval.json"
    r = subprocess.run([sys.executable, "-m", "dpu_app", "--model", str(out / "model.h5"),
                        "--eval-photos", str(out / "photos_val"), "--json", str(res)],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(res.read_text())["sets"]["photos_val"]
    m = json.loads((out / "metrics.json").read_text())["sets"]["photos_val"]
    assert got["images"] == m["images"]
    # the app retries a missed hand with other guide sizes; training reads once
    assert got["top1"] >= m["top1"] - 1e-9


@pytest.fixture(scope="module")
def quantized(repo_root, hand_build):
    build, _ = hand_build
    r = stage(repo_root, "freeze", build)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = stage(repo_root, "quantize", build)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return build


def test_freeze_and_quantize_score_every_rung_through_the_pipeline(quantized):
    build = quantized
    fm = json.loads((build / "freeze" / "metrics.json").read_text())
    assert fm["max_abs_diff_pb"] < 1e-3 and fm["landmarks"]["frozen"]["mean_px"] < 0.01
    ladder = json.loads((build / "ladder" / "ladder.json").read_text())
    rungs = {x["rung"]: x for x in ladder["rungs"]}
    assert rungs["int8"]["accuracy"]["photos_val"] is not None
    assert rungs["int8"]["landmark_px"]["mean_px"] > 0          # int8 is not the float network
    qdir = build / "quantize"
    man = json.loads((qdir / "manifest.json").read_text())
    assert man["kind"] == "landmarks" and (qdir / "classifier.npz").is_file()
    # the classifier the board gets was refit on the int8 network's reads: its own file and
    # checksum, not the float network's
    from dpu_app.contract import sha256_file
    clf = man["hands"]["classifier"]
    assert clf["sha256"] == sha256_file(str(qdir / "classifier.npz")) and "refit" in clf
    assert clf["sha256"] != sha256_file(str(build / "train" / "classifier.npz"))
    qm = json.loads((qdir / "metrics.json").read_text())
    assert qm["classifier_refit"]["float_classifier"]["photos_val"]["images"] > 0
    # the quantize-aware fine-tuning ran inside the stage, checked on crops it did not train on
    ft = qm["finetune"]
    assert ft["steps"] == 2 and ft["batch"] == 4 and ft["check_images"] > 0, ft
    assert ft["check_px_before"] > 0 and isinstance(ft["kept"], bool)
    assert json.loads((qdir / "dpu_check.json").read_text())["ok"]
    assert "Landmark error" in (build / "ladder" / "ladder.md").read_text()


def test_an_altered_network_file_is_one_error_line(repo_root, tmp_path, monkeypatch):
    """The stage checks the shipped .tflite against SHA256SUMS before any work."""
    import model.handnet as hn
    altered = tmp_path / "hand_landmark_full.tflite"
    altered.write_bytes(hn.network_path("full").read_bytes()[:-10] + b"0123456789")
    from toolchain.errors import UserError
    with pytest.raises(UserError, match="hand_landmark_full.tflite.*(checkout|extract)"):
        hn.check_network(altered)


def test_a_photo_without_a_hand_counts_as_no_hand(tmp_path):
    """A blank picture in a letter folder is scored (a hand read as 'no hand'), not a crash."""
    import cv2
    from dpu_app import hands as H
    from dpu_app.evaluate import eval_hands
    (tmp_path / "A").mkdir()
    cv2.imwrite(str(tmp_path / "A" / "blank.jpg"), np.full((240, 320, 3), 90, np.uint8))

    def net(crops):                                  # a network that never finds a hand
        return H.encode(np.zeros((len(crops), 21, 3)) + 112, np.full(len(crops), -9.0),
                        np.zeros(len(crops)))
    clf = H.LetterClassifier([(np.zeros((60, 24), np.float32), np.zeros(24, np.float32))],
                             LETTERS)
    pipe = H.HandPipeline(net, clf, list(LETTERS) + [NO_HAND], H.Constants())
    res = eval_hands(pipe, str(tmp_path), 0.5)
    assert res["photos_val"]["images"] == 1 and res["photos_val"]["no_hand"] == 1.0


def test_the_board_app_runs_the_int8_network_through_vart_like_the_host(quantized, tmp_path,
                                                                          monkeypatch):
    """The compile contract for the landmark network, by emulation: an xmodel whose one DPU
    subgraph runs the quantized network (tests/fake_vart), int8 in at the input's fix point,
    65 raw values out; the app's vart backend must score the validation photos as the host
    backend scores the same quantized model."""
    from vart_emulation import (drop_fake_vart, quant_fix_points, use_fake_vart,
                                write_emulated_xmodel)
    from dpu_app import app
    build = quantized
    qdir, photos = build / "quantize", build / "train" / "photos_val"
    q_h5 = qdir / "quantized.h5"
    in_fix, out_fix = quant_fix_points(str(q_h5))
    assert in_fix == 7                          # pixels / 256 fit int8 at fix point 7
    board = tmp_path / "model"
    board.mkdir()
    xm = write_emulated_xmodel(board / "signnet.xmodel", q_h5=str(q_h5), in_fix=in_fix,
                               out_fix=out_fix, classes=65, in_dims=[1, 224, 224, 3])
    man = json.loads((qdir / "manifest.json").read_text())
    man.pop("model")
    from dpu_app.contract import sha256_file
    man.update({"xmodel": {"file": xm.name, "sha256": sha256_file(str(xm))},
                "input": {"name": "quant_image", "shape": [1, 224, 224, 3], "dtype": "xint8",
                          "fix_point": in_fix},
                "output": {"name": "quant_logits", "shape": [1, 65], "dtype": "xint8",
                           "fix_point": out_fix}})
    (board / "manifest.json").write_text(json.dumps(man))
    shutil.copy2(qdir / "classifier.npz", board / "classifier.npz")
    shutil.copy2(qdir / "labels.txt", board / "labels.txt")
    host_json, board_json = tmp_path / "host.json", tmp_path / "board.json"
    assert app.main(["--model", str(q_h5), "--eval-photos", str(photos), "--json",
                     str(host_json), "--eval-backgrounds", "0"]) == 0
    use_fake_vart(monkeypatch)
    try:
        assert app.main(["--model", str(xm), "--backend", "vart", "--eval-photos", str(photos),
                         "--json", str(board_json), "--eval-backgrounds", "0"]) == 0
    finally:
        drop_fake_vart()
    host = json.loads(host_json.read_text())["sets"]["photos_val"]
    dpu = json.loads(board_json.read_text())["sets"]["photos_val"]
    assert dpu["images"] == host["images"] > 0
    # int8 in/out scaling on the emulated DPU vs the quantizer's own float simulation
    assert abs(dpu["top1"] - host["top1"]) <= 1.0 / host["images"] + 1e-9
