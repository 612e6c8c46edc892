"""The deploy manifest: everything the board app (dpu_app/) needs to run the xmodel right.

Field names are a contract with dpu_app/ (schema 1):
    {"schema": 1, "name", "xmodel": {"file", "sha256"}, "board",
     "target": {"name", "fingerprint"}, "vitis_ai_version",
     "input": {"name", "shape", "dtype", "fix_point"},
     "output": {"name", "shape", "dtype", "fix_point"},
     "labels": [...24 letters...], "labels_file": "labels.txt",
     "preprocess": {"width", "height", "color", "scale", "resize", "layout"}}
Extra keys (e.g. "compiler") may be added; the app ignores what it does not know.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List, Optional

from toolchain.errors import UserError

SCHEMA = 1
MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"

# What training did to a pixel (model/data.py: x = pixels / 255, 28x28 grey, NHWC), so what
# the app must do to a camera frame before quantizing it with the input fix_point.
PREPROCESS = {"width": 28, "height": 28, "color": "gray", "scale": 1.0 / 255.0,
              "resize": "area", "layout": "NHWC"}


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_labels(path) -> List[str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labels file {path} is missing: run `make train` first (it writes "
                        f"train/labels.txt)")
    labels = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not labels:
        raise UserError(f"labels file {path} is empty: re-run `make train`")
    if len(set(labels)) != len(labels):
        raise UserError(f"labels file {path} repeats a label: re-run `make train`")
    return labels


def build_manifest(*, name: str, xmodel: Path, board: str, target_name: str,
                   fingerprint: str, vitis_ai_version: str, io: dict, labels: List[str],
                   compiler: Optional[dict] = None) -> dict:
    """Assemble (and sanity-check) the manifest from the compiled xmodel and its xir I/O."""
    classes = io["output"]["shape"][-1] if io["output"]["shape"] else None
    if classes != len(labels):
        raise UserError(f"the xmodel's output {io['output']['name']} has shape "
                        f"{io['output']['shape']} but there are {len(labels)} labels: the "
                        f"quantized model and train/labels.txt do not belong together")
    expect_in = [PREPROCESS["height"], PREPROCESS["width"], 1]
    if list(io["input"]["shape"][-3:]) != expect_in:
        raise UserError(f"the xmodel's input {io['input']['name']} has shape "
                        f"{io['input']['shape']}, expected (N, 28, 28, 1) NHWC")
    manifest = {
        "schema": SCHEMA,
        "name": name,
        "xmodel": {"file": Path(xmodel).name, "sha256": sha256_file(xmodel)},
        "board": board,
        "target": {"name": target_name, "fingerprint": fingerprint},
        "vitis_ai_version": vitis_ai_version,
        "input": dict(io["input"]),
        "output": dict(io["output"]),
        "labels": list(labels),
        "labels_file": LABELS_FILE,
        "preprocess": dict(PREPROCESS),
    }
    if compiler:
        manifest["compiler"] = compiler
    return manifest
