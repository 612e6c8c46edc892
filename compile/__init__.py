"""Compile stage: quantized model -> DPU .xmodel + deploy manifest (runs in the Vitis AI image).

- `targets`  : boards, arch.json paths, known DPU fingerprints (with sources).
- `logparse` : what the Vitis AI compiler log says (subgraph counts, target, errors).
- `xmodel`   : reads a compiled .xmodel in pure Python (no `xir`): subgraphs, DPU target,
               fingerprint, tensors, workload.
- `manifest` : the deploy manifest the board app (dpu_app/) reads.
- `compile`  : the stage function `compile_stage(cfg, build_dir)`.

Everything here must import on the image's Python (3.8 for Vitis AI 3.5 TF2), without
TensorFlow and without `xir` (only the board app uses `xir`, as its runtime).
"""
