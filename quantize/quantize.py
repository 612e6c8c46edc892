"""Quantize: the inference model -> int8 the way the DPU needs (power-of-two scales, vai_q pof2s).

TF2 flow (default): `VitisQuantizer(model, quantize_strategy=...).quantize_model(calib_dataset=...,
calib_batch_size=..., include_cle=..., include_fast_ft=..., fast_ft_epochs=...)`.
- In the Vitis AI container: the image's `vai_q_tensorflow2`
  (`tensorflow_model_optimization.quantization.keras.vitis_quantize`), strategy `pof2s`.
- On the host: PyPI's `vitis-quantizer` 0.1.3, a repackaging of the same quantizer from an
  earlier release, where the power-of-two strategy is still named `8bit` (its registry uses the
  `LastValueQuantPosQuantizer` = power-of-two quantize positions, i.e. what 3.x calls `pof2s`).
TF1 flow (container only): writes the `input_fn` module and runs `vai_q_tensorflow quantize` on
the frozen graph.

Before quantizing, every layer is checked against the DPUCZDX8G list and limits (report with
layer names in `<build>/quantize/dpu_check.json`). The quantized model is evaluated on the full
test set, and the accuracy ladder (`<build>/ladder/`) is written: float -> frozen -> int8 ->
board (empty until `make board-bench`). A drop beyond `quantize.max_drop_pt` fails the stage.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np

from model import data as D
from model.bundle import write_model_bundle
from quantize.freeze import read_manifest, strip_letters
from toolchain import stages as S
from toolchain.artifacts import atomic_write_json, atomic_write_text, provenance, staged_dir
from toolchain.errors import UserError
from toolchain.runners import execution_context
from toolchain.tfsetup import configure_tf



def quantizer_api():
    """(VitisQuantizer class, quantize_scope, strategy name, implementation label)."""
    try:  # Vitis AI image (vai_q_tensorflow2)
        from tensorflow_model_optimization.quantization.keras import vitis_quantize as vq
        return vq.VitisQuantizer, vq.quantize_scope, "pof2s", "vai_q_tensorflow2 (Vitis AI image)"
    except ImportError:
        pass
    try:
        import vitis_quantizer as vq
    except ImportError:
        raise UserError("no Vitis AI quantizer: run inside the Vitis AI image (RUNNER=docker) or "
                        "install vitis-quantizer==0.1.3 --no-deps on the host (make setup)") from None
    return vq.VitisQuantizer, vq.quantize_scope, "8bit", "vitis-quantizer 0.1.3 (host, pof2s as '8bit')"


def calibration_set(cfg, size: int) -> np.ndarray:
    """`calib_size` float inputs, seeded, the same every run: Sign MNIST training rows and, when
    photos are configured, training photos' hand crops and no-hand crops in the proportions
    training used, so the int8 ranges cover what the app will see."""
    from model.batches import load_training_data
    data = load_training_data(cfg)
    n = cfg.quantize.calib_size
    rng = np.random.default_rng(cfg.seed + 7)
    parts = []
    if data.photos is not None:
        p = data.photos
        lo = (p.train.ctx.shape[1] - size) // 2          # the hand square at scale 1
        hands = p.train.ctx[:, lo:lo + size, lo:lo + size]
        bgs = D.to_input_size(p.bg_train, size) if len(p.bg_train) else \
            np.zeros((0, size, size), np.uint8)
        for pool, share in ((hands, cfg.train.mix.photos), (bgs, cfg.train.mix.no_hand)):
            k = min(len(pool), int(round(n * share)))
            if k:
                parts.append(pool[rng.choice(len(pool), k, replace=False)])
    k = n - sum(len(x) for x in parts)
    kag = data.kaggle_train.x
    parts.append(kag[np.sort(rng.choice(len(kag), min(k, len(kag)), replace=False))])
    x = np.concatenate(parts)
    return D.as_float(x[rng.permutation(len(x))])


def dpu_check_report(model) -> dict:
    from model.net import dpu_violations
    problems = dpu_violations(model)
    layers = [{"name": layer.name, "type": type(layer).__name__,
               "output_shape": list(layer.output_shape[1:]) if hasattr(layer, "output_shape")
               and isinstance(layer.output_shape, tuple) else None}
              for layer in model.layers]
    return {"target": "DPUCZDX8G_ISA1_B4096", "ok": not problems, "problems": problems,
            "layers": layers}


def vitis_inspect(model, out_dir: Path) -> dict:
    """Run VitisInspector where the image has it (3.0+). It is experimental in 3.5 and raises
    on models with missing layer metadata, so a failure is recorded, not fatal: our own check
    already decided whether the model maps onto the DPU."""
    try:
        from tensorflow_model_optimization.quantization.keras import vitis_inspect
    except ImportError:
        return {"ran": False, "why": "not in this quantizer (the Vitis AI image has it)"}
    # UG1414 3.5: VitisInspector(target=...).inspect_model(model, dump_results=True,
    # dump_results_file=..., ...); the model's input is fixed, so no input_shape.
    log = out_dir / "inspect.txt"
    try:
        inspector = vitis_inspect.VitisInspector(target="DPUCZDX8G_ISA1_B4096")
        inspector.inspect_model(model, dump_model=False, plot=False, dump_results=True,
                                dump_results_file=str(log), verbose=1)
    except Exception as e:                                      # noqa: BLE001
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        print(f"note: VitisInspector failed ({type(e).__name__}: {msg}); carrying on: the "
              f"layer check is in dpu_check.json", flush=True)
        return {"ran": False, "why": f"{type(e).__name__}: {msg}"}
    return {"ran": True, "report": log.name}


def tf1_input_fn_module(calib_npy: str, input_node: str, batch: int) -> str:
    """The `input_fn` module vai_q_tensorflow imports (module.function(iter) -> feed dict)."""
    return textwrap.dedent(f'''\
        """Calibration input for vai_q_tensorflow (generated by the quantize stage)."""
        import os

        import numpy as np

        _X = np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), {calib_npy!r}))
        BATCH = {batch}


        def calib_input(iter):
            i = (iter * BATCH) % len(_X)
            return {{{input_node!r}: _X[i:i + BATCH]}}
        ''')


def tf1_command(frozen_pb: str, io: dict, calib_iter: int, out_dir: str) -> list[str]:
    shape = ",".join("?" if v is None else str(v) for v in io["input_shape"])
    return ["vai_q_tensorflow", "quantize", "--input_frozen_graph", frozen_pb,
            "--input_nodes", io["input"], "--output_nodes", io["output"],
            "--input_shapes", shape, "--input_fn", "calib_input.calib_input",
            "--calib_iter", str(calib_iter), "--output_dir", out_dir, "--method", "1"]


def quantize(cfg, build_dir: str | Path) -> dict:
    build_dir = Path(build_dir)
    if cfg.quantize.flow == "tf1":
        return quantize_tf1(cfg, build_dir)
    if cfg.model.kind == "landmarks":
        from quantize.hands_ladder import quantize_hands
        return quantize_hands(cfg, build_dir)
    from model.evaluate import load_heldout, predict_heldout, score_sets
    t0 = time.monotonic()
    src, tf, model, check = checked_model(cfg, build_dir)
    VitisQuantizer, quantize_scope, strategy, impl = quantizer_api()
    size = int(model.input_shape[1])
    classes, sets = load_heldout(S.inp(cfg, build_dir, "quantize", "heldout"))
    freeze_m = _read_json(S.inp(cfg, build_dir, "quantize", "metrics")) or {}
    man = read_manifest(S.inp(cfg, build_dir, "quantize", "manifest").parent)
    threshold = man["recognition"]["threshold"]
    calib = calibration_set(cfg, size)
    print(f"quantizing with {impl}: strategy {strategy}, {len(calib)} calibration images, "
          f"CLE {'on' if cfg.quantize.include_cle else 'off'}, fast fine-tune "
          f"{'on' if cfg.quantize.include_fast_ft else 'off'}", flush=True)
    qmodel = run_quantizer(VitisQuantizer, quantize_scope, strategy, model, calib, cfg.quantize)
    q_out = S.out(cfg, build_dir, "quantize", "model")
    out_dir, q_name = q_out.parent, q_out.name
    with staged_dir(out_dir) as stage:
        qmodel.save(str(stage / q_name), include_optimizer=False)
        with quantize_scope():
            reloaded = tf.keras.models.load_model(str(stage / q_name), compile=False)
        mirror = bool(man["recognition"].get("mirror"))
        preds = predict_heldout(lambda x: reloaded.predict(D.as_float(x), batch_size=512,
                                                           verbose=0), sets, mirror)
        # The board runs the int8 model, so its threshold is calibrated on the int8 model's own
        # outputs by the training stage's rule: rounding moves probabilities near the float
        # threshold, and the float one rejected 6.2 % of the validation hands in int8 (limit 5 %).
        q_threshold, q_how = int8_threshold(preds, classes, cfg.recognition, threshold,
                                            man["recognition"]["how"])
        int8 = strip_letters(score_sets(preds, classes, q_threshold))
        atomic_write_json(stage / "dpu_check.json", dict(check, vitis_inspector=vitis_inspect(
            model, stage)))
        write_model_bundle(stage, stage / q_name, classes, model.input_shape[1:], q_threshold,
                           q_how, mirror)
        ladder = write_ladder(build_dir, cfg, freeze_m, int8, sets,
                              {"float": threshold, "frozen": threshold, "int8": q_threshold}, impl)
        metrics = {"int8": int8, "float": freeze_m.get("scores", {}).get("float"),
                   "images": {k: int(len(x)) for k, (x, _) in sets.items()},
                   "calib_images": len(calib), "quantizer": impl, "strategy": strategy,
                   "where": execution_context(), "seconds": round(time.monotonic() - t0, 1)}
        atomic_write_json(stage / S.out(cfg, build_dir, "quantize", "metrics").name, metrics)
        atomic_write_json(stage / "provenance.json", provenance(
            "quantize", cfg, inputs={"model": {"path": str(src)}}, extra={"quantizer": impl}))
        _check_drop(cfg, ladder)
    print(f"quantized: {q_out}")
    return metrics


def checked_model(cfg, build_dir: Path):
    """(path, tf, model, DPU check report) of the quantize stage's input: the inference model,
    loaded and checked against the DPU before any quantizing."""
    src = S.inp(cfg, build_dir, "quantize", "model")
    if not src.exists():
        raise UserError(f"{src} does not exist: run 'make freeze' first")
    tf = configure_tf(cfg)
    model = tf.keras.models.load_model(str(src), compile=False)
    check = dpu_check_report(model)
    if not check["ok"]:
        raise UserError("DPU check failed: " + "; ".join(check["problems"]))
    return src, tf, model, check


def int8_threshold(preds: dict, classes, rcfg, float_threshold: float, float_how: str):
    """(threshold, how) for the int8 model: recognition.threshold when set, else recalibrated
    on its photo validation outputs; the float model's when there are no photos."""
    from model.evaluate import calibrate
    if rcfg.threshold is not None or "photos_val" not in preds:
        return float_threshold, float_how
    t, how = calibrate(preds, classes, rcfg)
    return t, f"{how} (the int8 model's own outputs; the float model's threshold was " \
              f"{float_threshold:.2f})"


def run_quantizer(VitisQuantizer, quantize_scope, strategy, model, calib, qcfg):
    # The quantizer logs "[VAI INFO] Layer quant_X ... is not supported by DPU" for every layer
    # when it re-transforms its own already-wrapped calibration model: noise that reads like a
    # failure. Our DPU check already reported the real layer support; keep its warnings.
    os.environ.setdefault("VAI_LOG_LEVEL", "1")
    import tensorflow as tf
    q = VitisQuantizer(model, quantize_strategy=strategy)
    # The quantizer's calibration and CLE draw Keras progress bars (verbose=1 is hard-coded):
    # a screenful of "3/10 [====>...]" lines in every log. Keras routes them to (quiet) absl
    # logging while interactive logging is off.
    tf.keras.utils.disable_interactive_logging()
    try:
        # Under quantize_scope: the quantizer clones its calibration model, and Keras 2.12
        # can only deserialize its quantizer classes (LastValueQuantPosQuantizer, ...) inside.
        with quantize_scope():
            return q.quantize_model(calib_dataset=calib, calib_batch_size=qcfg.calib_batch_size,
                                    include_cle=qcfg.include_cle,
                                    include_fast_ft=qcfg.include_fast_ft,
                                    fast_ft_epochs=qcfg.fast_ft_epochs)
    finally:
        tf.keras.utils.enable_interactive_logging()


def _check_drop(cfg, ladder: dict) -> None:
    from toolchain import ladder as L
    if L.int8_verdict(ladder) is not False:
        return
    worst = []
    for s, tol in ladder["tolerance_pt"].items():
        c = L.change_pt(ladder, "float", "int8", s)
        if c is not None and -c > tol:
            worst.append(f"{L.SETS[s]} loses {-c:.2f} pt (tolerance {tol} pt)")
    if cfg.model.kind == "landmarks":
        c = L.change_pt(ladder, "float", "int8", "photos_val")
        raise UserError(f"int8 accuracy: {'; '.join(worst)}: per-tensor power-of-two int8 "
                        f"moves the hand-landmark network's landmarks (the ladder: "
                        f"build/ladder/ladder.md; docs/hand-landmarks.md 'int8'); to compile "
                        f"and deploy it as it is: SET=\"quantize.max_photo_drop_pt="
                        f"{int(-(c or 0)) + 1}\" on this and the later commands")
    raise UserError(f"int8 accuracy: {'; '.join(worst)} (quantize.max_drop_pt="
                    f"{cfg.quantize.max_drop_pt}, quantize.max_photo_drop_pt="
                    f"{cfg.quantize.max_photo_drop_pt}); try more calibration images or "
                    f"quantize.include_fast_ft=true")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_ladder(build_dir: Path, cfg, freeze_m: dict, int8: dict, sets: dict,
                 thresholds: dict, impl: str) -> dict:
    """`<build>/ladder/`: float and frozen from the freeze stage, int8 from here; the board
    rung stays empty until `make board-bench`."""
    from toolchain import ladder as L
    sc, where = freeze_m.get("scores", {}), freeze_m.get("where", {})
    art = {name: S.STAGES[st].outputs(cfg)[key] for name, st, key in
           (("float", "train", "model"), ("frozen", "freeze", "frozen"),
            ("int8", "quantize", "model"))}
    rungs = [L.rung("float", art["float"], where.get("float", "?"), sc.get("float")),
             L.rung("frozen", art["frozen"], where.get("frozen", "?"), sc.get("frozen")),
             L.rung("int8", art["int8"], L.where_label(impl), int8),
             L.rung("board", "compile/<name>.xmodel", "ZCU104 DPU via VART (make board-bench)",
                    None)]
    ladder = L.build(rungs, {k: len(x) for k, (x, _) in sets.items()},
                     {"sign_mnist_test": cfg.quantize.max_drop_pt,
                      "photos_val": cfg.quantize.max_photo_drop_pt}, thresholds)
    L.write(build_dir, ladder)
    return ladder


def _script(path: Path, what: str, body: str) -> None:
    atomic_write_text(path, f"#!/bin/sh\n# Run inside the TF1 Vitis AI image, from this folder: "
                            f"{what} (generated by the quantize stage).\nset -e\n"
                            f"cd \"$(dirname \"$0\")\"\n{body}\n")
    os.chmod(path, 0o755)


def tf1_compile_command(cfg, work: Path) -> list:
    """vai_c_tensorflow for the TF1 image (run by run_vai_c.sh; the TF2 image has no TF1
    compiler and the TF1 image's Python 3.6 cannot run this toolchain)."""
    from compile.compile import compiler_command
    from compile.targets import BOARDS, validate
    fp = validate(cfg.compile)
    if cfg.compile.board == "custom":
        atomic_write_json(work / "arch.json", {"fingerprint": fp})
        arch = "arch.json"
    else:
        arch = f"{cfg.compile.arch_dir}/{BOARDS[cfg.compile.board].arch_name}/arch.json"
    return compiler_command("tf1", "vai_c_tensorflow", "results/quantize_eval_model.pb", arch,
                            "compiled", cfg.compile.name, "")


def quantize_tf1(cfg, build_dir: Path) -> dict:
    """TF1 flow: vai_q_tensorflow on the frozen graph.

    vai_q_tensorflow exists only in the TF1 Vitis AI image, whose Python 3.6 cannot run this
    toolchain. So the stage prepares everything in `<build>/quantize-tf1/` (calibration
    images, the generated `input_fn` module, `run_vai_q.sh` with the exact command) and, where
    `vai_q_tensorflow` is on PATH, runs it; elsewhere it stops with one line saying how to run
    the prepared script in that image.
    """
    frozen = S.inp(cfg, build_dir, "quantize", "frozen")
    io_path = S.inp(cfg, build_dir, "quantize", "io")
    if not frozen.exists() or not io_path.exists():
        raise UserError(f"{frozen} does not exist: run 'make freeze' first")
    io = json.loads(io_path.read_text())
    calib = calibration_set(cfg, int(io["input_shape"][1]))
    iters = max(len(calib) // cfg.quantize.calib_batch_size, 1)
    work = S.out(cfg, build_dir, "quantize", "script").parent
    with staged_dir(work) as stage:
        np.save(stage / "calib.npy", calib)
        atomic_write_text(stage / "calib_input.py", tf1_input_fn_module(
            "calib.npy", io["input"], cfg.quantize.calib_batch_size))
        cmd = tf1_command("../freeze/frozen.pb", io, iters, "results")
        _script(stage / "run_vai_q.sh", "quantize", " ".join(cmd))
        _script(stage / "run_vai_c.sh", "compile (after run_vai_q.sh)",
                "mkdir -p compiled\n" + " ".join(tf1_compile_command(cfg, stage)) +
                " 2>&1 | tee compiled/compile.log\ntest -f compiled/" + cfg.compile.name +
                ".xmodel\necho 'now run make compile (in the TF2 image) to write the deploy "
                "manifest'")
    if shutil.which("vai_q_tensorflow") is None:
        raise UserError(f"quantize.flow=tf1: prepared {work}/ (calibration set, input_fn "
                        f"module, run_vai_q.sh and run_vai_c.sh); vai_q_tensorflow exists only in "
                        f"the TF1 Vitis AI image (xilinx/vitis-ai-tensorflow-cpu), whose Python "
                        f"3.6 cannot run this toolchain: run 'sh {work}/run_vai_q.sh' and then "
                        f"'sh {work}/run_vai_c.sh' in that image (repo mounted), or use "
                        f"quantize.flow=tf2")
    log = work / "vai_q_tensorflow.log"
    with open(log, "w") as f:
        rc = subprocess.run(["sh", "run_vai_q.sh"], cwd=work, stdout=f,
                            stderr=subprocess.STDOUT).returncode
    if rc != 0 or not (work / "results" / "quantize_eval_model.pb").exists():
        raise UserError(f"vai_q_tensorflow failed (exit {rc}); see its log: {log}")
    metrics = {"flow": "tf1", "command": cmd, "calib_images": len(calib),
               "output": str(work / "results" / "quantize_eval_model.pb")}
    atomic_write_json(work / "metrics.json", metrics)
    print(f"quantized (TF1 flow): {metrics['output']}")
    return metrics
