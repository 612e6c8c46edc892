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

Logs stream live (stdout to stdout, stderr to stderr), the container's exit status is returned
and the container is removed afterwards; Ctrl-C stops and removes it.

Written against the docker SDK 7.x API and tested with a fake client; not yet run against a
real engine or a real Vitis AI image.
"""
from __future__ import annotations

import getpass
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .config import REPO_ROOT, to_dict
from .errors import UserError

CONTAINER_REPO = "/workspace"
CONTAINER_BUILD = "/build"          # only used when the build dir is outside the repository
STATE_DIR = ".docker"               # under the build dir: resolved configs and the HOME
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


def activation(cfg) -> str:
    """Shell lines that activate the framework env, or fall back to python3 without conda."""
    sh, env = shlex.quote(cfg.docker.conda_sh), shlex.quote(cfg.docker.conda_env)
    return (f"if [ -f {sh} ]; then . {sh} && conda activate {env} || exit 70; PY=python; "
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


def build_spec(cfg, build_dir, script: str, labels: Optional[Dict[str, str]] = None,
               repo: Path = REPO_ROOT) -> ContainerSpec:
    paths = container_paths(build_dir, cfg.docker.shm, repo)
    uid, gid = os.getuid(), os.getgid()
    env = {"HOME": f"{paths.container_build}/{STATE_DIR}/home", "USER": _host_user(),
           "UID": str(uid), "GID": str(gid), "PYTHONUNBUFFERED": "1",
           "TOOLCHAIN_IN_CONTAINER": "1"}
    env.update(cfg.docker.extra_env)
    return ContainerSpec(image=cfg.docker.image, command=["bash", "-c", script],
                         working_dir=CONTAINER_REPO, user=f"{uid}:{gid}", environment=env,
                         volumes=paths.volumes, network_mode=cfg.docker.network,
                         gpu=cfg.docker.gpu, labels=dict(labels or {}))


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
               repo: Path = REPO_ROOT) -> ContainerSpec:
    paths = container_paths(build_dir, cfg.docker.shm, repo)
    cfg_in = f"{paths.container_build}/{STATE_DIR}/{stage}.config.yaml"
    script = stage_script(cfg, cli_command, cfg_in, paths.container_build)
    return build_spec(cfg, build_dir, script, labels={"toolchain.stage": stage}, repo=repo)


# --------------------------------------------------------------------------- running

def _write(stream, data: bytes) -> None:
    buf = getattr(stream, "buffer", None)
    if buf is not None:
        buf.write(data)
    else:
        stream.write(data.decode("utf-8", "replace"))
    stream.flush()


def run_container(client, spec: ContainerSpec, stop_timeout: int = 10,
                  out=None, err=None) -> int:
    """Create, attach, start; stream output live; return the exit status; always remove.
    Ctrl-C stops (then kills) the container, removes it and re-raises KeyboardInterrupt."""
    import docker
    out, err = out or sys.stdout, err or sys.stderr
    # No read timeout from here on: older docker SDKs ended attach(stream=True) silently after
    # that many quiet seconds, as if the container had finished (docker/docker-py#2166,
    # #2077). 7.x polls the socket without a timeout on Linux; this keeps it so elsewhere.
    api = getattr(client, "api", None)
    if api is not None and hasattr(api, "timeout"):
        api.timeout = None
    try:
        container = client.containers.create(**spec.create_kwargs())
    except docker.errors.ImageNotFound:
        raise ImageMissing(pull_hint(spec.image)) from None
    except docker.errors.DockerException as e:
        raise UserError(f"docker could not create the container from {spec.image}: "
                        f"{_one_line(e, 300)}") from None
    try:
        try:
            stream = container.attach(stdout=True, stderr=True, stream=True, logs=True,
                                      demux=True)
            container.start()
        except docker.errors.DockerException as e:
            raise UserError(f"docker could not start the container from {spec.image}: "
                            f"{_one_line(e, 300)}") from None
        try:
            for chunk in stream:
                o, e = chunk if isinstance(chunk, tuple) else (chunk, None)
                if o:
                    _write(out, o)
                if e:
                    _write(err, e)
            result = container.wait()
        except KeyboardInterrupt:
            print(f"\ninterrupted: stopping container {container.short_id} "
                  f"(up to {stop_timeout}s)", file=err, flush=True)
            try:
                container.stop(timeout=stop_timeout)
            except Exception as e:
                print(f"warning: could not stop container {container.short_id}: "
                      f"{_one_line(e)}", file=err, flush=True)
            raise
        status = int(result.get("StatusCode", 1)) if isinstance(result, dict) else int(result)
        problem = (result.get("Error") or {}) if isinstance(result, dict) else {}
        if problem and problem.get("Message"):
            print(f"docker: {problem['Message']}", file=err, flush=True)
        return status
    finally:
        try:
            container.remove(force=True)
        except Exception as e:
            print(f"warning: could not remove container {container.short_id}: "
                  f"{_one_line(e)} (remove it with `docker rm -f {container.short_id}`)",
                  file=err, flush=True)


def run_in_container(stage: str, cli_command: str, cfg, build_dir, client, out=None,
                     err=None) -> int:
    """Run `python -m toolchain <cli_command>` in the image; the container's exit status."""
    err = err or sys.stderr
    prepare_state(cfg, build_dir, stage)
    spec = stage_spec(cfg, build_dir, stage, cli_command)
    print(f"running '{cli_command}' in container {cfg.docker.image}", file=err, flush=True)
    status = run_container(client, spec, cfg.docker.stop_timeout, out=out, err=err)
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

def shell_argv(cfg, build_dir, repo: Path = REPO_ROOT) -> List[str]:
    spec = build_spec(cfg, build_dir, shell_script(cfg), labels={"toolchain.stage": "shell"},
                      repo=repo)
    return spec.docker_argv(interactive=True)


def open_shell(cfg, build_dir, connect_fn=None, execvp=None) -> int:
    """Replace this process with `docker run -it ...` of the same spec (needs the CLI)."""
    if shutil.which("docker") is None:
        raise DockerUnavailable(f"the docker command-line client is not on PATH (make shell "
                                f"runs `docker run -it`): {INSTALL_HINT}")
    client = (connect_fn or connect)()
    require_image(client, cfg.docker.image)
    prepare_state(cfg, build_dir)
    argv = shell_argv(cfg, build_dir)
    print("+ " + " ".join(shlex.quote(a) for a in argv), file=sys.stderr, flush=True)
    (execvp or os.execvp)(argv[0], argv)
    return 0  # only reached with a fake execvp
