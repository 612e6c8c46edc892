"""The runner seam: where a stage runs.

A stage is a plain function `fn(cfg, build_dir: Path) -> dict` declared in
toolchain/stages.py with where it may run. The runner decides where it executes:
- `runner: host`: every stage in this process;
- `runner: docker`: every stage inside the Vitis AI image (toolchain/docker_runner.py) as
  `python -m toolchain <command> --set runner=host ...`; no engine or no image is one clear
  error line;
- `runner: auto` (default): stages that need the image (compile) go to it when an engine
  answers and the image is here; every other stage runs on the host, whose TensorFlow is the
  image's (2.12) and whose results the ladder records as the host's. A stage that needs the
  image and cannot have it stops with its own error line saying why the container was not
  used. `board` stages go over ssh (not here).

`execution_context()` says where this process runs (host, or which image in a container) for
provenance records and reports.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional

from .errors import NeedsImage, UserError
from .stages import STAGES


def execution_context() -> dict:
    """Where this process runs: {"runner": "host"}, or inside a container the docker runner
    started (a stage or `make shell`) {"runner": "docker", "image": <docker.image>,
    "image_id": <sha256:... or None>, "host_paths": {<mount point>: <host path>}}. The runner
    passes these in the container's environment (toolchain/docker_runner.py)."""
    if os.environ.get("TOOLCHAIN_IN_CONTAINER") != "1":
        return {"runner": "host"}
    try:
        mounts = json.loads(os.environ.get("TOOLCHAIN_HOST_MOUNTS") or "{}")
    except ValueError:
        mounts = {}
    return {"runner": "docker", "image": os.environ.get("TOOLCHAIN_IMAGE") or None,
            "image_id": os.environ.get("TOOLCHAIN_IMAGE_ID") or None,
            "host_paths": mounts if isinstance(mounts, dict) else {}}


def run_stage(name: str, cfg, args, client_factory: Optional[Callable] = None) -> int:
    """Run stage `name` where cfg.runner says; 0 on the host, the container's exit status in
    the container (non-zero propagates to the CLI's exit code)."""
    stage = STAGES[name]
    build_dir = Path(args.build_dir)
    why_not_container = []
    if cfg.runner != "host" and stage.placement(cfg) == "docker":
        from . import docker_runner
        # A stage that needs the image reports the fallback reason in its own error line
        # (one line, not a note and then an error).
        where, client = docker_runner.choose(cfg, name, connect_fn=client_factory,
                                             fallback_note=why_not_container.append)
        if where == "docker":
            return docker_runner.run_in_container(name, stage.cli, cfg, build_dir, client)
    try:
        stage.load()(cfg, build_dir)
    except UserError as e:
        if why_not_container and isinstance(e, NeedsImage):   # the cause first, then the fix
            raise NeedsImage(image_fault(cfg, why_not_container[0], stage.cli),
                             e.exit_code) from None
        if why_not_container:
            raise UserError(f"{e} (the container was not used: {why_not_container[0]})",
                            e.exit_code) from None
        raise
    return 0


def image_fault(cfg, why: str, what: str, pending=()) -> str:
    """One line for a stage that needs the Vitis AI image and cannot have it: the cause first
    (`why`: no engine, or no image), then the fix that keeps what is already built. `pending`:
    the stages that would have run before it (nothing was built)."""
    image = cfg.docker.image
    if why.startswith("image "):                    # docker_runner.choose: the image is missing
        why = f"docker image {image} is not on this machine"
        fix = (f"`docker pull {image}` (docker/README.md: make docker-image adds what the "
               f"stages need)")
    else:
        fix = (f"install and start Docker Engine (https://docs.docker.com/engine/install/), "
               f"let this user use it, `docker pull {image}`")
    kept = (f"nothing was built: {', '.join(pending)} would have run first; make "
            f"{pending[-1]} builds them without the image" if pending else
            "what is already built is kept: only that step runs in the container")
    because = ("its compiler is only there" if what == "compile" else
               "runner=docker runs every stage there")
    return (f"{why}, and {what} needs the Vitis AI image ({because}): {fix}, then run the "
            f"same command again ({kept})")


def check_image(cfg, stages, connect_fn: Optional[Callable] = None) -> None:
    """Before anything of `stages` (names, in order) runs: a NeedsImage line when one of them
    must run in the Vitis AI image and cannot. In a second, not after the stages before it."""
    from . import docker_runner
    if docker_runner.in_container() or cfg.quantize.flow == "tf1":    # tf1: its own script
        return
    boxed = [n for n in stages if STAGES[n].placement(cfg) == "docker"]
    if not boxed:
        return
    pending = [n.replace("_", "-") for n in stages[:stages.index(boxed[0])]]
    what = boxed[0].replace("_", "-")
    if cfg.runner != "docker" and boxed == ["compile"]:
        from compile.compile import find_compiler
        try:
            find_compiler(cfg)          # compile.tool_dir, or a compiler on PATH: it runs here
            return
        except NeedsImage:
            if cfg.runner == "host":
                raise
    try:
        client = (connect_fn or docker_runner.connect)()
        if docker_runner.has_image(client, cfg.docker.image):
            return
        why = f"image {cfg.docker.image} is not on this machine"
    except docker_runner.DockerUnavailable as e:
        why = e.reason
    raise NeedsImage(image_fault(cfg, why, what, pending))
