"""A short real training run on a subset, and resume after a kill / Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import QUICK_TRAIN as QUICK


def run(repo_root, build, *extra, **kw):
    return subprocess.run([sys.executable, "-m", "toolchain", "train", "--build-dir", str(build),
                           *QUICK, *extra], cwd=repo_root, capture_output=True, text=True, **kw)


def start(repo_root, build, *extra):
    return subprocess.Popen([sys.executable, "-m", "toolchain", "train", "--build-dir",
                             str(build), *QUICK, *extra], cwd=repo_root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(state_file, epoch, proc, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if state_file.exists():
            try:
                if json.loads(state_file.read_text())["epoch"] >= epoch:
                    return
            except (ValueError, KeyError):
                pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def killed_after_epoch(repo_root, build, epoch, *extra):
    """Start a training run, SIGKILL it once epoch `epoch` is checkpointed."""
    p = start(repo_root, build, *extra)
    wait_for_epoch(build / "train.resume" / "state.json", epoch, p)
    p.send_signal(signal.SIGKILL)
    p.wait()


@pytest.fixture(scope="module")
def trained(small_build):
    return small_build


def test_short_training_beats_chance_widely(trained):
    build, r = trained
    out = build / "train"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_images"] == 1200
    assert metrics["test_accuracy"] > 0.6, metrics        # chance is 1/24 = 4.2 %
    assert "test accuracy" in r.stdout and "epoch  lr" in r.stdout
    for name in ("model.h5", "labels.txt", "history.csv", "history.json", "curves.png",
                 "confusion.png", "metrics.json", "provenance.json", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "labels.txt").read_text().split() == list("ABCDEFGHIKLMNOPQRSTUVWXY")
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["inputs"]["train_csv"]["sha256"].startswith("4c2897f1")
    assert prov["versions"]["tensorflow"].startswith("2.12")
    assert prov["config"]["train"]["epochs"] == 4
    assert len(json.loads((out / "history.json").read_text())) == 4
    assert set(metrics["per_letter_accuracy"]) == set("ABCDEFGHIKLMNOPQRSTUVWXY")
    assert not (build / "train.resume").exists()           # cleaned after success
    assert not [p for p in build.iterdir() if ".partial-" in p.name]


def test_saved_h5_scores_what_metrics_say(trained, repo_root):
    """Load the .h5 the way an outsider would: Kaggle CSV + letters only."""
    build, _ = trained
    code = f"""
import gzip, numpy as np, tensorflow as tf, string
m = tf.keras.models.load_model({str(build / 'train' / 'model.h5')!r}, compile=False)
letters = open({str(build / 'train' / 'labels.txt')!r}).read().split()
rows = np.loadtxt(gzip.open({str(repo_root / 'data/sign_mnist/sign_mnist_test.csv.gz')!r}), delimiter=',', skiprows=1, max_rows=1200)
x = (rows[:, 1:] / 255.0).reshape(-1, 28, 28, 1).astype('float32')
truth = [string.ascii_uppercase[int(v)] for v in rows[:, 0]]
pred = [letters[i] for i in m.predict(x, verbose=0).argmax(1)]
print(np.mean([a == b for a, b in zip(pred, truth)]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((build / "train" / "metrics.json").read_text())
    assert float(r.stdout.strip().splitlines()[-1]) == pytest.approx(metrics["test_accuracy"], abs=1e-9)


def test_resume_after_kill_and_interrupt(tmp_path, repo_root):
    build = tmp_path / "b"
    state = build / "train.resume" / "state.json"
    # 1) killed hard after the first epoch: nothing finished-looking, a checkpoint to resume
    killed_after_epoch(repo_root, build, 1, "--set", "train.epochs=3")
    assert not (build / "train").exists()
    saved = json.loads(state.read_text())
    done = saved["epoch"]
    assert done >= 1
    # 2) Ctrl-C in the resumed run: one clear line, exit 130, still resumable
    p = start(repo_root, build, "--set", "train.epochs=3")
    wait_for_epoch(state, done + 1, p) if done < 2 else time.sleep(3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    if p.returncode == 0:      # it finished before the signal landed: nothing to interrupt
        pytest.skip("run finished before Ctrl-C arrived")
    assert p.returncode == 130, err
    assert f"resuming after epoch {done}" in out
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: training interrupted"), err
    assert "Traceback" not in err
    assert "run the same command again to resume" in lines[0]
    assert not (build / "train").exists()
    # 3) the same command finishes from the checkpoint and keeps the earlier epochs' history
    done2 = json.loads(state.read_text())["epoch"]
    r = run(repo_root, build, "--set", "train.epochs=3")
    assert r.returncode == 0, r.stderr
    assert f"resuming after epoch {done2}" in r.stdout
    hist = json.loads((build / "train" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[0] == saved["history"][0]
    assert not (build / "train.resume").exists()


def test_changed_config_does_not_resume(tmp_path, repo_root):
    build = tmp_path / "b"
    killed_after_epoch(repo_root, build, 1, "--set", "train.epochs=3")
    r = run(repo_root, build, "--set", "train.epochs=2", "--set", "data.train_limit=1200")
    assert r.returncode == 0, r.stderr
    assert "not resuming the interrupted run" in r.stdout and "config changed" in r.stdout
