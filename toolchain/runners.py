"""The runner seam: where a stage runs.

A stage is a plain function `fn(cfg, build_dir: Path) -> dict` registered in `STAGES`. The
runner decides where it executes (cfg.runner):
- `host`: called in this process;
- `docker`: the same stage runs inside the Vitis AI image (toolchain/docker_runner.py) as
  `python -m toolchain <command> --set runner=host ...`; no engine or no image is one clear
  error line;
- `auto`: the container when an engine answers and the image is on this machine, otherwise the
  host, with a one-line notice saying why.
A stage that needs the container (compile) and finds itself on the host stops with its own
clear error line. `board` stages go over ssh (not here).

`execution_context()` says where this process runs (host, or which image in a container) for
provenance records and reports.
"""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from .errors import UserError


@dataclass(frozen=True)
class Stage:
    target: str                    # "module:function"
    needs_container: bool = False  # e.g. compile: the compiler only exists in the image
    description: str = ""
    command: str = ""              # CLI sub-command; default: the stage name with - for _

    def load(self):
        mod, _, fn = self.target.partition(":")
        return getattr(importlib.import_module(mod), fn)


STAGES: Dict[str, Stage] = {
    "train": Stage("model.train:train", description="train the float model (build/train/)"),
    "lr_find": Stage("model.lrfind:lr_find",
                     description="LR range test: plot and suggested max lr for 1cycle"),
    "freeze": Stage("quantize.freeze:freeze", description="inference-only .h5 and frozen .pb, "
                    "checked against the float model (build/freeze/)"),
    "quantize": Stage("quantize.quantize:quantize", description="int8 pof2s quantization, DPU "
                      "check, accuracy ladder (build/quantize/, build/ladder/)"),
    "compile": Stage("compile.compile:compile_stage", needs_container=True,
                     description="compile the quantized model for the DPU (build/compile/; "
                     "needs the Vitis AI image)"),
}


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


def cli_command(name: str) -> str:
    return STAGES[name].command or name.replace("_", "-")


def run_stage(name: str, cfg, args, client_factory: Optional[Callable] = None) -> int:
    """Run stage `name` where cfg.runner says; 0 on the host, the container's exit status in
    the container (non-zero propagates to the CLI's exit code)."""
    stage = STAGES[name]
    build_dir = Path(args.build_dir)
    why_not_container = []
    if cfg.runner != "host":
        from . import docker_runner
        # A stage that needs the image reports the fallback reason in its own error line
        # (one line, not a note and then an error).
        note = why_not_container.append if stage.needs_container else None
        where, client = docker_runner.choose(cfg, name, connect_fn=client_factory,
                                             fallback_note=note)
        if where == "docker":
            return docker_runner.run_in_container(name, cli_command(name), cfg, build_dir,
                                                  client)
    try:
        stage.load()(cfg, build_dir)
    except UserError as e:
        if why_not_container:
            raise UserError(f"{e} (the container was not used: {why_not_container[0]})",
                            e.exit_code) from None
        raise
    return 0
