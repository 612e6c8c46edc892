"""The docker runner, by contract: the exact container spec for each mode with a fake docker
client (no engine on this machine), runner choice when the engine or the image is missing,
exit-status propagation, Ctrl-C, the activation snippet run by a real bash against a fake
conda, the `make shell` argv, and the CLI's one-line errors. Tests marked `docker` run a real
container (CI: the stand-in image, scripts/standin-image.sh; TOOLCHAIN_TEST_IMAGE names it);
tests marked `vitis_image` need the real Vitis AI image (compiler, xir, arch.json;
TOOLCHAIN_VITIS_IMAGE, default the configured tag). Both skip where no engine answers or the
image is absent. The signal, path and provenance fixes have their own files
(tests/test_docker_*.py)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from toolchain import docker_runner as DR
from toolchain import runners
from toolchain.cli import main as cli_main
from toolchain.config import REPO_ROOT, load_config, to_dict
from toolchain.errors import UserError

IMAGE = "xilinx/vitis-ai-tensorflow2-cpu:ubuntu2004-3.5.0.300"
# (the `docker`-marked tests get theirs from the docker_image fixture, tests/conftest.py)
# the real Vitis AI image, for the `vitis_image`-marked tests (compiler, xir, arch.json)
VITIS_IMAGE = os.environ.get("TOOLCHAIN_VITIS_IMAGE", IMAGE)
UIDGID = f"{os.getuid()}:{os.getgid()}"


@pytest.fixture(autouse=True)
def _not_in_container(monkeypatch):
    monkeypatch.delenv("TOOLCHAIN_IN_CONTAINER", raising=False)


def cfg_with(tmp_path, *overrides):
    p = tmp_path / "cfg.yaml"
    p.write_text("{}\n")
    return load_config(p, [f"docker.image={IMAGE}", *overrides])


# --------------------------------------------------------------------------- fakes

class FakeContainer:
    short_id = "c0ffee123456"

    def __init__(self, status=0, chunks=(), interrupt=False, wait_result=None):
        self.status, self.chunks, self.interrupt = status, list(chunks), interrupt
        self.wait_result = wait_result
        self.calls = []

    def attach(self, **kw):
        self.calls.append(("attach", kw))

        def gen():
            for c in self.chunks:
                yield c
            if self.interrupt:
                raise KeyboardInterrupt
        return gen()

    def start(self):
        self.calls.append(("start",))

    def wait(self, **kw):
        self.calls.append(("wait",))
        return self.wait_result or {"StatusCode": self.status, "Error": None}

    def stop(self, timeout=None):
        self.calls.append(("stop", timeout))

    def remove(self, force=False):
        self.calls.append(("remove", force))

    def names(self):
        return [c[0] for c in self.calls]


class FakeClient:
    def __init__(self, images=(IMAGE,), container=None, create_error=None):
        self.images_present = set(images)
        self.container = container or FakeContainer()
        self.create_error = create_error
        self.created = []
        outer = self

        class Images:
            def get(self, name):
                if name not in outer.images_present:
                    raise docker.errors.ImageNotFound(f"No such image: {name}")
                return object()

        class Containers:
            def create(self, **kw):
                if outer.create_error:
                    raise outer.create_error
                outer.created.append(kw)
                return outer.container

        self.images, self.containers = Images(), Containers()
        self.api = type("API", (), {"timeout": 10})()

    def ping(self):
        return True


def no_engine():
    raise DR.DockerUnavailable("no Docker engine answers (socket missing): install ...",
                               reason="no Docker engine answers (socket missing)")


class Args:
    def __init__(self, build_dir):
        self.build_dir = str(build_dir)


# --------------------------------------------------------------------------- the spec

def test_stage_spec_inside_the_repo(tmp_path):
    cfg = cfg_with(tmp_path)
    build = REPO_ROOT / "build"
    spec = DR.stage_spec(cfg, build, "compile", "compile")
    kw = spec.create_kwargs()
    assert kw["image"] == IMAGE
    assert kw["working_dir"] == "/workspace"
    assert kw["user"] == UIDGID
    assert kw["volumes"] == {str(REPO_ROOT): {"bind": "/workspace", "mode": "rw"},
                             "/dev/shm": {"bind": "/dev/shm", "mode": "rw"}}
    assert kw["privileged"] is False and "device_requests" not in kw
    assert kw["network_mode"] == "host" and kw["init"] is True
    assert kw["detach"] is True and kw["tty"] is False
    assert kw["labels"] == {"toolchain.stage": "compile", "toolchain.build": str(build)}
    env = kw["environment"]
    assert env["HOME"] == "/workspace/build/.docker/home"
    assert env["UID"] == str(os.getuid()) and env["GID"] == str(os.getgid()) and env["USER"]
    assert env["TOOLCHAIN_IMAGE"] == IMAGE and "TOOLCHAIN_IMAGE_ID" not in env
    assert env["TOOLCHAIN_HOST_MOUNTS"] == '{"/workspace": "%s"}' % REPO_ROOT
    bash, dash_c, script = kw["command"]
    assert (bash, dash_c) == ("bash", "-c")
    assert script.splitlines() == [
        "export LD_LIBRARY_PATH=/opt/xilinx/xrt/lib:/usr/lib:/usr/lib/x86_64-linux-gnu"
        "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}",
        "if [ -f /opt/vitis_ai/conda/etc/profile.d/conda.sh ]; then "
        ". /opt/vitis_ai/conda/etc/profile.d/conda.sh && conda activate vitis-ai-tensorflow2 "
        "|| exit 70; PY=python; else echo \"note: /opt/vitis_ai/conda/etc/profile.d/conda.sh "
        "is not in the image; using python3 without conda\" >&2; PY=python3; fi",
        DR.YAML_CHECK,
        'exec "$PY" -m toolchain compile --config /workspace/build/.docker/compile.config.yaml '
        "--set runner=host --build-dir /workspace/build"]


def test_build_dir_outside_the_repo_is_mounted_at_build(tmp_path):
    cfg = cfg_with(tmp_path, "docker.shm=false", "docker.network=bridge",
                   "docker.extra_env={TF_CPP_MIN_LOG_LEVEL: '2'}")
    spec = DR.stage_spec(cfg, tmp_path / "out", "quantize", "quantize")
    kw = spec.create_kwargs()
    assert kw["volumes"] == {str(REPO_ROOT): {"bind": "/workspace", "mode": "rw"},
                             str((tmp_path / "out").resolve()): {"bind": "/build",
                                                                "mode": "rw"}}
    assert kw["network_mode"] == "bridge"
    assert kw["environment"]["HOME"] == "/build/.docker/home"
    assert kw["environment"]["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert kw["environment"]["TOOLCHAIN_HOST_MOUNTS"] == (
        '{"/build": "%s", "/workspace": "%s"}' % ((tmp_path / "out").resolve(), REPO_ROOT))
    assert kw["command"][2].endswith("-m toolchain quantize --config "
                                     "/build/.docker/quantize.config.yaml --set runner=host "
                                     "--build-dir /build")


def test_gpu_only_when_asked(tmp_path):
    spec = DR.stage_spec(cfg_with(tmp_path, "docker.gpu=true"), tmp_path, "train", "train")
    (req,) = spec.create_kwargs()["device_requests"]
    assert req["Count"] == -1 and req["Capabilities"] == [["gpu"]]
    assert "--gpus" in spec.docker_argv()
    spec = DR.stage_spec(cfg_with(tmp_path), tmp_path, "train", "train")
    assert "device_requests" not in spec.create_kwargs() and "--gpus" not in spec.docker_argv()


def test_shell_argv_is_the_same_spec_interactive(tmp_path):
    cfg = cfg_with(tmp_path)
    argv = DR.shell_argv(cfg, REPO_ROOT / "build")
    script = argv[-1]
    assert argv[:-1] == [
        "docker", "run", "--rm", "-it", "--init", "--network", "host", "--user", UIDGID,
        "-w", "/workspace",
        "-v", f"{REPO_ROOT}:/workspace:rw", "-v", "/dev/shm:/dev/shm:rw",
        "-e", "HOME=/workspace/build/.docker/home", "-e", f"USER={DR._host_user()}",
        "-e", f"UID={os.getuid()}", "-e", f"GID={os.getgid()}", "-e", "PYTHONUNBUFFERED=1",
        "-e", "TOOLCHAIN_IN_CONTAINER=1", "-e", f"TOOLCHAIN_IMAGE={IMAGE}",
        "-e", 'TOOLCHAIN_HOST_MOUNTS={"/workspace": "%s"}' % REPO_ROOT,
        "--label", "toolchain.stage=shell", "--label", f"toolchain.build={REPO_ROOT / 'build'}",
        IMAGE, "bash", "-c"]
    assert "conda activate vitis-ai-tensorflow2" in script
    assert script.endswith("exec bash --norc -i")
    assert "--privileged" not in argv


def test_open_shell_execs_docker_run(tmp_path, monkeypatch):
    monkeypatch.setattr(DR.shutil, "which", lambda name: "/usr/bin/docker")
    seen = []
    DR.open_shell(cfg_with(tmp_path), tmp_path / "b", connect_fn=lambda: FakeClient(),
                  execvp=lambda f, a: seen.append((f, a)), stdin_isatty=True)
    (f, argv), = seen
    assert f == "docker" and argv[:4] == ["docker", "run", "--rm", "-it"]
    assert (tmp_path / "b" / ".docker" / "home").is_dir()


def test_open_shell_without_image_or_cli_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(DR.shutil, "which", lambda name: "/usr/bin/docker")
    with pytest.raises(DR.ImageMissing, match=f"docker pull {IMAGE}"):
        DR.open_shell(cfg_with(tmp_path), tmp_path, connect_fn=lambda: FakeClient(images=()),
                      execvp=lambda f, a: None, stdin_isatty=True)
    monkeypatch.setattr(DR.shutil, "which", lambda name: None)
    with pytest.raises(DR.DockerUnavailable, match="docker command-line client"):
        DR.open_shell(cfg_with(tmp_path), tmp_path, connect_fn=lambda: FakeClient())


# --------------------------------------------------------------------------- the snippet

FAKE_CONDA_SH = """conda() {
  if [ "$1" = activate ] && [ "$2" = "$WANT_ENV" ]; then echo "activated $2" >&2; return 0; fi
  echo "EnvironmentNameNotFound: $2" >&2; return 1
}
"""
FAKE_PY = """#!/bin/bash
if [ "$1" = "-c" ]; then exit "${YAML_RC:-0}"; fi
echo "$(basename "$0") $*"
[ -z "$SHOW_LD" ] || echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
"""


@pytest.fixture
def fake_image(tmp_path):
    """A directory standing in for the image: a fake conda.sh and python/python3."""
    bindir = tmp_path / "imgbin"
    bindir.mkdir()
    for name in ("python", "python3"):
        p = bindir / name
        p.write_text(FAKE_PY)
        p.chmod(0o755)
    conda_sh = tmp_path / "conda.sh"
    conda_sh.write_text(FAKE_CONDA_SH)

    def run(cfg, **env):
        spec = DR.stage_spec(cfg, REPO_ROOT / "build", "compile", "compile")
        e = {"PATH": f"{bindir}:/usr/bin:/bin", "WANT_ENV": "vitis-ai-tensorflow2", **env}
        return subprocess.run(spec.command, env=e, capture_output=True, text=True, timeout=30)
    return conda_sh, run


def test_snippet_activates_conda_then_runs_the_stage(tmp_path, fake_image):
    conda_sh, run = fake_image
    r = run(cfg_with(tmp_path, f"docker.conda_sh={conda_sh}"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == "activated vitis-ai-tensorflow2\n"
    assert r.stdout == ("python -m toolchain compile --config /workspace/build/.docker/"
                        "compile.config.yaml --set runner=host --build-dir /workspace/build\n")


def test_snippet_sets_what_the_images_bashrc_sets_for_xrt(tmp_path, fake_image):
    """The image's interactive bashrc (skipped by `bash -c`) sets LD_LIBRARY_PATH for XRT and
    the system libs; the activation sets the same, in front of whatever the image has."""
    conda_sh, run = fake_image
    cfg = cfg_with(tmp_path, f"docker.conda_sh={conda_sh}")
    r = run(cfg, SHOW_LD="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == (
        "LD_LIBRARY_PATH=/opt/xilinx/xrt/lib:/usr/lib:/usr/lib/x86_64-linux-gnu")
    r = run(cfg, SHOW_LD="1", LD_LIBRARY_PATH="/opt/image/lib")
    assert r.stdout.splitlines()[-1] == (
        "LD_LIBRARY_PATH=/opt/xilinx/xrt/lib:/usr/lib:/usr/lib/x86_64-linux-gnu:/opt/image/lib")


def test_snippet_falls_back_to_python3_without_conda(tmp_path, fake_image):
    _, run = fake_image
    r = run(cfg_with(tmp_path, f"docker.conda_sh={tmp_path / 'absent.sh'}"))
    assert r.returncode == 0
    assert r.stdout.startswith("python3 -m toolchain compile ")
    assert "is not in the image; using python3 without conda" in r.stderr


def test_snippet_fails_clearly_on_a_wrong_env_or_missing_pyyaml(tmp_path, fake_image):
    conda_sh, run = fake_image
    r = run(cfg_with(tmp_path, f"docker.conda_sh={conda_sh}", "docker.conda_env=nope"))
    assert r.returncode == 70 and r.stdout == ""
    r = run(cfg_with(tmp_path, f"docker.conda_sh={conda_sh}"), YAML_RC="1")
    assert r.returncode == 71 and r.stdout == ""
    assert r.stderr.splitlines()[-1].startswith("error: the image's python has no PyYAML")


# --------------------------------------------------------------------------- running

def test_run_stage_in_container_streams_and_propagates_exit_status(tmp_path, capfd):
    cfg = cfg_with(tmp_path, "runner=docker")
    cont = FakeContainer(status=3, chunks=[(b"compiling...\n", None),
                                           (None, b"error: something clear\n")])
    client = FakeClient(container=cont)
    rc = runners.run_stage("compile", cfg, Args(tmp_path / "b"), client_factory=lambda: client)
    assert rc == 3
    out, err = capfd.readouterr()
    assert out == "compiling...\n"
    assert "error: something clear\n" in err and f"in container {IMAGE}" in err
    assert cont.names() == ["attach", "start", "wait", "remove"]
    assert cont.calls[0][1] == {"stdout": True, "stderr": True, "stream": True, "logs": True,
                                "demux": True}
    assert cont.calls[-1] == ("remove", True)
    assert client.api.timeout is None          # no read timeout while streaming
    # the container reads the resolved config the host wrote
    written = tmp_path / "b" / ".docker" / "compile.config.yaml"
    assert to_dict(load_config(written)) == to_dict(cfg)
    (kw,) = client.created
    assert kw["command"][2].endswith("--set runner=host --build-dir /build")


def test_cli_exit_code_is_the_containers(tmp_path, monkeypatch):
    client = FakeClient(container=FakeContainer(status=3))
    monkeypatch.setattr(DR, "connect", lambda: client)
    rc = cli_main(["compile", "--set", "runner=docker", "--set", f"docker.image={IMAGE}",
                   "--build-dir", str(tmp_path / "b")])
    assert rc == 3


def test_killed_container_gets_a_line(tmp_path, capsys):
    cfg = cfg_with(tmp_path, "runner=docker")
    client = FakeClient(container=FakeContainer(status=137))
    rc = runners.run_stage("train", cfg, Args(tmp_path), client_factory=lambda: client)
    assert rc == 137
    assert "was killed (status 137, out of memory?)" in capsys.readouterr().err


def test_ctrl_c_stops_and_removes_the_container(tmp_path, capsys):
    cfg = cfg_with(tmp_path, "runner=docker", "docker.stop_timeout=4")
    cont = FakeContainer(chunks=[(b"epoch 1\n", None)], interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        runners.run_stage("train", cfg, Args(tmp_path), client_factory=lambda: FakeClient(
            container=cont))
    assert cont.names() == ["attach", "start", "stop", "remove"]
    assert ("stop", 4) in cont.calls and cont.calls[-1] == ("remove", True)
    assert "interrupted: stopping container" in capsys.readouterr().err


def test_ctrl_c_through_the_cli_is_exit_130(tmp_path, monkeypatch, capsys):
    cont = FakeContainer(interrupt=True)
    monkeypatch.setattr(DR, "connect", lambda: FakeClient(container=cont))
    rc = cli_main(["compile", "--set", "runner=docker", "--set", f"docker.image={IMAGE}",
                   "--build-dir", str(tmp_path)])
    assert rc == 130 and cont.calls[-1] == ("remove", True)
    assert capsys.readouterr().err.endswith("error: interrupted\n")


def test_create_failure_is_one_line(tmp_path):
    cfg = cfg_with(tmp_path, "runner=docker")
    client = FakeClient(create_error=docker.errors.APIError("invalid mount config"))
    with pytest.raises(UserError) as e:
        runners.run_stage("train", cfg, Args(tmp_path), client_factory=lambda: client)
    assert str(e.value).startswith(f"docker could not create the container from {IMAGE}")


# --------------------------------------------------------------------------- runner choice

def _dummy(calls, image, fail=None):
    """A stage (as declared in toolchain/stages.py) that records where it ran."""
    from toolchain.stages import Stage

    def fn(cfg, build_dir):
        calls.append(Path(build_dir))
        if fail:
            raise UserError(fail)
        return {}
    st = Stage("dummy", "x:y", "a test stage", sections=(), inputs=lambda c: {},
               outputs=lambda c: {"x": "dummy/x"}, image=image)
    object.__setattr__(st, "load", lambda: fn)
    return st


@pytest.fixture
def dummy_stage(monkeypatch):
    """A stage that may run anywhere: under runner=auto it stays on the host."""
    calls = []
    monkeypatch.setitem(runners.STAGES, "dummy", _dummy(calls, "no"))
    return calls


@pytest.fixture
def image_stage(monkeypatch):
    """A stage that needs the image (like compile); on the host it fails with its own line."""
    calls = []
    monkeypatch.setitem(runners.STAGES, "dummy", _dummy(calls, "required",
                                                         fail="dummy needs the compiler"))
    return calls


def test_host_runner_never_touches_docker(tmp_path, dummy_stage):
    def boom():
        raise AssertionError("docker consulted")
    assert runners.run_stage("dummy", cfg_with(tmp_path, "runner=host"), Args(tmp_path),
                             client_factory=boom) == 0
    assert dummy_stage == [tmp_path]


def test_auto_runs_stages_that_do_not_need_the_image_on_the_host(tmp_path, dummy_stage,
                                                                 capsys):
    """runner=auto sends only the stages that need the image to it (train, freeze and
    quantize run on the host even with the image present), and says nothing about it."""
    def boom():
        raise AssertionError("docker consulted")
    assert runners.run_stage("dummy", cfg_with(tmp_path), Args(tmp_path),
                             client_factory=boom) == 0
    assert dummy_stage == [tmp_path] and capsys.readouterr().err == ""


def test_auto_without_engine_the_image_stage_says_why_in_its_own_line(tmp_path, image_stage):
    with pytest.raises(UserError) as e:
        runners.run_stage("dummy", cfg_with(tmp_path), Args(tmp_path), client_factory=no_engine)
    assert str(e.value) == ("dummy needs the compiler (the container was not used: no Docker "
                            "engine answers (socket missing))")
    assert image_stage == [tmp_path]


def test_auto_without_image_the_image_stage_gives_the_pull_hint(tmp_path, image_stage):
    with pytest.raises(UserError) as e:
        runners.run_stage("dummy", cfg_with(tmp_path), Args(tmp_path),
                          client_factory=lambda: FakeClient(images=()))
    assert "(the container was not used: image" in str(e.value)
    assert f"docker pull {IMAGE}" in str(e.value) and "\n" not in str(e.value)


def test_auto_with_engine_and_image_uses_the_container_for_the_image_stage(tmp_path,
                                                                           image_stage):
    client = FakeClient()
    rc = runners.run_stage("dummy", cfg_with(tmp_path), Args(tmp_path),
                           client_factory=lambda: client)
    assert rc == 0 and image_stage == [] and len(client.created) == 1


def test_docker_runner_sends_every_stage_to_the_container(tmp_path, dummy_stage):
    client = FakeClient()
    rc = runners.run_stage("dummy", cfg_with(tmp_path, "runner=docker"), Args(tmp_path),
                           client_factory=lambda: client)
    assert rc == 0 and dummy_stage == [] and len(client.created) == 1


def test_auto_inside_our_container_runs_on_host_silently(tmp_path, image_stage, monkeypatch,
                                                         capsys):
    monkeypatch.setenv("TOOLCHAIN_IN_CONTAINER", "1")

    def boom():
        raise AssertionError("docker consulted")
    with pytest.raises(UserError, match="^dummy needs the compiler$"):
        runners.run_stage("dummy", cfg_with(tmp_path), Args(tmp_path), client_factory=boom)
    assert image_stage == [tmp_path] and capsys.readouterr().err == ""


def test_docker_runner_without_engine_or_image_is_one_clear_error(tmp_path, dummy_stage):
    with pytest.raises(DR.DockerUnavailable) as e:
        runners.run_stage("dummy", cfg_with(tmp_path, "runner=docker"), Args(tmp_path),
                          client_factory=no_engine)
    assert "no Docker engine answers" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DR.ImageMissing) as e:
        runners.run_stage("dummy", cfg_with(tmp_path, "runner=docker"), Args(tmp_path),
                          client_factory=lambda: FakeClient(images=()))
    assert str(e.value).startswith(f"docker image {IMAGE} is not on this machine: run "
                                   f"`docker pull {IMAGE}`")
    assert dummy_stage == []


# --------------------------------------------------------------------------- no engine here

def engine_answers() -> bool:
    try:
        DR.connect(timeout=3)
        return True
    except DR.DockerUnavailable:
        return False


NOWHERE = "unix:///nonexistent/docker.sock"     # no engine, whether or not one runs here


def test_real_connect_without_engine_is_docker_unavailable(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NOWHERE)
    with pytest.raises(DR.DockerUnavailable) as e:
        DR.connect(timeout=3)
    assert str(e.value).startswith(f"no Docker engine answers at {NOWHERE} (no such socket)")
    assert "runner=host" in str(e.value)


@pytest.mark.parametrize("cmd", [["compile", "--set", "runner=docker"], ["shell"]])
def test_cli_without_engine_is_one_error_line(repo_root, tmp_path, cmd):
    env = dict(os.environ, DOCKER_HOST=NOWHERE)
    r = subprocess.run([sys.executable, "-m", "toolchain", *cmd, "--build-dir",
                        str(tmp_path / "b")], cwd=repo_root, capture_output=True, text=True,
                       timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "no Docker engine answers" in lines[0] or "docker command-line client" in lines[0]
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- real container

@pytest.mark.docker
def test_real_container_runs_the_toolchain_as_this_user(tmp_path, docker_image):
    """Needs a Docker engine and an image that runs the toolchain (the stand-in, or the real
    one with PyYAML)."""
    client, image = docker_image
    cfg = cfg_with(tmp_path, f"docker.image={image}")
    build = tmp_path / "b"
    DR.prepare_state(cfg, build, "config")
    spec = DR.stage_spec(cfg, build, "config", "config")
    spec.command[2] = (spec.command[2].replace('exec "$PY"', '"$PY"')
                       + " > /build/out.yaml && touch /build/made-here")
    status = DR.run_container(client, spec)
    assert status == 0
    assert "seed:" in (build / "out.yaml").read_text()
    assert (build / "made-here").stat().st_uid == os.getuid()


# --------------------------------------------------------------------------- engine emulation

class _Engine:
    """A few Docker Engine API endpoints on a Unix socket, enough for the real docker SDK to
    run `run_container`: it records the create body and plays back demuxed output frames
    once the container is started, like an engine does after attach."""

    def __init__(self, path, images, status, frames):
        import http.server
        import json as _json
        import socketserver
        import threading
        self.created, self.calls, self.started = [], [], threading.Event()
        engine = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, code, body=None):
                data = b"" if body is None else _json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method):
                p = self.path.split("?")[0]
                p = p.split("/", 2)[2] if p.startswith("/v1.") else p[1:]
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                engine.calls.append((method, p))
                if p == "_ping":
                    data = b"OK"
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(data)
                elif p.startswith("images/") and p.endswith("/json"):
                    name = p[len("images/"):-len("/json")]
                    if name in images:
                        self._reply(200, {"Id": "sha256:feed"})
                    else:
                        self._reply(404, {"message": f"No such image: {name}"})
                elif p == "containers/create":
                    engine.created.append(_json.loads(body))
                    self._reply(201, {"Id": "abc123def456", "Warnings": []})
                elif p == "containers/abc123def456/json":
                    self._reply(200, {"Id": "abc123def456", "Config": {"Tty": False}})
                elif p == "containers/abc123def456/attach":
                    self.send_response(101)
                    self.send_header("Content-Type", "application/vnd.docker.raw-stream")
                    self.send_header("Connection", "Upgrade")
                    self.send_header("Upgrade", "tcp")
                    self.end_headers()
                    self.wfile.flush()
                    engine.started.wait(10)
                    for stream_id, payload in frames:
                        if stream_id == "sleep":
                            time.sleep(payload)
                            continue
                        self.wfile.write(bytes([stream_id, 0, 0, 0])
                                         + len(payload).to_bytes(4, "big") + payload)
                        self.wfile.flush()
                    self.close_connection = True
                elif p == "containers/abc123def456/start":
                    engine.started.set()
                    self._reply(204)
                elif p == "containers/abc123def456/wait":
                    self._reply(200, {"StatusCode": status, "Error": None})
                elif p in ("containers/abc123def456/stop", "containers/abc123def456"):
                    self._reply(204)
                else:
                    self._reply(404, {"message": f"not emulated: {method} {p}"})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_DELETE(self):
                self._route("DELETE")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(str(path), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def engine(tmp_path):
    made = []

    def start(images=(IMAGE,), status=0, frames=(), timeout=5):
        sock = Path("/tmp") / f"fake-docker-{os.getpid()}-{len(made)}.sock"
        if sock.exists():
            sock.unlink()
        e = _Engine(sock, set(images), status, list(frames))
        made.append((e, sock))
        e.client = docker.DockerClient(base_url=f"unix://{sock}", version="1.45",
                                     timeout=timeout)
        return e
    yield start
    for e, sock in made:
        e.close()
        sock.unlink(missing_ok=True)


def test_real_sdk_against_an_emulated_engine(tmp_path, engine, capfd):
    e = engine(status=3, frames=[(1, b"hello from stdout\n"), (2, b"error: from stderr\n"),
                                 (1, b"bye\n")])
    cfg = cfg_with(tmp_path, "runner=docker", "docker.gpu=true")
    rc = runners.run_stage("compile", cfg, Args(tmp_path / "b"), client_factory=lambda: e.client)
    assert rc == 3
    out, err = capfd.readouterr()
    assert out == "hello from stdout\nbye\n"
    assert "error: from stderr\n" in err
    (body,) = e.created                       # what the SDK sent to the Engine API
    host = body["HostConfig"]
    assert body["Image"] == IMAGE and body["User"] == UIDGID
    assert body["WorkingDir"] == "/workspace"
    assert body["Cmd"][:2] == ["bash", "-c"] and body["Cmd"][2].endswith(
        "--set runner=host --build-dir /build")
    assert body["Labels"] == {"toolchain.stage": "compile",
                              "toolchain.build": str((tmp_path / "b").resolve())}
    assert f"UID={os.getuid()}" in body["Env"] and "HOME=/build/.docker/home" in body["Env"]
    assert sorted(host["Binds"]) == sorted([f"{REPO_ROOT}:/workspace:rw",
                                            f"{(tmp_path / 'b').resolve()}:/build:rw",
                                            "/dev/shm:/dev/shm:rw"])
    assert host["NetworkMode"] == "host" and host["Init"] is True
    assert not host.get("Privileged") and "CapAdd" not in host
    assert host["DeviceRequests"] == [{"Driver": "", "Count": -1, "DeviceIDs": [],
                                       "Capabilities": [["gpu"]], "Options": {}}]
    methods = [c for c in e.calls if c[1].startswith("containers/")]
    assert methods[0] == ("POST", "containers/create")
    assert ("POST", "containers/abc123def456/start") in methods
    assert methods[-1] == ("DELETE", "containers/abc123def456")


def test_real_sdk_image_lookup_against_an_emulated_engine(tmp_path, engine):
    e = engine(images=())
    assert DR.has_image(e.client, IMAGE) is False
    with pytest.raises(DR.ImageMissing):
        DR.choose(cfg_with(tmp_path, "runner=docker"), "compile", connect_fn=lambda: e.client)


def test_quiet_stage_longer_than_the_client_timeout_keeps_streaming(tmp_path, engine, capfd):
    """Output after a silence longer than the client timeout still arrives (older docker
    SDKs ended the attach stream there, docker/docker-py#2166; the runner also lifts the
    timeout)."""
    e = engine(frames=[(1, b"before\n"), ("sleep", 1.6), (1, b"after the silence\n")],
               timeout=1)
    rc = runners.run_stage("compile", cfg_with(tmp_path, "runner=docker"), Args(tmp_path),
                           client_factory=lambda: e.client)
    assert rc == 0
    assert capfd.readouterr().out == "before\nafter the silence\n"


def _vitis_client_and_cfg(tmp_path):
    if not engine_answers():
        pytest.skip("no Docker engine answers")
    cfg = cfg_with(tmp_path, f"docker.image={VITIS_IMAGE}")
    client = DR.connect()
    if not DR.has_image(client, cfg.docker.image):
        pytest.skip(f"the Vitis AI image {cfg.docker.image} is not on this machine")
    return client, cfg


@pytest.mark.vitis_image
def test_real_image_has_what_compile_needs(tmp_path, capfd):
    """vai_c_tensorflow2 on PATH after activation, `xir` importable, the ZCU104 arch.json."""
    client, cfg = _vitis_client_and_cfg(tmp_path)
    arch = f"{cfg.compile.arch_dir}/ZCU104/arch.json"
    script = (DR.activation(cfg) + "\ncommand -v vai_c_tensorflow2 && "
              '"$PY" -c "import xir; print(\'xir ok\')" && cat ' + arch)
    spec = DR.build_spec(cfg, tmp_path / "b", script)
    DR.prepare_state(cfg, tmp_path / "b")
    assert DR.run_container(client, spec) == 0
    out = capfd.readouterr().out
    assert "vai_c_tensorflow2" in out and "xir ok" in out


@pytest.mark.vitis_image
def test_real_compile_stage_reaches_the_stage_in_the_container(tmp_path, repo_root):
    """Through the CLI: the compiler is found in the image, so the stage stops at the missing
    quantized model (not at 'needs the Vitis AI image')."""
    _vitis_client_and_cfg(tmp_path)
    r = subprocess.run([sys.executable, "-m", "toolchain", "compile", "--set", "runner=docker",
                        "--set", f"docker.image={VITIS_IMAGE}", "--build-dir",
                        str(tmp_path / "b")],
                       cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr
    assert "quantized.h5 is missing: run `make quantize` first" in r.stderr
