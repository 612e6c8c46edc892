"""The stage graph, declared once: what each stage reads and writes, and where it may run.

Everything else is derived from this table:
- the stages' own input and output paths (`inp`/`out`: no path literals inside the stages);
- Make's file targets and dependencies (`python -m toolchain deps` writes `<build>/deps.mk`:
  a stage is redone when an input artifact, one of its source files, its data, or one of the
  config keys it reads changes, and only then);
- where a stage runs under `runner: auto` (only stages that need the Vitis AI image go to the
  container);
- FINN-style runs of a stretch of the pipeline (`python -m toolchain run --from X --to Y`).

Paths are relative to the build dir (artifacts) or the repository (sources and data). A
stage's first output is its stamp: the file Make compares times against.
"""
from __future__ import annotations

import glob
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Tuple

from .config import REPO_ROOT, resolve_path
from .errors import UserError

# code every stage depends on: the config schema and the app's contract
BASE_SOURCES = ("toolchain/config.py", "toolchain/artifacts.py", "toolchain/tfsetup.py",
                "dpu_app/contract.py")


def _const(d: dict) -> Callable:
    return lambda cfg: dict(d)


@dataclass(frozen=True)
class Stage:
    name: str
    target: str                          # "module:function", called as fn(cfg, build_dir)
    description: str
    sections: Tuple[str, ...]            # config keys it reads (top-level or dotted)
    inputs: Callable                     # cfg -> {name: build-relative path}
    outputs: Callable                    # cfg -> {name: build-relative path}; first = stamp
    sources: Tuple[str, ...] = ()        # repo globs of the code that decides its outputs
    data: Callable = field(default=lambda cfg: [])   # cfg -> repo files it reads
    image: str = "no"                    # "no": host (or the container with runner=docker);
                                         # "required": only in the Vitis AI image

    def load(self):
        mod, _, fn = self.target.partition(":")
        return getattr(importlib.import_module(mod), fn)

    @property
    def cli(self) -> str:
        return self.name.replace("_", "-")

    def stamp(self, cfg) -> str:
        return next(iter(self.outputs(cfg).values()))

    def placement(self, cfg) -> str:
        """Where the stage runs for this config: 'host', or 'docker' (the Vitis AI image).
        Under `auto` only stages that need the image go to it; `docker` sends every stage."""
        if self.image == "required" or cfg.runner == "docker":
            return "docker"
        return "host"


def _training_data(cfg) -> list:
    # only files that exist: a missing CSV as a Make prerequisite stops Make at "No rule to
    # make target"; the stage itself names the file, its config key and the fix in one line
    # (the photo files come from a glob, so they exist)
    files = [p for p in (cfg.data.train_csv, cfg.data.test_csv) if resolve_path(p).exists()]
    if cfg.model.kind == "landmarks":
        files = [f"data/hand_landmark/hand_landmark_{cfg.hands.network}.tflite"]
    for d in cfg.data.photos:
        root = resolve_path(d)
        files += sorted(str(Path(p).relative_to(REPO_ROOT)) if _under_repo(p) else p
                        for p in glob.glob(str(root / "**" / "*"), recursive=True)
                        if Path(p).is_file())
    return files


def _under_repo(p) -> bool:
    try:
        Path(p).resolve().relative_to(REPO_ROOT)
        return True
    except ValueError:
        return False


def _quantized(cfg) -> dict:
    if cfg.quantize.flow == "tf1":
        return {"model": "quantize-tf1/results/quantize_eval_model.pb",
                "script": "quantize-tf1/run_vai_q.sh"}
    return {"model": "quantize/quantized.h5", "manifest": "quantize/manifest.json",
            "labels": "quantize/labels.txt", "metrics": "quantize/metrics.json",
            "ladder": "ladder/ladder.md"}


TRAIN_OUT = {"metrics": "train/metrics.json", "model": "train/model.h5",
             "labels": "train/labels.txt", "manifest": "train/manifest.json",
             "heldout": "train/heldout.npz", "photos_val": "train/photos_val"}
FREEZE_OUT = {"metrics": "freeze/metrics.json", "model": "freeze/inference.h5",
              "frozen": "freeze/frozen.pb", "io": "freeze/io.json",
              "manifest": "freeze/manifest.json"}
STAGES: Dict[str, Stage] = {s.name: s for s in (
    Stage("train", "model.train:train", "train the float model (build/train/)",
          sections=("seed", "data", "model", "train", "recognition", "hands"),
          inputs=_const({}), outputs=_const(TRAIN_OUT),
          sources=("model/*.py", "dpu_app/datasets.py", "dpu_app/scoring.py",
                   "dpu_app/hands.py"),
          data=_training_data),
    Stage("lr_find", "model.lrfind:lr_find", "LR range test: plot and suggested max lr for "
          "1cycle", sections=("seed", "data", "model", "train", "lr_find"),
          inputs=_const({}), outputs=_const({"plot": "lr_find/lr_find.png"}),
          sources=("model/*.py", "dpu_app/datasets.py"), data=_training_data),
    Stage("freeze", "quantize.freeze:freeze", "inference-only .h5 and frozen .pb, checked "
          "against the float model (build/freeze/)", sections=(),
          inputs=_const({k: TRAIN_OUT[k] for k in ("model", "manifest", "heldout")}),
          outputs=_const(FREEZE_OUT), sources=("quantize/freeze.py", "model/evaluate.py",
                                               "model/bundle.py", "toolchain/ladder.py",
                                               "quantize/hands_ladder.py", "dpu_app/hands.py",
                                               "dpu_app/evaluate.py")),
    Stage("quantize", "quantize.quantize:quantize", "int8 pof2s quantization, DPU check, "
          "accuracy ladder (build/quantize/, build/ladder/)",
          sections=("seed", "data", "model", "train", "hands", "quantize"),
          inputs=lambda cfg: ({"frozen": FREEZE_OUT["frozen"], "io": FREEZE_OUT["io"]}
                              if cfg.quantize.flow == "tf1" else
                              {"model": FREEZE_OUT["model"], "metrics": FREEZE_OUT["metrics"],
                               "manifest": FREEZE_OUT["manifest"],
                               "heldout": TRAIN_OUT["heldout"]}),
          outputs=_quantized, sources=("quantize/*.py", "model/batches.py", "model/data.py",
                                       "model/evaluate.py", "model/hand_train.py",
                                       "model/hand_classifier.py", "toolchain/ladder.py",
                                       "dpu_app/hands.py", "dpu_app/evaluate.py"),
          data=_training_data),
    Stage("compile", "compile.compile:compile_stage", "compile the quantized model for the DPU "
          "(build/compile/; needs the Vitis AI image)",
          sections=("quantize.flow", "compile", "docker.image"),
          inputs=lambda cfg: {"model": _quantized(cfg)["model"],
                              "manifest": _quantized(cfg).get("manifest",
                                                              FREEZE_OUT["manifest"])},
          outputs=_const({"manifest": "compile/manifest.json", "labels": "compile/labels.txt"}),
          sources=("compile/*.py", "toolchain/docker_runner.py", "toolchain/runners.py"),
          image="required"),
)}
ORDER = ("train", "freeze", "quantize", "compile")      # the pipeline (lr_find is a side trip)


def stage(name: str) -> Stage:
    key = name.replace("-", "_")
    if key not in STAGES:
        raise UserError(f"no stage '{name}' (stages: {', '.join(ORDER)}; lr-find is not part "
                        f"of the pipeline)")
    return STAGES[key]


def inp(cfg, build_dir, stage_name: str, key: str) -> Path:
    """A stage's declared input artifact: <build>/<path>."""
    return Path(build_dir) / STAGES[stage_name].inputs(cfg)[key]


def out(cfg, build_dir, stage_name: str, key: str) -> Path:
    return Path(build_dir) / STAGES[stage_name].outputs(cfg)[key]


def producer(cfg, rel: str) -> str | None:
    """The stage that writes a build-relative path."""
    for s in STAGES.values():
        if rel in s.outputs(cfg).values():
            return s.name
    return None


def pipeline(start: str | None, stop: str | None) -> list:
    """The stages from `start` to `stop` (inclusive) in pipeline order."""
    names = list(ORDER)

    def position(n: str | None, default: int) -> int:
        if not n:
            return default
        name = stage(n).name
        if name not in names:
            raise UserError(f"{n} is not a pipeline stage (the pipeline: "
                            f"{' -> '.join(names)}); run it alone: make {n}")
        return names.index(name)

    a, b = position(start, 0), position(stop, len(names) - 1)
    if a > b:
        raise UserError(f"--from {start} comes after --to {stop} (order: {' -> '.join(names)})")
    return names[a:b + 1]
