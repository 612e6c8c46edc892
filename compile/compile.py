"""The compile stage: `<build>/quantize/...` -> `<build>/compile/<name>.xmodel` + manifest.

    tf2: vai_c_tensorflow2 -m quantize/quantized.h5 -a <arch.json> -o <out> -n <name>
             --options '{"input_shape": "1,S,S,1"}'     (S: the model's input, from its manifest)
    tf1: vai_c_tensorflow -f quantize-tf1/results/quantize_eval_model.pb -a <arch.json> -o <out> -n <name>

The compiler must get a model quantized by the image's own vai_q_tensorflow2: a quantized.h5
made on the host by PyPI's vitis-quantizer 0.1.3 (an older release of that quantizer) is
quantized again here, in the image, first (recorded in the manifest's "quantized_by").

The compiler exists only in the Vitis AI image: on the host this stage stops in one line
before touching anything. The whole output folder is built in `<build>/compile.partial-<pid>/`
and swapped in at the end; a failed compile leaves only `<build>/compile-failed.log`.

Written against the documented tools and real compiler logs; not yet run against a real image.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

from dpu_app.contract import LABELS_FILE, MANIFEST_FILE, load_manifest, sha256_file
from toolchain import stages as S
from toolchain.artifacts import (atomic_write_json, atomic_write_text, clean_stale_partials,
                                 provenance, staged_dir)
from toolchain.errors import ConfigError, NeedsImage, UserError

from . import logparse, manifest as M, targets, xmodel

TOOLS = {"tf2": "vai_c_tensorflow2", "tf1": "vai_c_tensorflow"}
OUT_DIR = "compile"
LOG_FILE = "compile.log"
FAILED_LOG = "compile-failed.log"


def check_input_shape(text: str) -> str:
    if not re.fullmatch(r"\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*", str(text)) or \
            any(int(v) < 1 for v in str(text).split(",")):
        raise ConfigError(f"config key 'compile.input_shape': {text!r} is not N,H,W,C with "
                          f"positive integers (e.g. 1,48,48,1), or null for the model's own")
    return ",".join(v.strip() for v in str(text).split(","))


def compiler_command(flow: str, tool: str, model: Path, arch_json: Path, out_dir: Path,
                     name: str, input_shape: str) -> List[str]:
    """The exact compiler argv for a flow."""
    if flow == "tf2":
        return [tool, "-m", str(model), "-a", str(arch_json), "-o", str(out_dir), "-n", name,
                "--options", json.dumps({"input_shape": check_input_shape(input_shape)})]
    if flow == "tf1":
        return [tool, "-f", str(model), "-a", str(arch_json), "-o", str(out_dir), "-n", name]
    raise ConfigError(f"config key 'quantize.flow': {flow!r} is not one of: tf2, tf1")


def tf1_compiled(cfg, build_dir: Path) -> Optional[Path]:
    """TF1 flow: the xmodel quantize-tf1/run_vai_c.sh made in the TF1 image, if it is there
    and newer than the quantized graph it compiles."""
    if cfg.quantize.flow != "tf1":
        return None
    xm = S.inp(cfg, build_dir, "compile", "model").parents[1] / "compiled" / \
        f"{cfg.compile.name}.xmodel"
    model = S.inp(cfg, build_dir, "compile", "model")
    if xm.is_file() and model.is_file() and xm.stat().st_mtime >= model.stat().st_mtime:
        return xm
    return None


def find_compiler(cfg, build_dir: Optional[Path] = None) -> str:
    """Absolute path of the compiler, or one clear line saying it needs the image."""
    tool = TOOLS[cfg.quantize.flow]
    if build_dir is not None and tf1_compiled(cfg, build_dir):
        return "vai_c_tensorflow"          # already run in the TF1 image by run_vai_c.sh
    if cfg.compile.tool_dir:
        cand = Path(cfg.compile.tool_dir) / tool
        if cand.is_file() and os.access(str(cand), os.X_OK):
            return str(cand)
        raise UserError(f"{tool} is not in compile.tool_dir={cfg.compile.tool_dir}: fix the "
                        f"path (inside the image, e.g. /opt/vitis_ai/conda/envs/<env>/bin) or "
                        f"drop it to use PATH")
    found = shutil.which(tool)
    if found:
        return found
    if os.environ.get("TOOLCHAIN_IN_CONTAINER") == "1":   # a stage or `make shell` in the image
        image = os.environ.get("TOOLCHAIN_IMAGE") or cfg.docker.image
        raise UserError(f"{tool} is not on PATH in image {image} (conda env "
                        f"{cfg.docker.conda_env}): this image has no Vitis AI compiler; set "
                        f"docker.image to a Vitis AI image that ships {tool} (see "
                        f"docker/README.md), or compile.tool_dir to where this image keeps it")
    if cfg.quantize.flow == "tf1":
        raise UserError(f"quantize.flow=tf1 compiles with {tool}, which only the TF1 Vitis AI "
                        f"image has: run 'sh <build>/quantize-tf1/run_vai_c.sh' there (the "
                        f"quantize stage wrote it), then make compile again to write the "
                        f"deploy manifest from its xmodel")
    raise NeedsImage(f"compile needs {tool} from the Vitis AI image and it is not on PATH "
                     f"here: run `make compile RUNNER=docker` (python -m toolchain compile --set "
                     f"runner=docker; needs Docker and `docker pull {cfg.docker.image}`; only "
                     f"compile runs again, nothing is retrained), or run `python -m toolchain "
                     f"compile` inside `make shell`")


def run_compiler(cmd: List[str], log_path: Path, echo=None) -> int:
    """Run the compiler, echo its output live and capture it to `log_path`."""
    echo = echo or sys.stdout
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(_quote(a) for a in cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                log.write(line)
                echo.write(line)
                echo.flush()
            return proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)


def _keep_failed_log(log_path: Path, build_dir: Path) -> Path:
    dest = build_dir / FAILED_LOG
    if log_path.is_file():
        atomic_write_text(dest, log_path.read_text(encoding="utf-8", errors="replace"))
    return dest


def _check_fingerprint(cfg, target: targets.Target, compiled: Optional[str]) -> str:
    """The fingerprint to record; a mismatch with what the board expects fails loudly."""
    ccfg = cfg.compile
    expected = target.fingerprint
    if compiled is None:
        if ccfg.check_fingerprint and not target.custom:
            print("note: the compiler log and the xmodel name no DPU fingerprint; could not "
                  "check it against the board's", file=sys.stderr)
        return expected or "unknown"
    if not ccfg.check_fingerprint:
        return compiled
    if expected is None:
        raise UserError(f"no known DPU fingerprint for {target.dpu} with Vitis AI "
                        f"{ccfg.vitis_ai_version} (compiled for {compiled}): check it with "
                        f"`xdputil query` on the board, then use compile.board=custom "
                        f"compile.fingerprint=<value>, or compile.check_fingerprint=false")
    if compiled != expected:
        raise UserError(f"compiled for DPU fingerprint {compiled} but a {target.board} board "
                        f"with Vitis AI {ccfg.vitis_ai_version} expects {expected} (the board "
                        f"would refuse it: 'CHECK fingerprint fail'): check `xdputil query` on "
                        f"the board, then compile.board=custom compile.fingerprint=<value>, or "
                        f"compile.check_fingerprint=false if you know better")
    return compiled


IMAGE_QUANTIZER = "vai_q_tensorflow2 (Vitis AI image)"


def requantize_if_host_made(cfg, build_dir: Path) -> str:
    """The quantizer that made quantize/quantized.h5; when it was not the image's own and
    this process runs where the image's quantizer is, quantize again here first."""
    if cfg.quantize.flow != "tf2":
        return "vai_q_tensorflow (TF1 image)"
    metrics = S.out(cfg, build_dir, "quantize", "metrics")
    try:
        made_by = json.loads(metrics.read_text()).get("quantizer", "?")
    except (OSError, ValueError):
        made_by = "?"
    if made_by == IMAGE_QUANTIZER:
        return made_by
    from quantize.quantize import quantize, quantizer_api
    if quantizer_api()[3] != IMAGE_QUANTIZER:
        print(f"note: {S.inp(cfg, build_dir, 'compile', 'model')} was made by {made_by}, not "
              f"the Vitis AI image's vai_q_tensorflow2; compiling it anyway (this process has "
              f"no image quantizer to redo it)", file=sys.stderr, flush=True)
        return made_by
    print(f"quantizing again with the image's vai_q_tensorflow2: the existing model was made by "
          f"{made_by}, an untested pairing with this compiler", flush=True)
    quantize(cfg, build_dir)
    return IMAGE_QUANTIZER


def _bundle(cfg, build_dir: Path):
    """The quantized model and its manifest (labels, preprocessing, threshold)."""
    model = S.inp(cfg, build_dir, "compile", "model")
    if not model.is_file():
        raise UserError(f"{model} is missing: run `make quantize` first"
                        + (" (quantize.flow=tf1 writes quantize-tf1/results/)"
                           if cfg.quantize.flow == "tf1" else ""))
    try:
        man = load_manifest(str(S.inp(cfg, build_dir, "compile", "manifest")))
    except Exception as e:                                      # AppError: one line
        raise UserError(f"{e}: run `make quantize` again") from None
    return model, man


def _run_and_check(cfg, tool, model, target, stage: Path, name: str, input_shape: str,
                   build_dir: Path):
    """Compile into `stage`; the parsed log and the xmodel, or a UserError with the log."""
    cmd = compiler_command(cfg.quantize.flow, tool, model.resolve(), target.arch_json.resolve(),
                           stage.resolve(), name, input_shape)
    log_path = stage / LOG_FILE
    made = tf1_compiled(cfg, build_dir)
    if made is not None:                      # compiled in the TF1 image by run_vai_c.sh
        print(f"using {made} (made by run_vai_c.sh in the TF1 image)", flush=True)
        shutil.copy2(made, stage / f"{name}.xmodel")
        done_log = made.parent / "compile.log"
        atomic_write_text(log_path, done_log.read_text(errors="replace")
                          if done_log.is_file() else "")
        rc = 0
    else:
        print("compiling: " + " ".join(_quote(a) for a in cmd), flush=True)
        rc = run_compiler(cmd, log_path)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    log = logparse.parse_log(text)
    xm = stage / f"{name}.xmodel"
    if rc != 0 or not xm.is_file():
        failed = _keep_failed_log(log_path, build_dir)
        why = f"exit {rc}" if rc != 0 else f"no {xm.name} was written"
        raise UserError(f"{Path(tool).name} failed ({why}): "
                        f"{logparse.first_error(log, text)} (full log: {failed})")
    failed = build_dir / FAILED_LOG
    if log.dpu_subgraphs is None:         # the log does not say: the xmodel itself does
        try:
            graph = xmodel.summarize(xmodel.read(xm))
        except UserError:
            _keep_failed_log(log_path, build_dir)
            raise
        log.dpu_subgraphs, log.total_subgraphs = graph["dpu_subgraphs"], len(graph["devices"])
    if log.dpu_subgraphs != cfg.compile.expect_dpu_subgraphs:
        _keep_failed_log(log_path, build_dir)
        raise UserError(f"the compiler made {log.dpu_subgraphs} DPU subgraph(s) "
                        f"({log.total_subgraphs} in all) but compile.expect_dpu_subgraphs="
                        f"{cfg.compile.expect_dpu_subgraphs}: a layer fell off the DPU (softmax "
                        f"in the graph, an unsupported op, or Flatten->Dense splitting; try "
                        f"model.head=gap) - see {failed}")
    return cmd, log, xm


def compile_stage(cfg, build_dir) -> dict:
    """Compile the quantized model for the configured board and write the deploy folder."""
    t0 = time.monotonic()
    build_dir = Path(build_dir)
    ccfg = cfg.compile
    tool = find_compiler(cfg, build_dir)             # fails here on the host, nothing written
    targets.validate(ccfg)                           # bad board/fingerprint: before any work
    quantized_by = requantize_if_host_made(cfg, build_dir)
    model, bundle = _bundle(cfg, build_dir)
    pp = bundle.preprocess
    input_shape = check_input_shape(ccfg.input_shape or f"1,{pp.height},{pp.width},"
                                                         f"{pp.channels}")
    clean_stale_partials(build_dir)
    out_dir = build_dir / OUT_DIR
    with staged_dir(out_dir) as stage:
        target = targets.resolve_target(ccfg, stage)
        cmd, log, xm = _run_and_check(cfg, tool, model, target, stage, ccfg.name, input_shape,
                                      build_dir)
        try:
            io = xmodel.read_dpu_io(xm)      # pure Python: no xir needed, host or image
            # the xmodel's own fingerprint is what the board compares; the log's is a fallback
            fingerprint = _check_fingerprint(cfg, target, io.get("dpu_fingerprint") or
                                             log.fingerprint)
            target_name = log.target_name or (targets.split_target_arch(io["dpu_name"])[0]
                                              if io.get("dpu_name") else None) \
                or target.dpu or "unknown"
            atomic_write_text(stage / LABELS_FILE, "\n".join(bundle.labels) + "\n")
            if bundle.data.get("kind") == "landmarks":   # the letter classifier goes along
                clf = (bundle.data.get("hands") or {}).get("classifier") or {}
                src = model.parent / str(clf.get("file", ""))
                if not clf.get("file") or not src.is_file():
                    raise UserError(f"{model.parent}: the letter classifier its manifest names "
                                    f"({clf.get('file')}) is missing: run make quantize again")
                shutil.copy2(src, stage / src.name)
            final_cmd = [str(out_dir.resolve()) if a == str(stage.resolve()) else a
                         for a in cmd]            # as if run in place, not in the staging dir
            compiler = {"tool": Path(tool).name, "command": final_cmd, "log": LOG_FILE,
                        "total_subgraphs": log.total_subgraphs,
                        "dpu_subgraphs": log.dpu_subgraphs, "target_arch": log.target_arch,
                        "md5": log.md5, "quantized_by": quantized_by,
                        "arch_json": str(target.arch_json) if not target.custom else "arch.json"}
            man = M.build_manifest(name=ccfg.name, xmodel=xm, board=ccfg.board,
                                   target_name=target_name, fingerprint=fingerprint,
                                   vitis_ai_version=ccfg.vitis_ai_version, io=io,
                                   bundle=bundle, compiler=compiler)
            atomic_write_json(stage / MANIFEST_FILE, man)
            atomic_write_json(stage / "provenance.json", provenance(
                "compile", cfg, inputs={"model": {"path": str(model),
                                                  "sha256": sha256_file(str(model))}},
                extra={"outputs": sorted(p.name for p in stage.iterdir()),
                       "quantized_by": quantized_by}))
        except UserError:
            _keep_failed_log(stage / LOG_FILE, build_dir)
            raise
    if (build_dir / FAILED_LOG).exists():
        (build_dir / FAILED_LOG).unlink()
    print(f"compiled {out_dir / xm.name}: {log.dpu_subgraphs} DPU subgraph of "
          f"{log.total_subgraphs}, target {target_name} {fingerprint}; input "
          f"{man['input']['name']} {man['input']['shape']} fix_point "
          f"{man['input']['fix_point']}, output {man['output']['name']} "
          f"{man['output']['shape']} fix_point {man['output']['fix_point']}", flush=True)
    return {"xmodel": str(out_dir / xm.name), "manifest": str(out_dir / MANIFEST_FILE),
            "dpu_subgraphs": log.dpu_subgraphs, "total_subgraphs": log.total_subgraphs,
            "fingerprint": fingerprint, "target": target_name,
            "seconds": round(time.monotonic() - t0, 1)}
