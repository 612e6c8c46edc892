"""The docker runner against a real Docker engine and an image that runs the toolchain (CI: the
stand-in from scripts/standin-image.sh, named by TOOLCHAIN_TEST_IMAGE; see the docker_image
fixture). What issue 8 found on such an engine, checked end to end:

- a stage runs in the container as a non-root uid (CI runs as root: the toolchain is run as
  another uid with setpriv, on a copy of what it needs), its files are that uid's, HOME is
  under the build dir, exit statuses propagate, messages name host paths, provenance names
  the image;
- SIGTERM, SIGINT (to make's process group, during `make train` in the container) and SIGHUP
  leave no container and no swapped-in build/train, and the next run resumes;
- the compiler missing from the image, a path outside the mounts, `make shell` without a TTY:
  one `error:` line each.
"""
import json
import os
import pty
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from toolchain.config import REPO_ROOT

pytestmark = pytest.mark.docker

# A small, quick training of the Sign MNIST CNN (the model kind with epochs and a resume
# checkpoint; the default landmark kind has neither): 432 training rows, a narrow network, no
# early stop. Epochs are per test: enough that a signal sent after epoch 1 lands mid-training.
SMALL = ["model.kind=cnn", "data.train_limit=480", "data.test_limit=200", "train.progress=none",
         "train.early_stopping.enabled=false", "model.widths=[8,16]", "model.dense_units=32",
         "train.batch_size=64"]
VENV = Path(sys.prefix)


def containers_for(client, host_dir: Path):
    """Containers (running or not) with `host_dir` mounted: the runner's own labels are not
    relied on, so a container left by a runner without them is found too."""
    return [c for c in client.containers.list(all=True)
            if any(m.get("Source") == str(host_dir) for m in c.attrs.get("Mounts") or [])]


def sets(image, *extra):
    out = []
    for kv in [f"docker.image={image}", *SMALL, *extra]:
        out += ["--set", kv]
    return out


def no_container_paths(text: str):
    """Nothing the user reads names a container mount point."""
    assert not re.search(r"(?<![\w.~/-])/(workspace|build)(?![\w.~-])", text), text


# --------------------------------------------------------------------------- another uid

RUNTIME_PACKAGES = ("yaml", "_yaml", "docker", "requests", "urllib3", "idna", "certifi",
                    "charset_normalizer")


def _tracked_sources() -> list:
    """Every file git tracks outside tests/ (so a new package or data folder is copied too;
    a fixed list missed dpu_app/ once)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True,
                         check=True).stdout.decode()
    return [f for f in out.split("\0") if f and not f.startswith(("tests/", ".ci/"))]


def _free_uid() -> int:
    for uid in range(4242, 4300):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("no free uid in 4242..4299")


def _python_for_others() -> str:
    """A python3 another uid can run (the venv's points into root's pyenv)."""
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        p = Path(cand)
        if p.exists() and os.stat(p.resolve()).st_mode & stat.S_IXOTH:
            return cand
    pytest.fail("no python3 outside /root that another uid may run: apt-get install python3")


@pytest.fixture(scope="module")
def as_other_user(docker_image, tmp_path_factory):
    """run(argv, ...) -> CompletedProcess: the toolchain as uid:gid 4242 (no passwd entry),
    with the docker socket's group, in a copy of the sources that uid owns (the real repo is
    root's and the venv's python lives in /root). Not root already: runs as this user."""
    if os.getuid() != 0:
        def run_self(args, **kw):
            return subprocess.run([sys.executable, "-m", "toolchain", *args], cwd=REPO_ROOT,
                                  capture_output=True, text=True, timeout=900, **kw)
        return run_self, REPO_ROOT, os.getuid()
    uid = _free_uid()
    base = Path(tempfile.mkdtemp(prefix="toolchain-uid-", dir="/tmp"))
    os.chmod(base, 0o755)
    repo, site, home = base / "repo", base / "site", base / "home"
    for f in _tracked_sources():
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / f, repo / f)
    site.mkdir()
    home.mkdir()
    for name in RUNTIME_PACKAGES:
        mod = __import__(name)
        src = Path(mod.__file__)
        if src.name == "__init__.py":
            shutil.copytree(src.parent, site / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, site / src.name)
    for p in [base, *base.rglob("*")]:
        os.lchown(p, uid, uid)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    sock_gid = os.stat(host[len("unix://"):]).st_gid if host.startswith("unix://") else uid
    py = _python_for_others()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1", "DOCKER_HOST": host}

    def run(args, **kw):
        return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                               f"--groups={sock_gid}", "--", py, "-m", "toolchain", *args],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=900,
                              **kw)
    yield run, repo, uid
    shutil.rmtree(base, ignore_errors=True)


def test_stage_runs_in_the_container_as_a_non_root_uid(as_other_user, docker_image):
    run, repo, uid = as_other_user
    client, image = docker_image
    build = repo / "build"
    r = run(["train", "--build-dir", "build", "--set", "runner=docker",
             *sets(image, "train.epochs=2")])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"running 'train' in container {image}" in r.stderr
    # the stage ran in the container as that uid, and says so in host paths
    assert f"outputs in {build}/train/" in r.stdout
    no_container_paths(r.stdout + r.stderr)
    # every file it left is that uid's (nothing root-owned), HOME was under the build dir
    owners = {p.relative_to(repo).as_posix(): os.lstat(p).st_uid for p in repo.rglob("*")}
    assert {k: v for k, v in owners.items() if v != uid} == {}
    assert (build / ".docker" / "home").is_dir()
    assert (build / "train" / "model.h5").is_file()
    # provenance names the image it ran in
    prov = json.loads((build / "train" / "provenance.json").read_text())
    assert prov["execution"] == {"runner": "docker", "image": image,
                                 "image_id": client.images.get(image).id,
                                 "host_paths": {"/workspace": str(repo)}}
    assert containers_for(client, repo) == []


def test_exit_status_and_host_paths_of_a_failing_stage(as_other_user, docker_image):
    """Before: `error: /workspace/data/...: file not found`."""
    run, repo, uid = as_other_user
    client, image = docker_image
    r = run(["train", "--build-dir", "build2", "--set", "runner=docker",
             *sets(image, "data.train_csv=data/missing.csv.gz")])
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[-1].startswith(
        f"error: {repo}/data/missing.csv.gz: file not found")
    no_container_paths(r.stdout + r.stderr)
    assert containers_for(client, repo) == []


# --------------------------------------------------------------------------- signals

class Make:
    """`make train` in the container, in its own process group, its output collected. The
    settings go in a config file: with shell metacharacters in SET (`[8,16]`) make runs the
    recipe through /bin/sh, which SIGTERM ends at once, so make would return before the
    toolchain has stopped the container (it still does, a moment later)."""

    def __init__(self, build: Path, image: str, epochs: int):
        import yaml
        cfg = {}
        for kv in [f"docker.image={image}", *SMALL, f"train.epochs={epochs}"]:
            key, _, value = kv.partition("=")
            *parents, leaf = key.split(".")
            node = cfg
            for k in parents:
                node = node.setdefault(k, {})
            node[leaf] = yaml.safe_load(value)
        config = build.parent / f"{build.name}.yaml"
        config.write_text(yaml.safe_dump(cfg))
        self.build = build
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "-C", str(REPO_ROOT), "train", f"BUILD={build}",
             f"VENV={VENV}", "RUNNER=docker", f"CONFIG={config}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for_checkpoint(self, limit=600):
        """Until epoch 1 is checkpointed (the container runs the stage), or fail."""
        state = self.build / "train.resume" / "state.json"
        deadline = time.monotonic() + limit
        while not state.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"make ended ({self.proc.returncode}) before epoch 1 was "
                            f"checkpointed:\n{self.text[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no checkpoint after {limit}s:\n{self.text[-3000:]}")
            time.sleep(0.2)

    def wait(self, timeout=900) -> int:
        """make's exit status, as soon as make has ended."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"make did not end:\n{self.text[-3000:]}")

    def finish(self, timeout=900) -> int:
        rc = self.wait(timeout)
        self.reader.join(30)
        return rc

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_signal_to_makes_process_group_leaves_nothing_and_the_next_run_resumes(
        tmp_path, docker_image, sig):
    """Before (SIGTERM, SIGHUP): the container kept running, swapped in build/train after
    make had reported failure, and was never removed."""
    client, image = docker_image
    build = (tmp_path / "b").resolve()
    name = signal.Signals(sig).name
    m = Make(build, image, epochs=4)
    m.wait_for_checkpoint()
    assert len(containers_for(client, build)) == 1          # it runs in the container
    os.killpg(m.proc.pid, sig)
    rc = m.wait()
    # make waits for its child, which stops and removes the container before it exits
    left, swapped = containers_for(client, build), (build / "train").exists()
    m.reader.join(30)
    assert rc != 0, m.text
    assert left == [], m.text
    assert not swapped, m.text
    assert f"{name}: stopping container" in m.text
    errors = [x for x in m.text.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, m.text                   # the stage's own, naming the fix
    assert errors[0].endswith(f"checkpointed in {build}/train.resume: run the same command "
                              f"again to resume"), m.text
    assert f"{name}: container " in m.text and " stopped and removed" in m.text
    no_container_paths(m.text)
    if sig == signal.SIGHUP:         # resuming is the same for all three: checked for two
        return
    again = Make(build, image, epochs=4)
    assert again.finish() == 0, again.text
    assert re.search(r"resuming after epoch [1-3] of 4", again.text), again.text
    assert (build / "train" / "model.h5").is_file()
    assert containers_for(client, build) == []


# --------------------------------------------------------------------------- one-line faults

def _toolchain(args, **kw):
    return subprocess.run([sys.executable, "-m", "toolchain", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, **kw)


def test_compile_in_an_image_without_the_compiler_names_that_image(tmp_path, docker_image):
    """Before: 'run `make compile RUNNER=docker`' and '`docker pull <this image>`'."""
    client, image = docker_image
    r = _toolchain(["compile", "--set", "runner=docker", "--set", f"docker.image={image}",
                    "--build-dir", str(tmp_path / "b")])
    assert r.returncode == 2, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith(f"error: vai_c_tensorflow2 is not on PATH in image {image} "), last
    assert "docker pull" not in r.stderr and "RUNNER=docker" not in r.stderr
    assert [x for x in r.stderr.splitlines() if x.startswith("error:")] == [last]


def test_a_path_outside_the_mounts_is_one_line_and_no_container(tmp_path, docker_image):
    client, image = docker_image
    outside = tmp_path / "elsewhere.csv.gz"
    shutil.copy(REPO_ROOT / "data" / "sign_mnist" / "sign_mnist_test.csv.gz", outside)
    build = (tmp_path / "b").resolve()
    r = _toolchain(["train", "--set", "runner=docker", "--set", f"docker.image={image}",
                    "--set", f"data.test_csv={outside}", "--build-dir", str(build)])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        f"error: config key 'data.test_csv' is {outside}: not mounted in the container, which "
        f"sees only the repo ({REPO_ROOT}) and the build dir ({build}): put it under the repo "
        f"or the build dir, or run with --set runner=host"]
    assert containers_for(client, build) == []


def test_make_shell_without_a_tty_is_one_line(tmp_path, docker_image):
    """Before: the `docker run -it` line, then docker's 'the input device is not a TTY'."""
    client, image = docker_image
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), "shell",
                        f"BUILD={tmp_path / 'b'}", f"VENV={VENV}", f"SET=docker.image={image}"],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert errors == ["error: make shell needs a terminal: its input is not a TTY, so `docker "
                      "run -it` cannot start; run it from an interactive terminal, or run a "
                      "stage in the container without one (make compile RUNNER=docker)"]
    assert "not a TTY" not in r.stderr.replace(errors[0], "")


def test_make_shell_on_a_terminal_is_the_activated_env_as_this_user(tmp_path, docker_image):
    """The interactive path: a pseudo-terminal, the image's env activated, the runner's
    LD_LIBRARY_PATH (what the image's bashrc sets for XRT), this uid, the image named."""
    client, image = docker_image
    pid, fd = pty.fork()
    if pid == 0:                                        # child: the toolchain's shell
        os.chdir(REPO_ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "toolchain", "shell", "--set",
                                  f"docker.image={image}", "--build-dir",
                                  str(tmp_path / "b")])
    os.write(fd, b'echo "uid=$(id -u) ld=$LD_LIBRARY_PATH py=$(command -v python) '
                 b'img=$TOOLCHAIN_IMAGE"; exit 3\n')
    out = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 3, text
    assert (f"uid={os.getuid()} ld=/opt/xilinx/xrt/lib:/usr/lib:/usr/lib/x86_64-linux-gnu "
            f"py=/opt/vitis_ai/conda/envs/vitis-ai-tensorflow2/bin/python img={image}") in text
    assert containers_for(client, (tmp_path / "b").resolve()) == []
