"""What a new user met in the first hour on a fresh clone (PC side), each closed and kept so:
no command spends minutes before it finds out it cannot finish, a target that will train first
says so, where stages run is not a config change, and the faults are one line naming the fix."""
import os
import subprocess
import sys
from pathlib import Path

import pytest


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
