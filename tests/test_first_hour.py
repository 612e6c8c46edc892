"""What a new user met in the first hour on a fresh clone (PC side), each closed and kept so:
no command spends minutes before it finds out it cannot finish, a target that will train first
says so, where stages run is not a config change, and the faults are one line naming the fix."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_stages import CHAIN, make_fresh, make_n
from toolchain import makedeps, runners
from toolchain import stages as S
from toolchain.config import load_config
from toolchain.errors import NeedsImage

REPO = Path(__file__).resolve().parent.parent
NOWHERE = "unix:///nonexistent/docker.sock"     # no engine, whether or not one runs here


def no_engine_env(tmp_path, **extra):
    """No Docker engine, and no Vitis AI compiler on PATH."""
    return dict(os.environ, DOCKER_HOST=NOWHERE, TOOLCHAIN_IN_CONTAINER="", **extra)


def run_make(build, *goals, env=None, timeout=120):
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *goals,
                           f"BUILD={build}", f"PY={sys.executable}", "VENV_OK="],
                          capture_output=True, text=True, timeout=timeout,
                          env=env or os.environ.copy(), stdin=subprocess.DEVNULL)


def errors(stderr: str) -> list:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


@pytest.fixture
def fresh(tmp_path):
    make_fresh(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- 1. make pipeline

def test_pipeline_without_from_to_redoes_only_what_is_out_of_date(fresh):
    """`make pipeline` used to run train -> freeze -> quantize -> compile from scratch with
    everything up to date; without FROM/TO it is make compile."""
    plan, out = make_n(fresh, "pipeline")
    assert plan == [] and "toolchain run" not in out
    assert make_n(fresh, "pipeline", sets=["quantize.calib_size=500"])[0] == ["quantize",
                                                                              "compile"]
    # FROM/TO: that stretch again, as asked (and said)
    _, out = make_n(fresh, "pipeline", "FROM=freeze", "TO=quantize")
    assert "-m toolchain run --from freeze --to quantize" in out


def test_a_pipeline_stretch_with_compile_checks_the_image_before_training(tmp_path):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "toolchain", "run", "--build-dir",
                        str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True,
                       env=no_engine_env(tmp_path, PATH=os.path.dirname(sys.executable)),
                       timeout=120)
    assert r.returncode == 2 and len(errors(r.stderr)) == 1, r.stderr
    assert errors(r.stderr)[0].startswith("error: no Docker engine answers")
    assert "Traceback" not in r.stderr and not (tmp_path / "b" / "train").exists()
    assert time.monotonic() - t0 < 60                                  # not after a training


# --------------------------------------------------------------------------- 2. make compile

@pytest.mark.parametrize("goal", [["compile"], ["pipeline"],
                                  ["deploy", "BOARD=root@192.0.2.1"], ["bundle"]])
def test_targets_that_compile_check_for_the_image_before_anything_upstream(tmp_path, goal):
    """A fresh clone without Docker: one line leading with the cause, before any training
    (it used to train for 10 minutes, then fail at compile)."""
    t0 = time.monotonic()
    r = run_make(tmp_path, *goal, env=no_engine_env(tmp_path))
    err = errors(r.stderr)
    assert r.returncode != 0 and len(err) == 1, r.stderr
    assert err[0].startswith(f"error: no Docker engine answers at {NOWHERE}"), err[0]
    assert "docker pull" in err[0] and "nothing was built" in err[0]
    assert "make quantize builds them without the image" in err[0]
    assert "RUNNER=docker" not in err[0] and "runner=host" not in err[0]
    assert not (tmp_path / "train").exists() and "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 60


def test_compile_alone_without_engine_leads_with_the_cause(tmp_path, monkeypatch):
    """`python -m toolchain compile` (runner auto) with no engine: the cause first, and the
    fix keeps the trained model (it used to offer RUNNER=docker first, which retrained)."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("TOOLCHAIN_IN_CONTAINER", raising=False)
    from toolchain import docker_runner as DR

    def no_engine():
        raise DR.DockerUnavailable("x", reason=f"no Docker engine answers at {NOWHERE} (no "
                                               f"such socket)")
    cfg = load_config(None, [])
    build = tmp_path / "b"

    class Args:
        build_dir = str(build)
    with pytest.raises(NeedsImage) as e:
        runners.run_stage("compile", cfg, Args(), client_factory=no_engine)
    msg = str(e.value)
    assert msg.startswith(f"no Docker engine answers at {NOWHERE} (no such socket), and compile "
                          f"needs the Vitis AI image")
    assert f"docker pull {cfg.docker.image}" in msg and "already built is kept" in msg
    assert "RUNNER=docker" not in msg and "\n" not in msg


def test_with_a_compiler_on_this_pc_no_image_is_needed(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "vai_c_tensorflow2"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.delenv("TOOLCHAIN_IN_CONTAINER", raising=False)
    cfg = load_config(None, [f"compile.tool_dir={bindir}"])
    runners.check_image(cfg, CHAIN, connect_fn=lambda: pytest.fail("docker consulted"))
    runners.check_image(load_config(None, []), ["train", "freeze"],       # nothing needs it
                        connect_fn=lambda: pytest.fail("docker consulted"))


def test_an_up_to_date_compile_needs_no_engine(fresh):
    """A compiled model that is up to date (compiled elsewhere, copied in) deploys without
    Docker: the check is made only when compile would run."""
    r = subprocess.run([sys.executable, "-m", "toolchain", "preflight", "--build-dir",
                        str(fresh), "--need-image", "--announce", "compile", "--goal",
                        "make deploy"], cwd=REPO, capture_output=True, text=True,
                       env=no_engine_env(fresh), timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


# --------------------------------------------------------------------------- runner placement

def test_where_stages_run_is_not_a_config_change(fresh):
    """`make compile RUNNER=docker` planned train, freeze and quantize again ("its config
    changed: runs_in 'host' -> 'container ...'"): a full retrain for a placement."""
    plan, _ = make_n(fresh, "compile", sets=["runner=docker"])
    assert plan == []
    assert make_n(fresh, "compile", sets=["runner=host"])[0] == []


def test_a_build_made_before_placement_stopped_counting_stays_up_to_date(fresh):
    """.cfg files written by the earlier toolchain hold a runs_in line: reading them again
    must not make every stage stale (a retrain after an upgrade)."""
    import yaml
    for f in (fresh / ".cfg").glob("*.yaml"):
        st = f.stat()
        old = {**(yaml.safe_load(f.read_text()) or {}), "runs_in": "host"}
        f.write_text(yaml.safe_dump(old, sort_keys=False))     # as the earlier deps wrote it
        os.utime(f, (st.st_atime, st.st_mtime))
    plan, _ = make_n(fresh, "compile")
    assert plan == []
    assert "runs_in" not in (fresh / ".cfg" / "train.yaml").read_text()


def test_stale_stages_is_what_make_would_run(fresh):
    cfg = load_config(None, [])
    assert makedeps.stale_stages(cfg, fresh, "compile") == []
    make_n(fresh, "compile", sets=["quantize.calib_size=500"])      # rewrites the .cfg files
    cfg2 = load_config(None, ["quantize.calib_size=500"])
    assert makedeps.stale_stages(cfg2, fresh, "compile") == ["quantize", "compile"]
    assert makedeps.stale_stages(cfg2, fresh, "freeze") == []
    (fresh / S.STAGES["train"].stamp(cfg)).unlink()
    assert makedeps.stale_stages(cfg2, fresh, "compile") == CHAIN


# --------------------------------------------------------------------------- 3. make app

def test_make_app_says_it_will_train_first(tmp_path):
    """A fresh clone: `make app` trained, froze and quantized for 12 minutes with no word."""
    _, out = make_n(tmp_path, "app")
    first = out.splitlines()[0]
    assert "-m toolchain preflight" in first and '--goal "make app" --announce quantize' in first
    subprocess.run([sys.executable, "-m", "toolchain", "deps", "--build-dir", str(tmp_path)],
                   cwd=REPO, check=True)
    r = subprocess.run([sys.executable, "-m", "toolchain", "preflight", "--build-dir",
                        str(tmp_path), "--announce", "quantize", "--goal", "make app"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("note: make app builds train -> freeze -> quantize first "
                               "(missing or out of date): training alone takes a few minutes")


def test_the_announced_time_is_the_last_measured_one(fresh):
    import json
    for rel, m in (("train/metrics.json", {"stage_seconds": 250.0}),
                   ("freeze/metrics.json", {"seconds": 20.0}),
                   ("quantize/metrics.json", {"seconds": 90.0})):
        p = fresh / rel
        t = p.stat().st_mtime if p.exists() else None
        p.write_text(json.dumps(m))
        if t:
            os.utime(p, (t, t))                                    # the stamps keep their times
    make_n(fresh, "app", sets=["train.epochs=3"])                  # train is now stale
    r = subprocess.run([sys.executable, "-m", "toolchain", "preflight", "--build-dir",
                        str(fresh), "--set", "train.epochs=3", "--announce", "quantize",
                        "--goal", "make app"], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.stderr.strip() == ("note: make app builds train -> freeze -> quantize first "
                                "(missing or out of date): about 6 min, as long as their last "
                                "run here took"), r.stderr
    # nothing out of date: nothing said; a stage target alone says nothing about itself
    make_n(fresh, "app")                                  # the .cfg files back to the default
    for args in (["--announce", "quantize", "--goal", "make app"],
                 ["--announce", "train", "--goal", "make train"]):
        r = subprocess.run([sys.executable, "-m", "toolchain", "preflight", "--build-dir",
                            str(fresh), *args], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr


# --------------------------------------------------------------------------- 7. smaller ones

def test_make_shell_without_engine_offers_no_host_runner(tmp_path):
    r = subprocess.run([sys.executable, "-m", "toolchain", "shell", "--build-dir",
                        str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True,
                       env=no_engine_env(tmp_path), timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: ") and "runner=host" not in r.stderr
    assert "install and start Docker Engine" in r.stderr


def test_make_docker_image_without_engine_is_one_line(tmp_path):
    """Docker's own error is several lines ('Cannot connect to the Docker daemon ...' and
    the build's usage); the target checks the engine first."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls"
    (bindir / "docker").write_text(
        f"#!/bin/sh\necho \"$*\" >> {log}\n"
        "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\n"
        "echo 'Is the docker daemon running?' >&2\nexit 1\n")
    (bindir / "docker").chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    r = run_make(tmp_path / "b", "docker-image", env=env)
    assert r.returncode != 0 and len(errors(r.stderr)) == 1, r.stderr
    assert "Docker daemon" not in r.stderr and "no Docker engine answers" in r.stderr
    assert log.read_text().split() == ["info"]                     # no build was tried


def test_an_interrupted_first_epoch_reads_as_one_epoch():
    from model.train import interrupted_hint
    assert interrupted_hint(1, "b/train.resume") == ("epoch 1 is checkpointed in "
                                                     "b/train.resume: run the same command "
                                                     "again to resume")
    assert interrupted_hint(3, "d").startswith("epochs 1-3 are checkpointed in d")
    assert interrupted_hint(0, "d") == "no epoch had finished, so the next run starts over"


# --------------------------------------------------------------------------- make bundle

from test_board import app_dir, build, cfg  # noqa: E402,F401  (the fake compile folder)


def test_bundle_is_the_deploy_bundle_plus_a_run_script(app_dir, build, cfg, tmp_path):  # noqa: F811
    from deploy.commands import sd_bundle
    from dpu_app.contract import sha256_file
    import json
    cdir = build / "compile"
    (cdir / "classifier.npz").write_bytes(b"weights")          # a file the manifest names
    man = json.loads((cdir / "manifest.json").read_text())
    man["classifier"] = {"file": "classifier.npz", "sha256": sha256_file(str(cdir /
                                                                               "classifier.npz"))}
    (cdir / "manifest.json").write_text(json.dumps(man))
    (cdir / "compile.log").write_text("not named: not copied")
    lines = []
    out = sd_bundle(cfg, build, log=lines.append)
    assert out == build / "sdcard" / "signlang"
    assert sorted(p.name for p in out.iterdir()) == ["data", "deploy.json", "dpu_app", "model",
                                                     "run.sh"]
    assert sorted(p.name for p in (out / "model").iterdir()) == [
        "classifier.npz", "labels.txt", "manifest.json", "signnet.xmodel"]
    assert (out / "dpu_app" / "__main__.py").is_file() and (out / "data" /
                                                           "sign_mnist_test.csv").is_file()
    assert os.access(out / "run.sh", os.X_OK) and "sh run.sh" in lines[-1]
    # run.sh, run from anywhere, starts the app from its own folder with the bundle's model
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/sh\necho "$PWD $*"\n')
    (fake / "python3").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    r = subprocess.run(["sh", str(out / "run.sh")], cwd=tmp_path, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == (
        f"{out} -m dpu_app --model model/signnet.xmodel --manifest model/manifest.json "
        f"--source /dev/video0 --web --host 0.0.0.0 --port {cfg.board.port}"), r.stdout
    r = subprocess.run(["sh", str(out / "run.sh"), "--bench", "--csv", "x.csv"], cwd=tmp_path,
                       env=env, capture_output=True, text=True)
    assert r.stdout.strip().endswith("--manifest model/manifest.json --bench --csv x.csv")


def test_bundle_refuses_a_missing_file_the_manifest_names(app_dir, build, cfg):  # noqa: F811
    from deploy.commands import sd_bundle
    from toolchain.errors import UserError
    import json
    man = json.loads((build / "compile" / "manifest.json").read_text())
    man["classifier"] = {"file": "classifier.npz"}
    (build / "compile" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UserError, match=r"classifier.npz \(named in .*\) is missing: re-run"):
        sd_bundle(cfg, build)
    assert not (build / "sdcard").exists()


def test_bundle_without_a_compiled_model_is_one_line_at_once(tmp_path):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "toolchain", "bundle", "--build-dir",
                        str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "nothing compiled yet" in r.stderr and "make compile" in r.stderr
    assert time.monotonic() - t0 < 30 and not (tmp_path / "sdcard").exists()


# --------------------------------------------------------------------------- the app

def write_photos(root: Path, bad=()) -> Path:
    """A letter-folder photo set: two readable JPEGs in A/, and `bad` {rel: bytes}."""
    import cv2
    import numpy as np
    (root / "A").mkdir(parents=True)
    ok, jpg = cv2.imencode(".jpg", np.full((64, 48, 3), 128, np.uint8))
    for i in range(2):
        (root / "A" / f"a{i}.jpg").write_bytes(jpg.tobytes())
    for rel, data in dict(bad).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def no_model_load(monkeypatch):
    """The app's model stays unloaded: resolving is stubbed, loading fails the test (what is
    checked here must be said before seconds of loading)."""
    from dpu_app import app as A
    monkeypatch.setattr(A, "resolve_model", lambda a: A.Resolved("m.h5", ["A"], None,
                                                                 (None, None), 0.5, None))

    def loaded(*a, **k):
        raise AssertionError("the model was loaded before the fault was said")
    monkeypatch.setattr(A, "make_backend", loaded)
    return A


def test_damaged_photos_are_all_named_before_the_model_loads(tmp_path, no_model_load, capsys):
    """A corrupt JPEG was reported after the model loaded (8-13 s), and only the first one."""
    d = write_photos(tmp_path / "p", {"B/broken.jpg": b"\xff\xd8 not a jpeg",
                                      "C/empty.jpg": b""})
    rc = no_model_load.main(["--model", "m.h5", "--eval-photos", str(d)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0] == (f"error: {d}: 2 of its 4 photos are not images OpenCV can read (damaged, "
                      f"empty or not JPEG/PNG): B/broken.jpg, C/empty.jpg: replace or remove "
                      f"them")


def test_own_photos_without_a_manifest_are_said_to_be_whole_pictures(tmp_path, no_model_load,
                                                                     capsys):
    """A user's photos without manifest.csv were scored silently as whole pictures."""
    d = write_photos(tmp_path / "p")
    with pytest.raises(AssertionError, match="model was loaded"):
        no_model_load.main(["--model", "m.h5", "--eval-photos", str(d)])
    assert capsys.readouterr().err == ("note: no manifest.csv: each whole picture is taken as "
                                       "the hand's box\n")
    (d / "manifest.csv").write_text("file,letter\nA/a0.jpg,A\nA/a1.jpg,A\n")
    with pytest.raises(AssertionError, match="model was loaded"):
        no_model_load.main(["--model", "m.h5", "--eval-photos", str(d)])
    assert "manifest" not in capsys.readouterr().err


def test_a_busy_port_is_said_before_the_model_loads(no_model_load, capsys):
    """The web viewer's port in use was reported after about 16 s (model and camera first)."""
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        t0 = time.monotonic()
        rc = no_model_load.main(["--model", "m.h5", "--source", "0", "--web", "--port",
                                 str(port)])
    finally:
        busy.close()
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1 and time.monotonic() - t0 < 10, err
    assert err[0].startswith(f"error: web viewer: port {port} on 127.0.0.1 is already in use")


def test_hints_name_what_the_user_typed_to_make(tmp_path):
    """`make eval-photos MODEL=... DIR=...` was told to 'pass --model PATH'."""
    d = write_photos(tmp_path / "p")
    r = run_make(tmp_path / "b", "eval-photos", f"MODEL={tmp_path}/none.h5", f"DIR={d}")
    err = errors(r.stderr)
    assert r.returncode != 0 and len(err) == 1, r.stderr
    assert err[0].startswith(f"error: model {tmp_path}/none.h5 not found") and \
        err[0].endswith("or pass MODEL=PATH"), err[0]
    # run as itself, the app names its flags
    r = subprocess.run([sys.executable, "-m", "dpu_app", "--model", str(tmp_path / "none.h5"),
                        "--eval-photos", str(d)], cwd=REPO, capture_output=True, text=True,
                       timeout=60, env={k: v for k, v in os.environ.items()
                                        if k != "DPU_APP_VIA_MAKE"})
    assert r.stderr.strip().endswith("or pass --model PATH"), r.stderr


def test_make_words_for_the_apps_flags():
    from dpu_app.app import in_make_words
    given = {"--eval-photos": "my photos", "--source": "7"}
    assert in_make_words("--eval-photos my photos: photo folder not found", given) == \
        "DIR=my photos: photo folder not found"
    assert in_make_words("--source 7: no camera; pass one of them with --source (some", given) \
        == "SOURCE=7: no camera; pass one of them with SOURCE= (some"
    assert in_make_words("no model given: pass --model build/train/model.h5 (PC), or --model "
                         "NAME.xmodel / --manifest m.json") == \
        "no model given: pass MODEL=build/train/model.h5 (PC), or MODEL=NAME.xmodel / " \
        "--manifest m.json"
    assert in_make_words("--source is empty: give --model-free --sources") == \
        "SOURCE= is empty: give --model-free --sources"
