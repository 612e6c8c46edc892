"""Compile stage: quantized model -> DPU .xmodel + deploy manifest (runs in the Vitis AI image).

- `targets`  : boards, arch.json paths, known DPU fingerprints (with sources).
- `logparse` : what the Vitis AI compiler log says (subgraph counts, target, errors).
- `xmodel`   : reads the compiled graph's DPU input/output tensors with `xir`.
- `manifest` : the deploy manifest the board app (dpu_app/) reads.
- `compile`  : the stage function `compile_stage(cfg, build_dir)`.

Everything here must import on the image's Python (3.8 for Vitis AI 3.5 TF2), without
TensorFlow, and without `xir` until an xmodel is actually read.
"""
