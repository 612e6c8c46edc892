"""Run a stage inside the Vitis AI image, non-interactively, through the Python docker SDK.

What the container gets (one spec, used by both `run_in_container` and `make shell`):
- image `cfg.docker.image` (pinned tag), never privileged, `--init` so Ctrl-C reaches the stage;
- the repository mounted read-write at /workspace (the working directory), the build dir at
  /build when it lies outside the repository, /dev/shm like Vitis AI's docker_run.sh;
- `user=<uid>:<gid>` of the host user, so files written into the repo stay the user's
  (the image's own uid remapping lives in its interactive bashrc, which `bash -c` skips), and a
  writable HOME under the build dir; env USER/UID/GID as docker_run.sh passes them;
- network `cfg.docker.network` (host, like docker_run.sh); `--gpus all` only when cfg.docker.gpu;
- command: `bash -c` with the framework env activated (`source <conda_sh> && conda activate
  <env>`, or plain python3 when the image has no conda), then
  `python -m toolchain <stage> --config <build>/.docker/<stage>.yaml --set runner=host
  --build-dir <build in the container>`.

Logs stream live (stdout to stdout, stderr to stderr), line by line with the container's
mount points (/workspace, /build) rewritten to the host paths they stand for, so every path a
user reads exists on the host. The container's exit status is returned and the container is
removed afterwards. SIGINT (Ctrl-C), SIGTERM (a CI timeout, a job cancel, `kill`) and SIGHUP
stop it (SIGTERM through `--init`, SIGKILL after docker.stop_timeout), keep streaming its last
words, remove it, and end the run with status 128+signal (130, 143, 129) and one `error:`
line (the stage's own, when it printed one on the way out).

Before a stage starts, every path-valued config key (opt(path=True)) is checked to lie under
the repository or the build dir, the only host directories the container sees.

Tested with a fake client, an emulated Engine API, and against a real engine with a stand-in
image (scripts/standin-image.sh); not yet run against the real Vitis AI image.
"""
from __future__ import annotations

import dataclasses
import getpass
import json
import os
import re
import shlex
import shutil
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from .config import REPO_ROOT, to_dict
from .errors import UserError

CONTAINER_REPO = "/workspace"
CONTAINER_BUILD = "/build"          # only used when the build dir is outside the repository
STATE_DIR = ".docker"               # under the build dir: resolved configs and the HOME
# What the image's interactive /etc/bash.bashrc sets for XRT and the system libraries (`bash -c`
# never reads it); xir and vai_c need it. Kept first, anything the image already set follows.
XRT_LD_LIBRARY_PATH = "/opt/xilinx/xrt/lib:/usr/lib:/usr/lib/x86_64-linux-gnu"
# How the container learns where it runs (toolchain.runners.execution_context reads them).
ENV_IMAGE, ENV_IMAGE_ID, ENV_MOUNTS = ("TOOLCHAIN_IMAGE", "TOOLCHAIN_IMAGE_ID",
                                       "TOOLCHAIN_HOST_MOUNTS")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
INSTALL_HINT = ("install and start Docker Engine (https://docs.docker.com/engine/install/) "
                "and make sure this user may use it, or run with --set runner=host")


class DockerUnavailable(UserError):
    """No engine answers (or the SDK is missing). `reason` is the short why, without the fix."""

    def __init__(self, message: str, reason: Optional[str] = None):
        super().__init__(message)
        self.reason = reason or message


class ImageMissing(UserError):
    """The engine answers but the configured image is not on this machine."""


def _one_line(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --------------------------------------------------------------------------- engine / image

def connect(timeout: int = 10):
    """A docker SDK client whose engine answered a ping, or DockerUnavailable (one line)."""
    try:
        import docker
    except ImportError:
        raise DockerUnavailable("the Python docker SDK is not installed (pip install "
                                "docker==7.2.0, it is in requirements/host-lock.txt), or run "
                                "with --set runner=host",
                                reason="the Python docker SDK is not installed") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:  # DockerException, or requests errors the SDK does not wrap
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        why = "no such socket" if "FileNotFoundError" in repr(e) else _one_line(e)
        reason = f"no Docker engine answers at {host} ({why})"
        raise DockerUnavailable(f"{reason}: {INSTALL_HINT}", reason=reason) from None
    return client


def pull_hint(image: str) -> str:
    return (f"docker image {image} is not on this machine: run `docker pull {image}` (then "
            f"build docker/Dockerfile if the image lacks PyYAML, see docker/README.md), or set "
            f"docker.image to an image you have")


def has_image(client, image: str) -> bool:
    import docker
    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as e:
        raise DockerUnavailable(f"the Docker engine did not answer about image {image} "
                                f"({_one_line(e)}): {INSTALL_HINT}") from None


def require_image(client, image: str) -> None:
    if not has_image(client, image):
        raise ImageMissing(pull_hint(image))


def image_id(client, image: str) -> Optional[str]:
    """The image's id (sha256:...) for provenance, or None if the engine does not say."""
    try:
        return getattr(client.images.get(image), "id", None)
    except Exception:
        return None


# --------------------------------------------------------------------------- the spec

@dataclass
class ContainerSpec:
    image: str
    command: List[str]                    # argv after the image (bash -c <script>)
    working_dir: str
    user: str
    environment: Dict[str, str]
    volumes: Dict[str, Dict[str, str]]    # host path -> {"bind": path, "mode": "rw"}
    network_mode: str = "host"
    gpu: bool = False
    init: bool = True
    labels: Dict[str, str] = field(default_factory=dict)

    def create_kwargs(self) -> dict:
        """Keyword arguments for docker SDK `client.containers.create`."""
        kw = dict(image=self.image, command=self.command, working_dir=self.working_dir,
                  user=self.user, environment=dict(self.environment),
                  volumes={k: dict(v) for k, v in self.volumes.items()},
                  network_mode=self.network_mode, privileged=False, init=self.init,
                  labels=dict(self.labels), detach=True, tty=False, stdin_open=False)
        if self.gpu:
            import docker
            kw["device_requests"] = [docker.types.DeviceRequest(count=-1,
                                                                capabilities=[["gpu"]])]
        return kw

    def docker_argv(self, interactive: bool = True) -> List[str]:
        """The equivalent `docker run` command line (used for `make shell`)."""
        argv = ["docker", "run", "--rm"]
        if interactive:
            argv.append("-it")
        if self.init:
            argv.append("--init")
        argv += ["--network", self.network_mode, "--user", self.user, "-w", self.working_dir]
        for host, m in self.volumes.items():
            argv += ["-v", f"{host}:{m['bind']}:{m.get('mode', 'rw')}"]
        for k, v in self.environment.items():
            argv += ["-e", f"{k}={v}"]
        for k, v in self.labels.items():
            argv += ["--label", f"{k}={v}"]
        if self.gpu:
            argv += ["--gpus", "all"]
        return argv + [self.image] + list(self.command)


@dataclass(frozen=True)
class Paths:
    host_build: Path
    container_build: str
    volumes: Dict[str, Dict[str, str]]


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def container_paths(build_dir, shm: bool = True, repo: Path = REPO_ROOT) -> Paths:
    """Mounts and the build dir as the container sees it."""
    repo = Path(repo).resolve()
    build = Path(build_dir).resolve()
    volumes = {str(repo): {"bind": CONTAINER_REPO, "mode": "rw"}}
    if _is_within(build, repo):
        rel = build.relative_to(repo).as_posix()
        cbuild = CONTAINER_REPO if rel == "." else f"{CONTAINER_REPO}/{rel}"
    else:
        volumes[str(build)] = {"bind": CONTAINER_BUILD, "mode": "rw"}
        cbuild = CONTAINER_BUILD
    if shm:
        volumes["/dev/shm"] = {"bind": "/dev/shm", "mode": "rw"}
    return Paths(build, cbuild, volumes)


LD_EXPORT = ("export LD_LIBRARY_PATH=" + XRT_LD_LIBRARY_PATH
             + "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")


def activation(cfg) -> str:
    """Shell lines that set what the image's interactive bashrc would (LD_LIBRARY_PATH for XRT
    and the system libs), then activate the framework env, or fall back to python3 without
    conda."""
    sh, env = shlex.quote(cfg.docker.conda_sh), shlex.quote(cfg.docker.conda_env)
    return (LD_EXPORT + "\n"
            f"if [ -f {sh} ]; then . {sh} && conda activate {env} || exit 70; PY=python; "
            f"else echo \"note: {cfg.docker.conda_sh} is not in the image; using python3 "
            f"without conda\" >&2; PY=python3; fi")


YAML_CHECK = ('"$PY" -c "import yaml" 2>/dev/null || { echo "error: the image\'s python has no '
              'PyYAML, which the toolchain needs: build docker/Dockerfile and set docker.image '
              'to it (see docker/README.md)" >&2; exit 71; }')


def stage_script(cfg, cli_command: str, config_in_container: str,
                 build_in_container: str) -> str:
    inner = ["-m", "toolchain", cli_command, "--config", config_in_container,
             "--set", "runner=host", "--build-dir", build_in_container]
    return (activation(cfg) + "\n" + YAML_CHECK + "\n"
            + 'exec "$PY" ' + " ".join(shlex.quote(a) for a in inner))


def shell_script(cfg) -> str:
    return (activation(cfg) + "\n"
            + "export PS1='[vitis-ai] \\w \\$ '\nexec bash --norc -i")


def _host_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "user")


def host_paths(volumes: Dict[str, Dict[str, str]]) -> Dict[str, str]:
    """Container mount point -> host path, for the mounts whose two sides differ."""
    return {m["bind"]: host for host, m in volumes.items() if m["bind"] != host}


def build_spec(cfg, build_dir, script: str, labels: Optional[Dict[str, str]] = None,
               repo: Path = REPO_ROOT, image_id: Optional[str] = None) -> ContainerSpec:
    paths = container_paths(build_dir, cfg.docker.shm, repo)
    uid, gid = os.getuid(), os.getgid()
    env = {"HOME": f"{paths.container_build}/{STATE_DIR}/home", "USER": _host_user(),
           "UID": str(uid), "GID": str(gid), "PYTHONUNBUFFERED": "1",
           "TOOLCHAIN_IN_CONTAINER": "1", ENV_IMAGE: cfg.docker.image}
    if image_id:
        env[ENV_IMAGE_ID] = image_id
    env[ENV_MOUNTS] = json.dumps(host_paths(paths.volumes), sort_keys=True)
    env.update(cfg.docker.extra_env)
    return ContainerSpec(image=cfg.docker.image, command=["bash", "-c", script],
                         working_dir=CONTAINER_REPO, user=f"{uid}:{gid}", environment=env,
                         volumes=paths.volumes, network_mode=cfg.docker.network,
                         gpu=cfg.docker.gpu,
                         labels={**(labels or {}), "toolchain.build": str(paths.host_build)})


def prepare_state(cfg, build_dir, stage: Optional[str] = None) -> Optional[Path]:
    """Create <build>/.docker/home (owned by this user, so the container's HOME is writable)
    and, for a stage, write the resolved config the container reads; its host path."""
    state = Path(build_dir).resolve() / STATE_DIR
    (state / "home").mkdir(parents=True, exist_ok=True)
    if stage is None:
        return None
    import yaml
    from .artifacts import atomic_write_text
    path = state / f"{stage}.config.yaml"
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def stage_spec(cfg, build_dir, stage: str, cli_command: str,
               repo: Path = REPO_ROOT, image_id: Optional[str] = None) -> ContainerSpec:
    paths = container_paths(build_dir, cfg.docker.shm, repo)
    cfg_in = f"{paths.container_build}/{STATE_DIR}/{stage}.config.yaml"
    script = stage_script(cfg, cli_command, cfg_in, paths.container_build)
    return build_spec(cfg, build_dir, script, labels={"toolchain.stage": stage}, repo=repo,
                      image_id=image_id)


# --------------------------------------------------------------------------- pre-flight

def path_keys(obj, prefix: str = "") -> Iterator[Tuple[str, str]]:
    """(dotted key, value) of every path in a config key marked opt(path=True): a string, or
    each string of a list (`key[i]`)."""
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        val = getattr(obj, f.name)
        if dataclasses.is_dataclass(val):
            yield from path_keys(val, key)
        elif f.metadata.get("path") and isinstance(val, str) and val:
            yield key, val
        elif f.metadata.get("path") and isinstance(val, (list, tuple)):
            for i, v in enumerate(val):
                if isinstance(v, str) and v:
                    yield f"{key}[{i}]", v


def check_mounted_paths(cfg, build_dir, repo: Path = REPO_ROOT) -> None:
    """One UserError line for the first path-valued config key the container cannot see:
    only the repository and the build dir are mounted (symlinks are followed: a link in the
    repo pointing elsewhere does not resolve in the container)."""
    repo = Path(repo).resolve()
    build = Path(build_dir).resolve()
    for key, value in path_keys(cfg):
        p = Path(value).expanduser()
        p = p if p.is_absolute() else repo / p        # as config.resolve_path does
        real = p.resolve()
        if _is_within(real, repo) or _is_within(real, build):
            continue
        link = f" (a symlink to {real})" if real != Path(os.path.abspath(p)) else ""
        missing = "" if p.exists() else "; it does not exist on this machine either"
        raise UserError(f"config key '{key}' is {p}{link}: not mounted in the container, which "
                        f"sees only the repo ({repo}) and the build dir ({build}){missing}: put "
                        f"it under the repo or the build dir, or run with --set runner=host")


# --------------------------------------------------------------------------- running

class PathRewriter:
    """Rewrites container paths to host paths in a byte stream, a whole line at a time (a
    path split across two chunks is still found). `mapping`: container prefix -> host path.
    A prefix matches only as a whole path component (`/build/x`, `/build:` and `/build` at
    the end, not `/builder` or `/a/build`)."""

    MAX_PENDING = 64 * 1024      # a line longer than this is passed on unfinished

    def __init__(self, mapping: Dict[str, str]):
        self.mapping = {k.encode(): v.encode() for k, v in mapping.items()}
        self.pending = b""
        alts = b"|".join(re.escape(k) for k in sorted(self.mapping, key=len, reverse=True))
        self.pattern = (re.compile(rb"(?<![\w.~/-])(" + alts + rb")(?![\w.~-])")
                        if self.mapping else None)

    def _sub(self, data: bytes) -> bytes:
        if self.pattern is None or not data:
            return data
        return self.pattern.sub(lambda m: self.mapping[m.group(1)], data)

    def feed(self, data: bytes) -> bytes:
        """The complete lines (ending in \\n or \\r) so far, rewritten; keeps the rest."""
        data = self.pending + data
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if cut == 0 and len(data) > self.MAX_PENDING:
            cut = len(data)
        self.pending = data[cut:]
        return self._sub(data[:cut])

    def flush(self) -> bytes:
        data, self.pending = self.pending, b""
        return self._sub(data)


class _Output:
    """One output stream (stdout or stderr) of the container: rewritten, written, flushed.
    After SIGHUP the terminal may be gone: a failing write stops the echo, not the cleanup."""

    ERROR_LINE = re.compile(rb"(?:^|[\r\n])error: ")

    def __init__(self, stream, mapping: Dict[str, str]):
        self.stream, self.rewriter, self.broken = stream, PathRewriter(mapping), False
        self.said_error = False         # the stage printed its own `error:` line

    def _write(self, data: bytes) -> None:
        if not data or self.broken:
            return
        try:
            buf = getattr(self.stream, "buffer", None)
            if buf is not None:
                buf.write(data)
            else:
                self.stream.write(data.decode("utf-8", "replace"))
            self.stream.flush()
        except (OSError, ValueError):
            self.broken = True

    def write(self, data: bytes) -> None:
        self._emit(self.rewriter.feed(data))

    def close(self) -> None:
        self._emit(self.rewriter.flush())

    def _emit(self, lines: bytes) -> None:
        if lines and self.ERROR_LINE.search(lines):
            self.said_error = True
        self._write(lines)


def _say(stream, text: str) -> None:
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        pass


class _StopOnSignal:
    """While a container runs, SIGINT, SIGTERM and SIGHUP stop it instead of ending this
    process: the first one starts `container.stop(stop_timeout)` in a thread (the engine
    sends SIGTERM through --init, SIGKILL after the timeout) while the main thread keeps
    streaming the container's last output; a second Ctrl-C kills it at once. The handler only
    records and starts a thread (no printing from a handler: a write interrupted by a signal
    must not be re-entered). A signal that arrives before the container is started is
    acted on as soon as it is (`watch`)."""

    def __init__(self, stop_timeout: int, err):
        self.stop_timeout, self.err = stop_timeout, err
        self.signum: Optional[int] = None
        self.container = None
        self.threads: List[threading.Thread] = []
        self.errors: List[str] = []
        self._old: Dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                try:
                    self._old[s] = signal.signal(s, self._handler)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        return False

    def _handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            if self.container is not None:
                self._spawn(self._stop)
        elif signum == signal.SIGINT and self.container is not None:
            # a second Ctrl-C: kill now. A repeated SIGTERM is not escalated: GNU make passes
            # one on to its children, who already had one from the process group.
            self._spawn(self._kill)

    def watch(self, container) -> None:
        """From now on a signal stops `container`; one that came before stops it now."""
        self.container = container
        if self.signum is not None:
            self._spawn(self._stop)

    def _spawn(self, fn) -> None:
        t = threading.Thread(target=fn, daemon=True)
        self.threads.append(t)
        t.start()

    def _stop(self):
        _say(self.err, f"\n{signal.Signals(self.signum).name}: stopping container "
                       f"{self.container.short_id} (up to {self.stop_timeout}s)")
        try:
            self.container.stop(timeout=self.stop_timeout)
        except Exception as e:
            self.errors.append(_one_line(e))

    def _kill(self):
        try:
            self.container.kill()
        except Exception:
            pass

    def join(self) -> None:
        for t in list(self.threads):
            t.join(self.stop_timeout + 30)


class StageInterrupted(UserError):
    """A signal stopped the container; exit status 128+signal. `stage_said` when the stage
    printed its own `error:` line on the way out (then that is the run's one error line)."""

    def __init__(self, message: str, exit_code: int, signum: int, stage_said: bool,
                 container_id: str):
        super().__init__(message, exit_code)
        self.signum, self.stage_said, self.container_id = signum, stage_said, container_id


def run_container(client, spec: ContainerSpec, stop_timeout: int = 10,
                  out=None, err=None, mapping: Optional[Dict[str, str]] = None) -> int:
    """Create, attach, start; stream output live (container paths rewritten to host paths
    by `mapping`, default: the spec's mounts); return the exit status; always remove.
    SIGINT/SIGTERM/SIGHUP stop the container and remove it, then raise StageInterrupted
    (exit status 128+signal: 130, 143, 129)."""
    import docker
    out, err = out or sys.stdout, err or sys.stderr
    mapping = host_paths(spec.volumes) if mapping is None else mapping
    # No read timeout from here on: older docker SDKs ended attach(stream=True) silently after
    # that many quiet seconds, as if the container had finished (docker/docker-py#2166,
    # #2077). 7.x polls the socket without a timeout on Linux; this keeps it so elsewhere.
    api = getattr(client, "api", None)
    if api is not None and hasattr(api, "timeout"):
        api.timeout = None
    with _StopOnSignal(stop_timeout, err) as guard:
        try:
            container = client.containers.create(**spec.create_kwargs())
        except docker.errors.ImageNotFound:
            raise ImageMissing(pull_hint(spec.image)) from None
        except docker.errors.DockerException as e:
            raise UserError(f"docker could not create the container from {spec.image}: "
                            f"{_one_line(e, 300)}") from None
        result, said_error = None, False
        try:
            if guard.signum is None:
                try:
                    stream = container.attach(stdout=True, stderr=True, stream=True,
                                              logs=True, demux=True)
                    container.start()
                except docker.errors.DockerException as e:
                    raise UserError(f"docker could not start the container from "
                                    f"{spec.image}: {_one_line(e, 300)}") from None
                guard.watch(container)
                o_out, o_err = _Output(out, mapping), _Output(err, mapping)
                try:
                    for chunk in stream:
                        o, e = chunk if isinstance(chunk, tuple) else (chunk, None)
                        if o:
                            o_out.write(o)
                        if e:
                            o_err.write(e)
                finally:
                    o_out.close()
                    o_err.close()
                    said_error = o_out.said_error or o_err.said_error
                result = container.wait()
        except KeyboardInterrupt:       # not from SIGINT (handled above): stop, then go on
            _say(err, f"\ninterrupted: stopping container {container.short_id} "
                      f"(up to {stop_timeout}s)")
            try:
                container.stop(timeout=stop_timeout)
            except Exception as e:
                _say(err, f"warning: could not stop container {container.short_id}: "
                          f"{_one_line(e)}")
            raise
        finally:
            guard.join()
            try:
                container.remove(force=True)
            except Exception as e:
                _say(err, f"warning: could not remove container {container.short_id}: "
                          f"{_one_line(e)} (remove it with `docker rm -f "
                          f"{container.short_id}`)")
    if guard.signum is not None:
        name = signal.Signals(guard.signum).name
        if guard.errors:
            _say(err, f"warning: stopping container {container.short_id}: {guard.errors[0]}")
        raise StageInterrupted(f"{name} received: the container {container.short_id} running "
                               f"{spec.labels.get('toolchain.stage', spec.image)} was stopped "
                               f"and removed; run the same command again to go on",
                               exit_code=128 + int(guard.signum), signum=int(guard.signum),
                               stage_said=said_error, container_id=container.short_id)
    status = int(result.get("StatusCode", 1)) if isinstance(result, dict) else int(result)
    problem = (result.get("Error") or {}) if isinstance(result, dict) else {}
    if problem and problem.get("Message"):
        _say(err, f"docker: {problem['Message']}")
    return status


def run_in_container(stage: str, cli_command: str, cfg, build_dir, client, out=None,
                     err=None) -> int:
    """Run `python -m toolchain <cli_command>` in the image; the container's exit status."""
    err = err or sys.stderr
    check_mounted_paths(cfg, build_dir)
    prepare_state(cfg, build_dir, stage)
    spec = stage_spec(cfg, build_dir, stage, cli_command,
                      image_id=image_id(client, cfg.docker.image))
    print(f"running '{cli_command}' in container {cfg.docker.image}", file=err, flush=True)
    try:
        status = run_container(client, spec, cfg.docker.stop_timeout, out=out, err=err)
    except StageInterrupted as e:
        # one `error:` line per run: the stage's own ("... run the same command again to
        # resume") when it printed one on the way out, else this one
        if e.stage_said:
            _say(err, f"{signal.Signals(e.signum).name}: container {e.container_id} stopped "
                      f"and removed")
        else:
            _say(err, f"error: {e}")
        return e.exit_code
    if status >= 128:
        # killed by a signal: the stage could not say why itself
        print(f"error: the container running '{cli_command}' was killed (status {status}"
              f"{', out of memory?' if status == 137 else ''})", file=err, flush=True)
    elif status == 70:
        print(f"error: `conda activate {cfg.docker.conda_env}` failed in {cfg.docker.image}: "
              f"set docker.conda_env to an env the image has", file=err, flush=True)
    return status


# --------------------------------------------------------------------------- runner choice

def in_container() -> bool:
    """True inside a container this runner started (`make shell` or a stage)."""
    return os.environ.get("TOOLCHAIN_IN_CONTAINER") == "1"


def choose(cfg, stage: str, connect_fn=None, err=None, fallback_note=None):
    """('docker', client) or ('host', None) for cfg.runner; a one-line notice when `auto`
    falls back to the host (or, with `fallback_note`, the reason handed to that callable
    instead), a one-line UserError when `docker` cannot be honoured."""
    err = err or sys.stderr
    connect_fn = connect_fn or connect
    if cfg.runner == "host" or (cfg.runner == "auto" and in_container()):
        return "host", None
    if cfg.runner == "docker":
        client = connect_fn()
        require_image(client, cfg.docker.image)
        return "docker", client
    try:                                           # auto
        client = connect_fn()
        if has_image(client, cfg.docker.image):
            return "docker", client
        why = (f"image {cfg.docker.image} is not on this machine "
               f"(`docker pull {cfg.docker.image}` to use it)")
    except DockerUnavailable as e:
        why = e.reason
    if fallback_note is not None:
        fallback_note(why)
    else:
        print(f"note: running '{stage}' on the host: {why}", file=err, flush=True)
    return "host", None


# --------------------------------------------------------------------------- make shell

def shell_argv(cfg, build_dir, repo: Path = REPO_ROOT, image_id: Optional[str] = None
               ) -> List[str]:
    spec = build_spec(cfg, build_dir, shell_script(cfg), labels={"toolchain.stage": "shell"},
                      repo=repo, image_id=image_id)
    return spec.docker_argv(interactive=True)


def _stdin_isatty() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def open_shell(cfg, build_dir, connect_fn=None, execvp=None, stdin_isatty=None) -> int:
    """Replace this process with `docker run -it ...` of the same spec (needs the CLI and a
    terminal on stdin)."""
    # runner=host is no way out here (INSTALL_HINT offers it): a shell in the image needs both
    fix = (f"install and start Docker Engine (https://docs.docker.com/engine/install/), make "
           f"sure this user may use it and `docker pull {cfg.docker.image}`; make shell opens a "
           f"shell in that image, the targets that need no image run without it")
    if shutil.which("docker") is None:
        raise DockerUnavailable(f"the docker command-line client is not on PATH (make shell "
                                f"runs `docker run -it`): {fix}")
    try:
        client = (connect_fn or connect)()
    except DockerUnavailable as e:
        raise DockerUnavailable(f"{e.reason}: {fix}", reason=e.reason) from None
    require_image(client, cfg.docker.image)
    isatty = stdin_isatty if stdin_isatty is not None else _stdin_isatty()
    if not isatty:
        raise UserError("make shell needs a terminal: its input is not a TTY, so `docker run "
                        "-it` cannot start; run it from an interactive terminal, or run a stage "
                        "in the container without one (make compile RUNNER=docker)")
    prepare_state(cfg, build_dir)
    argv = shell_argv(cfg, build_dir, image_id=image_id(client, cfg.docker.image))
    print("+ " + " ".join(shlex.quote(a) for a in argv), file=sys.stderr, flush=True)
    (execvp or os.execvp)(argv[0], argv)
    return 0  # only reached with a fake execvp
