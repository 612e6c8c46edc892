"""The deploy manifest of a compiled xmodel: the app's manifest (dpu_app/contract.py, schema 1)
plus what the compiler and the xmodel (compile/xmodel.py) say about the DPU subgraph.

    {"schema": 1, "name", "xmodel": {"file", "sha256"}, "labels", "labels_file",
     "preprocess": {...}, "recognition": {"threshold", "no_hand_label", "how"},
     "board", "target": {"name", "fingerprint"}, "vitis_ai_version",
     "input": {"name", "shape", "dtype", "fix_point"},
     "output": {"name", "shape", "dtype", "fix_point"}, "compiler": {...}}

Labels, preprocessing and threshold come from the quantized model's own manifest, so the
board app decides exactly as the PC app does with the int8 .h5.
"""
from __future__ import annotations

from pathlib import Path

from dpu_app.contract import make_manifest, sha256_file
from toolchain.errors import UserError


def build_manifest(*, name: str, xmodel: Path, board: str, target_name: str,
                   fingerprint: str, vitis_ai_version: str, io: dict, bundle,
                   compiler: dict | None = None) -> dict:
    """Assemble (and sanity-check) the manifest from the compiled xmodel, its DPU I/O and the
    quantized model's manifest (`bundle`, a dpu_app.contract.Manifest)."""
    labels, pp = list(bundle.labels), bundle.preprocess
    classes = io["output"]["shape"][-1] if io["output"]["shape"] else None
    hands = bundle.data.get("hands") if bundle.data.get("kind") == "landmarks" else None
    if hands is not None:
        from dpu_app.hands import RAW_WIDTH
        if classes != RAW_WIDTH:
            raise UserError(f"the xmodel's output {io['output']['name']} has shape "
                            f"{io['output']['shape']}, the hand-landmark network gives "
                            f"{RAW_WIDTH} values: the xmodel and {bundle.path} do not belong "
                            f"together")
    elif classes != len(labels):
        raise UserError(f"the xmodel's output {io['output']['name']} has shape "
                        f"{io['output']['shape']} but there are {len(labels)} labels: the "
                        f"xmodel and {bundle.path} do not belong together")
    expect_in = [pp.height, pp.width, pp.channels]
    if list(io["input"]["shape"][-3:]) != expect_in:
        raise UserError(f"the xmodel's input {io['input']['name']} has shape "
                        f"{io['input']['shape']}, the model's manifest says (N, "
                        f"{', '.join(map(str, expect_in))}) NHWC")
    rec = bundle.data.get("recognition") or {}
    extra = {"board": board, "target": {"name": target_name, "fingerprint": fingerprint},
             "vitis_ai_version": vitis_ai_version, "input": dict(io["input"]),
             "output": dict(io["output"])}
    if compiler:
        extra["compiler"] = compiler
    if hands is not None:
        extra.update({"kind": "landmarks", "hands": hands})
    return make_manifest(model_file=Path(xmodel).name, sha256=sha256_file(str(xmodel)),
                         labels=labels, preprocess=pp, threshold=bundle.threshold or 0.5,
                         how=rec.get("how", ""), mirror=bundle.mirror, name=name,
                         xmodel=True, extra=extra)
