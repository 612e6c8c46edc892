"""The runner seam: where a stage runs.

A stage is a plain function `fn(cfg, build_dir: Path) -> dict` registered in `STAGES`. The
runner decides where it executes: `host` calls it in this process; `docker` runs the same
stage inside the Vitis AI image (toolchain/docker_runner.py); `board` stages go over ssh.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stage:
    target: str                  # "module:function"
    needs_container: bool = False  # e.g. compile: the compiler only exists in the image
    description: str = ""

    def load(self):
        mod, _, fn = self.target.partition(":")
        return getattr(importlib.import_module(mod), fn)


STAGES: dict[str, Stage] = {
    "train": Stage("model.train:train", description="train the float model"),
    "lr_find": Stage("model.lrfind:lr_find", description="LR range test"),
}


def run_stage(name: str, cfg, args) -> int:
    stage = STAGES[name]
    stage.load()(cfg, Path(args.build_dir))
    return 0
