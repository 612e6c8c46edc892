"""Issue 8 (the Docker half), by contract: what a run against a real engine showed, each fault
with the test that failed before its fix. Fake docker clients only; the same behaviour against
a real engine and the stand-in image is in tests/test_docker_engine.py.

1. SIGTERM / SIGHUP stop and remove the container (only Ctrl-C did), and the stage's last
   words still reach the user.
2. Messages name host paths: container mount points are rewritten in the streamed output, and
   a path-valued config key outside the repo and the build dir is one `error:` line before any
   container starts.
3. Inside the container, a missing compiler names the image in use, not `docker pull` it.
4. A container run is recorded as one: toolchain.runners.execution_context() -> provenance.
5. `make shell` without a TTY is one `error:` line.
"""
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from toolchain import docker_runner as DR
from toolchain import runners
from toolchain.artifacts import provenance
from toolchain.cli import main as cli_main
from toolchain.config import REPO_ROOT, load_config
from toolchain.errors import UserError

IMAGE = "xilinx/vitis-ai-tensorflow2-cpu:ubuntu2004-3.5.0.300"


@pytest.fixture(autouse=True)
def _on_the_host(monkeypatch):
    for k in ("TOOLCHAIN_IN_CONTAINER", "TOOLCHAIN_IMAGE", "TOOLCHAIN_IMAGE_ID",
              "TOOLCHAIN_HOST_MOUNTS"):
        monkeypatch.delenv(k, raising=False)


def cfg_with(tmp_path, *overrides):
    p = tmp_path / "cfg.yaml"
    p.write_text("{}\n")
    return load_config(p, [f"docker.image={IMAGE}", "runner=docker", *overrides])


class Args:
    def __init__(self, build_dir):
        self.build_dir = str(build_dir)


class _Signalled(Exception):
    """What the default disposition of SIGTERM/SIGHUP (end the process) looks like to a test:
    without the runner's own handler, this escapes run_stage."""


@pytest.fixture
def default_ends_the_process():
    """SIGTERM/SIGHUP raise _Signalled unless the code under test handles them itself."""
    def die(signum, frame):
        raise _Signalled(signal.Signals(signum).name)
    old = {s: signal.signal(s, die) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield die
    for s, h in old.items():
        signal.signal(s, h)


class Container:
    """Streams `before`, then has `signum` delivered to this process (as `kill` or a CI
    timeout would) and goes on streaming until it is stopped; then the stage's last words."""
    short_id = "c0ffee123456"

    def __init__(self, signum=None, before=(), after=(), status=0, second=None):
        self.signum, self.before, self.after = signum, list(before), list(after)
        self.status, self.second = status, second
        self.calls, self.stopped = [], threading.Event()

    def attach(self, **kw):
        self.calls.append(("attach",))

        def gen():
            yield from self.before
            if self.signum is not None:
                os.kill(os.getpid(), self.signum)
                if self.second is not None:
                    os.kill(os.getpid(), self.second)
                assert self.stopped.wait(20), "the container was never stopped"
            yield from self.after
        return gen()

    def start(self):
        self.calls.append(("start",))

    def stop(self, timeout=None):
        self.calls.append(("stop", timeout))
        self.stopped.set()

    def kill(self, signal=None):
        self.calls.append(("kill",))
        self.stopped.set()

    def wait(self, **kw):
        self.calls.append(("wait",))
        return {"StatusCode": self.status, "Error": None}

    def remove(self, force=False):
        self.calls.append(("remove", force))

    def names(self):
        return [c[0] for c in self.calls]


class Client:
    def __init__(self, container, on_create=None):
        self.container, self.created = container, []
        outer = self

        class Images:
            def get(self, name):
                return type("Image", (), {"id": "sha256:feedbeef"})()

        class Containers:
            def create(self, **kw):
                outer.created.append(kw)
                if on_create:
                    on_create()
                return outer.container

        self.images, self.containers = Images(), Containers()
        self.api = type("API", (), {"timeout": 10})()

    def ping(self):
        return True


# --------------------------------------------------------------------------- 1. signals

LAST_WORDS = (None, b"error: training interrupted in epoch 2; epochs 1-1 are checkpointed in "
                    b"/build/train.resume: run the same command again to resume\n")


def error_lines(text):
    return [x for x in text.splitlines() if x.startswith("error:")]


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_and_remove_the_container(tmp_path, capfd, sig, status,
                                                          default_ends_the_process):
    cont = Container(signum=sig, before=[(b"epoch 1\n", None)], after=[LAST_WORDS], status=130)
    cfg = cfg_with(tmp_path, "docker.stop_timeout=7")
    rc = runners.run_stage("train", cfg, Args(tmp_path / "b"), client_factory=lambda: Client(cont))
    assert rc == status
    assert cont.names() == ["attach", "start", "stop", "wait", "remove"]
    assert ("stop", 7) in cont.calls and cont.calls[-1] == ("remove", True)
    out, err = capfd.readouterr()
    assert out == "epoch 1\n"
    name = signal.Signals(sig).name
    assert f"{name}: stopping container c0ffee123456 (up to 7s)" in err
    # the stage's last words arrive, with the host path
    assert (f"epochs 1-1 are checkpointed in {(tmp_path / 'b').resolve()}/train.resume: run "
            f"the same command again") in err
    # one error line: the stage's own, which names the fix
    assert len(error_lines(err)) == 1 and "training interrupted" in error_lines(err)[0]
    assert err.splitlines()[-1] == f"{name}: container c0ffee123456 stopped and removed"
    # the process's own handlers are back
    assert signal.getsignal(sig) is default_ends_the_process


def test_a_stage_that_says_nothing_gets_the_runners_error_line(tmp_path, capfd,
                                                               default_ends_the_process):
    cont = Container(signum=signal.SIGTERM, status=143)
    rc = runners.run_stage("quantize", cfg_with(tmp_path), Args(tmp_path / "b"),
                           client_factory=lambda: Client(cont))
    assert rc == 143 and cont.calls[-1] == ("remove", True)
    assert error_lines(capfd.readouterr().err) == [
        "error: SIGTERM received: the container c0ffee123456 running quantize was stopped and "
        "removed; run the same command again to go on"]


def test_sigint_stops_drains_and_removes_then_exits_130(tmp_path, capfd, monkeypatch):
    cont = Container(signum=signal.SIGINT, after=[LAST_WORDS], status=130)
    monkeypatch.setattr(DR, "connect", lambda: Client(cont))
    rc = cli_main(["train", "--set", "runner=docker", "--set", f"docker.image={IMAGE}",
                   "--build-dir", str(tmp_path / "b")])
    assert rc == 130
    assert cont.names() == ["attach", "start", "stop", "wait", "remove"]
    err = capfd.readouterr().err
    assert "SIGINT: stopping container" in err and "training interrupted in epoch 2" in err
    assert len(error_lines(err)) == 1           # the stage's; not also "error: interrupted"
    assert err.endswith("SIGINT: container c0ffee123456 stopped and removed\n")


def test_a_signal_during_create_never_starts_the_container(tmp_path, capfd,
                                                           default_ends_the_process):
    cont = Container()
    client = Client(cont, on_create=lambda: os.kill(os.getpid(), signal.SIGTERM))
    rc = runners.run_stage("train", cfg_with(tmp_path), Args(tmp_path / "b"),
                           client_factory=lambda: client)
    assert rc == 143
    assert cont.names() == ["remove"]
    assert error_lines(capfd.readouterr().err)[0].startswith("error: SIGTERM received")


def test_make_sends_sigterm_twice_the_stop_stays_graceful(tmp_path, default_ends_the_process):
    """GNU make passes a SIGTERM on to its children, who got one from the process group
    already: the second SIGTERM must not turn the graceful stop into a kill."""
    cont = Container(signum=signal.SIGTERM, second=signal.SIGTERM, after=[LAST_WORDS])
    rc = runners.run_stage("train", cfg_with(tmp_path), Args(tmp_path / "b"),
                           client_factory=lambda: Client(cont))
    assert rc == 143 and "kill" not in cont.names() and "stop" in cont.names()


def test_a_second_ctrl_c_kills_at_once(tmp_path):
    cont = Container(signum=signal.SIGINT, second=signal.SIGINT, after=[LAST_WORDS])
    rc = runners.run_stage("train", cfg_with(tmp_path), Args(tmp_path / "b"),
                           client_factory=lambda: Client(cont))
    assert rc == 130 and "kill" in cont.names() and cont.calls[-1] == ("remove", True)


def test_sighup_with_the_terminal_gone_still_removes_the_container(tmp_path,
                                                                   default_ends_the_process):
    class DeadTerminal:
        def write(self, s):
            raise OSError(5, "Input/output error")

        def flush(self):
            raise OSError(5, "Input/output error")

    cont = Container(signum=signal.SIGHUP, before=[(b"x\n", None)], after=[LAST_WORDS])
    spec = DR.stage_spec(cfg_with(tmp_path), tmp_path / "b", "train", "train")
    with pytest.raises(DR.StageInterrupted) as e:
        DR.run_container(Client(cont), spec, out=DeadTerminal(), err=DeadTerminal())
    assert e.value.exit_code == 129 and cont.calls[-1] == ("remove", True)


# --------------------------------------------------------------------------- 2. host paths

def test_rewriter_maps_mount_points_to_host_paths_line_by_line():
    rw = DR.PathRewriter({"/workspace": "/home/me/repo", "/build": "/scratch/b"})
    out = rw.feed(b"outputs in /build/train/\nerror: /workspace/da")
    assert out == b"outputs in /scratch/b/train/\n"            # the unfinished line waits
    out += rw.feed(b"ta/x.csv: file not found\rprogress 1/2")
    assert out == (b"outputs in /scratch/b/train/\n"
                   b"error: /home/me/repo/data/x.csv: file not found\r")
    assert rw.flush() == b"progress 1/2"
    # whole path components only
    assert rw.feed(b"/builder /a/build /workspaces x/build '/build' /build: /build\n") == (
        b"/builder /a/build /workspaces x/build '/scratch/b' /scratch/b: /scratch/b\n")
    assert DR.PathRewriter({}).feed(b"/workspace\n") == b"/workspace\n"


def test_streamed_output_names_host_paths(tmp_path, capfd):
    """Before: `outputs in /workspace/build/train/`, `error: /workspace/data/...`."""
    chunks = [(b"outputs in /build/train/\n", None),
              (None, b"error: /workspace/data/sign_mnist/x.csv.gz: file not "),
              (None, b"found\n")]
    cont = Container(before=chunks, status=2)
    rc = runners.run_stage("train", cfg_with(tmp_path), Args(tmp_path / "b"),
                           client_factory=lambda: Client(cont))
    assert rc == 2
    out, err = capfd.readouterr()
    assert out == f"outputs in {(tmp_path / 'b').resolve()}/train/\n"
    assert f"error: {REPO_ROOT}/data/sign_mnist/x.csv.gz: file not found\n" in err
    assert "/workspace" not in out + err


def test_host_path_keys_are_marked_and_container_paths_are_not():
    keys = {k for k, _ in DR.path_keys(load_config())}
    assert {"data.train_csv", "data.test_csv"} <= keys
    # paths inside the image or on the board are not host files
    assert not keys & {"docker.conda_sh", "compile.arch_dir", "compile.tool_dir",
                       "board.remote_dir"}


def test_list_valued_path_keys_are_checked_item_by_item(tmp_path):
    from dataclasses import dataclass, field
    from toolchain.config import opt

    @dataclass
    class Data:
        folders: list = opt(["data/a"], "folders", path=True)
        name: str = opt("x", "not a path")

    @dataclass
    class Cfg:
        data: Data = field(default_factory=Data)

    cfg = Cfg(Data(folders=["data/a", str(tmp_path / "out")]))
    assert list(DR.path_keys(cfg)) == [("data.folders[0]", "data/a"),
                                       ("data.folders[1]", str(tmp_path / "out"))]
    with pytest.raises(UserError, match=r"^config key 'data.folders\[1\]' is "):
        DR.check_mounted_paths(cfg, tmp_path / "b")


def test_a_data_file_outside_the_mounts_is_one_line_before_any_container(tmp_path):
    """Before: the container said `/workspace/...: file not found` for a file that exists."""
    outside = tmp_path / "elsewhere.csv.gz"
    outside.write_bytes(b"")
    cont = Container()
    client = Client(cont)
    with pytest.raises(UserError) as e:
        runners.run_stage("train", cfg_with(tmp_path, f"data.test_csv={outside}"),
                          Args(REPO_ROOT / "build"), client_factory=lambda: client)
    msg = str(e.value)
    assert msg.startswith(f"config key 'data.test_csv' is {outside}: not mounted in the "
                          f"container, which sees only the repo ({REPO_ROOT}) and the build dir")
    assert msg.endswith("put it under the repo or the build dir, or run with "
                        "--set runner=host") and "\n" not in msg
    assert client.created == [] and cont.calls == []


def test_files_under_the_repo_or_the_build_dir_pass(tmp_path):
    build = tmp_path / "b"
    (build / "data").mkdir(parents=True)
    (build / "data" / "t.csv").write_text("")
    DR.check_mounted_paths(cfg_with(tmp_path, f"data.train_csv={build / 'data' / 't.csv'}"),
                           build)
    DR.check_mounted_paths(cfg_with(tmp_path, "data.test_csv=data/not-there-yet.csv"), build)


def test_a_symlink_out_of_the_repo_is_refused(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    target = tmp_path / "real.csv"
    target.write_text("")
    (repo / "data" / "link.csv").symlink_to(target)
    with pytest.raises(UserError, match=f"a symlink to {target}"):
        DR.check_mounted_paths(cfg_with(tmp_path, "data.train_csv=data/link.csv"),
                               tmp_path / "b", repo=repo)


def test_cli_unmounted_path_is_one_error_line(repo_root, tmp_path):
    r = subprocess.run([sys.executable, "-m", "toolchain", "train", "--set", "runner=docker",
                        "--set", f"data.train_csv={tmp_path}/t.csv", "--build-dir",
                        str(tmp_path / "b")], cwd=repo_root, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, DOCKER_HOST="unix:///nonexistent.sock"))
    # no engine here: the engine error comes first, in one line; with an engine (the docker
    # tests) the mount check does
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("error: ")


# --------------------------------------------------------------------------- 3. compiler

def test_missing_compiler_inside_the_container_names_the_image(tmp_path, monkeypatch):
    """Before: 'run `make compile RUNNER=docker`' and '`docker pull <the image in use>`'."""
    from compile.compile import find_compiler
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("TOOLCHAIN_IN_CONTAINER", "1")
    monkeypatch.setenv("TOOLCHAIN_IMAGE", "signlang/vitis-ai-standin:local")
    with pytest.raises(UserError) as e:
        find_compiler(load_config(None, []))
    msg = str(e.value)
    assert msg.startswith("vai_c_tensorflow2 is not on PATH in image "
                          "signlang/vitis-ai-standin:local (conda env vitis-ai-tensorflow2): "
                          "this image has no Vitis AI compiler")
    assert "docker pull" not in msg and "RUNNER=docker" not in msg and "\n" not in msg
    assert "docker.image" in msg and "compile.tool_dir" in msg


def test_missing_compiler_on_the_host_still_points_at_the_container(tmp_path, monkeypatch):
    from compile.compile import find_compiler
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="RUNNER=docker"):
        find_compiler(load_config(None, []))


# --------------------------------------------------------------------------- 4. provenance

def test_execution_context_on_the_host():
    assert runners.execution_context() == {"runner": "host"}
    assert provenance("train", load_config())["execution"] == {"runner": "host"}


def test_a_container_run_is_recorded_as_one(tmp_path, monkeypatch):
    """Before: provenance.json said `runner: host` (the config the container reads) and no
    image. The runner tells the container its image; provenance records it."""
    cont = Container()
    client = Client(cont)
    runners.run_stage("train", cfg_with(tmp_path), Args(tmp_path / "b"),
                      client_factory=lambda: client)
    (kw,) = client.created
    for k, v in kw["environment"].items():
        monkeypatch.setenv(k, v)
    ctx = {"runner": "docker", "image": IMAGE, "image_id": "sha256:feedbeef",
           "host_paths": {"/build": str((tmp_path / "b").resolve()), "/workspace": str(REPO_ROOT)}}
    assert runners.execution_context() == ctx
    assert provenance("train", load_config(None, ["runner=host"]))["execution"] == ctx


# --------------------------------------------------------------------------- 5. make shell

def test_shell_without_a_tty_is_one_line(tmp_path, monkeypatch):
    """Before: docker's own 'the input device is not a TTY' after the `docker run -it` line."""
    monkeypatch.setattr(DR.shutil, "which", lambda name: "/usr/bin/docker")
    ran = []
    with pytest.raises(UserError) as e:
        DR.open_shell(cfg_with(tmp_path), tmp_path / "b", connect_fn=lambda: Client(Container()),
                      execvp=lambda f, a: ran.append(a), stdin_isatty=False)
    assert str(e.value).startswith("make shell needs a terminal: its input is not a TTY")
    assert ran == [] and not (tmp_path / "b").exists()


def test_shell_tty_check_reads_stdin(monkeypatch):
    r, w = os.pipe()
    try:
        monkeypatch.setattr(sys, "stdin", os.fdopen(r))
        assert DR._stdin_isatty() is False
    finally:
        os.close(w)
