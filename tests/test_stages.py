"""The stage graph is declared once (toolchain/stages.py) and Make follows it: `make -n` plans
exactly the stale stages for a config change in each section, for the TF1 flow, and inside
the container (TOOLCHAIN_IN_CONTAINER=1)."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolchain import stages as S
from toolchain.config import load_config

REPO = Path(__file__).resolve().parent.parent
CHAIN = ["train", "freeze", "quantize", "compile"]


def make_n(build, *goals, env=None, sets=()):
    """The stages `make -n <goals>` would run, in order."""
    cmd = ["make", "--no-print-directory", "-C", str(REPO), "-n", *goals, f"BUILD={build}",
           f"PY={sys.executable}", "VENV_OK="]
    if sets:
        cmd.append("SET=" + " ".join(sets))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env or os.environ.copy())
    assert r.returncode == 0, r.stdout + r.stderr
    return re.findall(r"-m toolchain (train|lr-find|freeze|quantize|compile) ", r.stdout), r.stdout


def make_fresh(build, *sets):
    """Every stage's stamp exists and is newer than everything it depends on, and all of it
    lies in the past, so that a config file rewritten now is newer than the stamps."""
    subprocess.run([sys.executable, "-m", "toolchain", "deps", "--build-dir", str(build),
                    *[a for s in sets for a in ("--set", s)]], cwd=REPO, check=True)
    cfg = load_config(None, list(sets))
    newest = max(os.stat(REPO / p).st_mtime for st in S.STAGES.values()
                 for p in [*S.STAGES[st.name].data(cfg)] + [str(f) for pat in
                                                             (*S.BASE_SOURCES, *st.sources)
                                                             for f in REPO.glob(pat)])
    t = int(newest) + 1
    for f in (Path(build) / ".cfg").iterdir():
        os.utime(f, (t, t))
    for i, name in enumerate(["lr_find", *CHAIN]):
        p = Path(build) / S.STAGES[name].stamp(cfg)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
        os.utime(p, (t + 1 + i, t + 1 + i))
    while time.time() < t + 8:            # a fresh clone: let the clock pass the stamps
        time.sleep(0.5)


@pytest.fixture
def fresh(tmp_path):
    make_fresh(tmp_path)
    return tmp_path


def test_nothing_built_plans_the_whole_chain(tmp_path):
    assert make_n(tmp_path, "compile")[0] == CHAIN


def test_up_to_date_plans_nothing(fresh):
    assert make_n(fresh, "compile")[0] == []
    assert make_n(fresh, "train", "lr-find")[0] == []


@pytest.mark.parametrize("setting,stale", [
    ("seed=7", CHAIN),
    ("data.photo_val_fraction=0.3", CHAIN),
    ("model.dense_units=64", CHAIN),
    ("train.epochs=3", CHAIN),
    ("recognition.max_hand_rejection=0.1", CHAIN),
    ("quantize.calib_size=500", ["quantize", "compile"]),
    ("quantize.max_photo_drop_pt=2", ["quantize", "compile"]),
    ("compile.name=other", ["compile"]),
    ("docker.image=my/vitis:1", ["compile"]),       # only compile runs in the image under auto
    ("docker.stop_timeout=30", []),
    ("board.port=9000", []),
    ("lr_find.num_batches=100", []),
    ("runner=docker", []),        # where stages run is not a config change: nothing retrains
])
def test_a_config_change_replans_exactly_the_stages_that_read_it(fresh, setting, stale):
    assert make_n(fresh, "compile", sets=[setting])[0] == stale


def test_lr_find_follows_its_own_section(fresh):
    assert make_n(fresh, "lr-find", sets=["lr_find.num_batches=100"])[0] == ["lr-find"]


def test_a_source_change_replans_its_stage_and_what_follows(fresh):
    cfg = load_config(None)
    stamp = Path(fresh) / S.STAGES["quantize"].stamp(cfg)
    future = stamp.stat().st_mtime + 100
    src = REPO / "quantize" / "quantize.py"
    old = src.stat().st_mtime
    try:
        os.utime(src, (future, future))
        assert make_n(fresh, "compile")[0] == ["quantize", "compile"]
    finally:
        os.utime(src, (old, old))


def test_tf1_flow_plans_its_own_output_and_no_ladder(tmp_path):
    make_fresh(tmp_path, "quantize.flow=tf1")
    assert make_n(tmp_path, "compile", sets=["quantize.flow=tf1"])[0] == []
    (Path(tmp_path) / "quantize-tf1" / "results" / "quantize_eval_model.pb").unlink()
    plan, out = make_n(tmp_path, "quantize", sets=["quantize.flow=tf1"])
    assert plan == ["quantize"] and "ladder.md" not in out and "cat " not in out


def test_inside_the_container_make_uses_the_images_python_and_no_venv(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)       # the image's `python`
    env = dict(os.environ, TOOLCHAIN_IN_CONTAINER="1", PATH=f"{bindir}:{os.environ['PATH']}")
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "-n", "quantize",
                        f"BUILD={tmp_path / 'b'}"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "setup-venv" not in r.stdout and ".venv" not in r.stdout
    assert "python -m toolchain train" in r.stdout and "python -m toolchain quantize" in r.stdout


def test_stages_read_their_inputs_from_what_the_previous_stage_declared():
    cfg = load_config(None)
    for name, st in S.STAGES.items():
        for rel in st.inputs(cfg).values():
            assert S.producer(cfg, rel), f"{name} reads {rel}, which no stage writes"
    tf1 = load_config(None, ["quantize.flow=tf1"])
    assert S.inp(tf1, "b", "compile", "model") == Path("b/quantize-tf1/results/"
                                                       "quantize_eval_model.pb")
    assert S.inp(cfg, "b", "compile", "model") == Path("b/quantize/quantized.h5")


def test_pipeline_from_to():
    assert S.pipeline(None, None) == CHAIN
    assert S.pipeline("freeze", "quantize") == ["freeze", "quantize"]
    from toolchain.errors import UserError
    with pytest.raises(UserError, match="comes after"):
        S.pipeline("compile", "train")
    with pytest.raises(UserError, match="no stage 'bogus' .*train, freeze, quantize, compile"):
        S.pipeline("bogus", None)                          # was a KeyError traceback
    with pytest.raises(UserError, match="lr-find is not a pipeline stage"):
        S.pipeline(None, "lr-find")                        # was a ValueError traceback


def test_placement_under_auto_is_the_image_only_for_compile():
    auto = load_config(None)
    assert {n: s.placement(auto) for n, s in S.STAGES.items()} == {
        "train": "host", "lr_find": "host", "freeze": "host", "quantize": "host",
        "compile": "docker"}
    docker = load_config(None, ["runner=docker"])
    assert {s.placement(docker) for s in S.STAGES.values()} == {"docker"}


def test_make_says_which_config_change_makes_a_stage_stale(fresh):
    """`make train SET=...` then `make freeze`: the retraining is announced with the key
    that caused it (it used to retrain silently for minutes)."""
    cmd = ["make", "--no-print-directory", "-C", str(REPO), "-n", "freeze", f"BUILD={fresh}",
           f"PY={sys.executable}", "VENV_OK=", "SET=train.epochs=3"]
    default = load_config(None, []).train.epochs
    assert default != 3
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "note: train is out of date: its config changed since it last ran (train.epochs " \
           f"{default} -> 3)" in r.stderr
    r2 = subprocess.run(cmd[:-1], capture_output=True, text=True)       # back to the default
    assert "out of date" not in r2.stderr, r2.stderr


def test_a_dry_run_with_another_config_does_not_make_the_build_stale(fresh):
    """`make -n freeze SET=train.epochs=3` (or any target that does not run train) rewrites
    train's .cfg; the next plain `make` used to retrain for 8 minutes ("train.epochs 3 -> 8")
    a model that was made with 8 epochs all along. A stage that really ran with another config
    is still redone when the config goes back."""
    assert make_n(fresh, "quantize", sets=["train.epochs=3", "model.dropout=0.2"])[0] == \
        ["train", "freeze", "quantize"]
    assert make_n(fresh, "quantize", sets=["train.epochs=4"])[0] == ["train", "freeze", "quantize"]
    assert make_n(fresh, "quantize")[0] == []                     # made with the default
    # now train really runs with epochs=3 (its stamp is made newer than its .cfg) ...
    make_n(fresh, "quantize", sets=["train.epochs=3"])
    cfg = load_config(None, ["train.epochs=3"])
    stamp = Path(fresh) / S.STAGES["train"].stamp(cfg)
    t = (Path(fresh) / ".cfg" / "train.yaml").stat().st_mtime + 2
    os.utime(stamp, (t, t))
    while time.time() < t + 1:
        time.sleep(0.2)
    # ... so going back to the default is a real change, and is announced
    cmd = ["make", "--no-print-directory", "-C", str(REPO), "-n", "train", f"BUILD={fresh}",
           f"PY={sys.executable}", "VENV_OK="]
    r = subprocess.run(cmd, capture_output=True, text=True)
    default = load_config(None, []).train.epochs
    assert f"train.epochs 3 -> {default}" in r.stderr and "-m toolchain train" in r.stdout


def test_app_targets_build_the_chain_only_for_the_chains_own_model(tmp_path):
    """`make eval-photos MODEL=...` scores that file as it is (it used to train, freeze and
    quantize first, and `make app MODEL=...` ignored MODEL)."""
    mine = tmp_path / "my model.h5"
    for goal in ("app", "eval-photos"):
        plan, out = make_n(tmp_path / "b", goal, f"MODEL={mine}", f"DIR={tmp_path}/my photos")
        assert plan == [] and f'--model "{mine}"' in out, out
    plan, out = make_n(tmp_path / "b", "app")
    assert plan == ["train", "freeze", "quantize"] and "quantize/quantized.h5" in out


def test_host_only_modules_cannot_reach_the_engine(repo_root):
    """The `host_only` marker lets CI's engine pass skip modules whose verdict an engine
    cannot change. That holds only while they never touch the docker runner nor run make (a
    make target runs under the config's runner), and every stage they start is on the host."""
    from conftest import HOST_ONLY_MODULES, QUICK_TRAIN
    assert "runner=host" in QUICK_TRAIN
    for name in HOST_ONLY_MODULES:
        src = (repo_root / "tests" / f"{name}.py").read_text()
        for word in ("docker", "runners", '"make"', "choose("):
            assert word not in src.lower(), f"{name} mentions {word}: not host_only"
        if re.search(r'"-m",\s*"toolchain"', src):
            assert "QUICK" in src or "runner=host" in src, f"{name} runs a stage on the runner"
    ci = (repo_root / ".ci" / "run").read_text()
    engine_pass = [ln for ln in ci.splitlines() if "PYTEST_ADDOPTS" in ln and "not docker" in ln]
    assert engine_pass and all("not host_only" in ln for ln in engine_pass)
    no_engine = [ln for ln in ci.splitlines() if "DOCKER_HOST=$NOWHERE make test" in ln]
    assert no_engine and not any("PYTEST_ADDOPTS" in ln for ln in no_engine)  # the whole suite


def _make(build, *goals, **kw):
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *goals,
                           f"BUILD={build}", f"PY={sys.executable}", "VENV_OK="],
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.parametrize("goal, want", [
    (["deploy"], "no board given: pass BOARD=root@<board-ip>"),
    (["board-run"], "no board given"),
    (["board-bench"], "no board given"),
    (["board-eval-photos", "BOARD=root@192.0.2.1", "DIR=nope"],
     "DIR=nope: photo folder not found"),
    (["eval-photos", "DIR=nope"], "DIR=nope: photo folder not found"),
    (["eval-photos", "DIR=README.md"], "DIR=README.md: photo folder is a file"),
    (["eval-photos", "DIR="], "DIR is empty")])
def test_board_and_photo_faults_come_before_anything_is_built(tmp_path, goal, want):
    """A missing BOARD= or a wrong DIR= is said in a second: these targets used to train,
    freeze, quantize (and try to compile) first, and name the fault 11 minutes later."""
    r = _make(tmp_path, *goal)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode != 0 and len(errors) == 1 and want in errors[0], r.stderr
    assert not (tmp_path / "train").exists() and "Traceback" not in r.stderr


def test_a_missing_data_file_reaches_the_stage_not_make(tmp_path):
    """A CSV that does not exist is not a Make prerequisite ("No rule to make target"): the
    train stage runs and names the file and the config key in one line. The CSVs are data of
    model.kind cnn only (landmarks reads the photos and the shipped network)."""
    plan, _ = make_n(tmp_path, "train", sets=["model.kind=cnn",
                                               "data.test_csv=/nonexistent/test.csv"])
    assert plan == ["train"]
    deps = (tmp_path / "deps.mk").read_text()
    assert "/nonexistent/test.csv" not in deps and "sign_mnist_train.csv.gz" in deps


def test_make_n_reports_a_stale_venv_instead_of_rebuilding_it(tmp_path):
    """Make remakes deps.mk, and the venv it needs, even under -n: a dry run must not delete
    and reinstall the venv. It says the venv is stale and plans with it."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    ok = venv / ".installed"
    ok.touch()
    os.utime(ok, (1e9, 1e9))                     # 2001: older than the lock file
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "-n", "train",
                        f"BUILD={tmp_path / 'b'}", f"VENV={venv}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "is older than requirements/host-lock.txt: make setup rebuilds it" in r.stderr
    assert "-m toolchain train" in r.stdout
    assert ok.stat().st_mtime == 1e9 and (venv / "bin" / "python").is_symlink()
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "-n", "train",
                        f"BUILD={tmp_path / 'b'}", f"VENV={tmp_path / 'none'}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "run make setup first" in r.stderr
    assert not (tmp_path / "none").exists()


def test_eval_photos_on_a_model_trained_with_nothing_held_out(tmp_path):
    """data.photo_val_fraction=0 leaves no build/train/photos_val: `make eval-photos` without
    DIR= says so in one line (it said 'photo folder not found'), `make bench-app` leaves the
    photos out, and with DIR= the validation check is not made."""
    make_fresh(tmp_path)
    r = _make(tmp_path, "eval-photos")
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode != 0 and len(errors) == 1, r.stderr
    assert "no validation photos" in errors[0] and "data.photo_val_fraction=0" in errors[0]
    _, out = make_n(tmp_path, "eval-photos", f"DIR={tmp_path}")
    assert "--validation-photos" not in out
    _, out = make_n(tmp_path, "bench-app")
    assert '$(test -d "' in out and "&& echo --eval-photos" in out
