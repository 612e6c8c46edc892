"""A short real training run on a subset, its bundle, and resume after a kill / Ctrl-C."""
import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import QUICK_TRAIN as QUICK
from dpu_app.contract import LETTERS, NO_HAND


def run(repo_root, build, *extra, **kw):
    return subprocess.run([sys.executable, "-m", "toolchain", "train", "--build-dir", str(build),
                           *QUICK, *extra], cwd=repo_root, capture_output=True, text=True, **kw)


def _default_sigint():
    # Ctrl-C at a terminal: SIGINT at its default. A test run started as a background job of
    # a script (`.ci/run &`) inherits SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(repo_root, build, *extra):
    return subprocess.Popen([sys.executable, "-m", "toolchain", "train", "--build-dir",
                             str(build), *QUICK, *extra], cwd=repo_root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def saved_epoch(state_file) -> int:
    try:
        return json.loads(state_file.read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def stop_after_epoch(state_file, epoch, proc, timeout=300):
    """SIGSTOP the run as soon as epoch `epoch` is checkpointed: frozen, it can neither finish
    nor checkpoint more while the test signals it. Returns the checkpointed epoch."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if saved_epoch(state_file) >= epoch:
            proc.send_signal(signal.SIGSTOP)
            return saved_epoch(state_file)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def test_short_training_beats_chance_widely(small_build):
    build, r = small_build
    out = build / "train"
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_images"] == 1200 and m["classes"] == [*LETTERS, NO_HAND]
    assert m["test_accuracy"] > 0.5, m                  # chance is 1/25 = 4 %
    assert "Sign MNIST test" in r.stdout and "real photos" in r.stdout and "epoch  lr" in r.stdout
    for name in ("model.h5", "labels.txt", "manifest.json", "heldout.npz", "history.csv",
                 "history.json", "curves.png", "confusion.png", "metrics.json",
                 "provenance.json", "config.yaml", "photos_val/manifest.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "labels.txt").read_text().split() == [*LETTERS, NO_HAND]
    man = json.loads((out / "manifest.json").read_text())
    assert man["model"]["file"] == "model.h5" and man["preprocess"]["width"] == 28
    assert man["recognition"]["threshold"] == m["threshold"]
    assert man["recognition"]["no_hand_label"] == NO_HAND
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["inputs"]["train_csv"]["sha256"].startswith("4c2897f1")
    assert prov["inputs"]["photos"][0]["path"] == "data/asl_photos"
    assert prov["versions"]["tensorflow"].startswith("2.12")
    assert len(json.loads((out / "history.json").read_text())) == 4
    sets = m["sets"]
    assert sets["photos_val"]["images"] == m["photo_val_images"] > 0
    assert set(sets["photos_val"]["per_letter"]) <= set(LETTERS)
    assert sets["no_hand_val"]["images"] > 0
    assert not (build / "train.resume").exists()           # cleaned after success
    assert not [p for p in build.iterdir() if ".partial-" in p.name]


def test_reported_figures_are_the_saved_models_at_the_stored_threshold(small_build):
    """metrics.json's photo figures are what the saved model does at the threshold the
    manifest hands to the app (recomputed here from the model file and heldout.npz)."""
    import numpy as np
    import tensorflow as tf
    from dpu_app import scoring
    from dpu_app.contract import softmax
    from model.evaluate import load_heldout
    build, _ = small_build
    m = json.loads((build / "train" / "metrics.json").read_text())
    man = json.loads((build / "train" / "manifest.json").read_text())
    t = man["recognition"]["threshold"]
    classes, sets = load_heldout(build / "train" / "heldout.npz")
    model = tf.keras.models.load_model(str(build / "train" / "model.h5"), compile=False)
    for name in ("photos_val", "no_hand_val"):
        x, y = sets[name]
        def infer(b):
            return softmax(model.predict((b / 255.0).astype("float32")[..., None], verbose=0))
        p = scoring.app_probs(infer, x, man["recognition"]["mirror"])
        top, shown = scoring.decide(p, list(classes), t)
        assert m["sets"][name]["no_hand"] == pytest.approx((~shown).mean(), abs=1e-5)
        if y is not None:
            assert m["sets"][name]["accuracy"] == pytest.approx((top == y).mean(), abs=1e-5)
            assert np.array_equal(sets[name][0].shape[1:], (28, 28))


def test_saved_h5_scores_what_metrics_say(small_build, repo_root):
    """Load the .h5 the way an outsider would: Kaggle CSV, labels.txt and the manifest's
    mirror flag (the app averages each image with its mirror image when it is set)."""
    build, _ = small_build
    code = f"""
import gzip, json, numpy as np, tensorflow as tf, string
m = tf.keras.models.load_model({str(build / 'train' / 'model.h5')!r}, compile=False)
labels = open({str(build / 'train' / 'labels.txt')!r}).read().split()
rows = np.loadtxt(gzip.open({str(repo_root / 'data/sign_mnist/sign_mnist_test.csv.gz')!r}), delimiter=',', skiprows=1, max_rows=1200)
x = (rows[:, 1:] / 255.0).reshape(-1, 28, 28, 1).astype('float32')
truth = [string.ascii_uppercase[int(v)] for v in rows[:, 0]]
mirror = json.load(open({str(build / 'train' / 'manifest.json')!r}))['recognition']['mirror']
sm = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
p = sm(m.predict(x, verbose=0))
if mirror:
    p = (p + sm(m.predict(x[:, :, ::-1], verbose=0))) / 2
pred = [labels[i] for i in p.argmax(1)]
print(np.mean([a == b for a, b in zip(pred, truth)]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((build / "train" / "metrics.json").read_text())
    assert float(r.stdout.strip().splitlines()[-1]) == pytest.approx(metrics["test_accuracy"],
                                                                      abs=1e-5)  # 5 digits kept


def test_resume_after_kill_and_interrupt(tmp_path, repo_root):
    build = tmp_path / "b"
    state = build / "train.resume" / "state.json"
    epochs = ["--set", "train.epochs=4"]
    # 1) killed hard after the first epoch: nothing finished-looking, a checkpoint to resume
    p = start(repo_root, build, *epochs)
    done = stop_after_epoch(state, 1, p)
    p.kill()
    p.communicate()
    assert not (build / "train").exists()
    saved = json.loads(state.read_text())
    assert saved["epoch"] == done >= 1
    # 2) Ctrl-C in the resumed run, delivered while it is frozen after an epoch (so it cannot
    #    finish first): one clear line, exit 130, still resumable
    p = start(repo_root, build, *epochs)
    at = stop_after_epoch(state, done + 1, p)
    assert at < 4, "the run had finished all epochs before it could be interrupted"
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGCONT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, out + err
    assert f"resuming after epoch {done}" in out
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: training interrupted"), err
    assert "Traceback" not in err and "run the same command again to resume" in lines[0]
    assert not (build / "train").exists()
    # 3) the same command finishes from the checkpoint and keeps the earlier epochs' history
    done2 = saved_epoch(state)
    r = run(repo_root, build, *epochs)
    assert r.returncode == 0, r.stderr
    assert f"resuming after epoch {done2}" in r.stdout
    hist = json.loads((build / "train" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[0] == saved["history"][0]
    assert not (build / "train.resume").exists()


def test_changed_config_does_not_resume(tmp_path, repo_root):
    build = tmp_path / "b"
    p = start(repo_root, build, "--set", "train.epochs=3")
    stop_after_epoch(build / "train.resume" / "state.json", 1, p)
    p.kill()
    p.communicate()
    r = run(repo_root, build, "--set", "train.epochs=2", "--set", "data.train_limit=1200")
    assert r.returncode == 0, r.stderr
    assert "not resuming the interrupted run" in r.stdout and "config changed" in r.stdout


def test_same_seed_same_model(tmp_path, repo_root, small_build):
    """Deterministic for a seed: a second run of the same config gives the same weights."""
    import hashlib
    import h5py
    b2 = tmp_path / "again"
    r = run(repo_root, b2, "--set", "train.epochs=4")
    assert r.returncode == 0, r.stderr

    def weights(path):
        h = hashlib.sha256()
        with h5py.File(path, "r") as f:
            f.visititems(lambda n, o: h.update(o[()].tobytes()) if hasattr(o, "shape") else None)
        return h.hexdigest()
    assert weights(b2 / "train" / "model.h5") == weights(small_build[0] / "train" / "model.h5")
