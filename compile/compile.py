"""The compile stage: `<build>/quantize/...` -> `<build>/compile/<name>.xmodel` + manifest.

    tf2: vai_c_tensorflow2 -m quantize/quantized.h5 -a <arch.json> -o <out> -n <name>
             --options '{"input_shape": "1,28,28,1"}'
    tf1: vai_c_tensorflow -f quantize-tf1/results/quantize_eval_model.pb -a <arch.json> -o <out> -n <name>

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

from toolchain.artifacts import (atomic_write_json, atomic_write_text, clean_stale_partials,
                                 provenance, staged_dir)
from toolchain.errors import ConfigError, UserError

from . import logparse, manifest as M, targets, xmodel

TOOLS = {"tf2": "vai_c_tensorflow2", "tf1": "vai_c_tensorflow"}
OUT_DIR = "compile"
LOG_FILE = "compile.log"
FAILED_LOG = "compile-failed.log"


def model_input(flow: str, build_dir: Path) -> Path:
    if flow == "tf2":
        return build_dir / "quantize" / "quantized.h5"
    return build_dir / "quantize-tf1" / "results" / "quantize_eval_model.pb"


def check_input_shape(text: str) -> str:
    if not re.fullmatch(r"\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*", str(text)) or \
            any(int(v) < 1 for v in str(text).split(",")):
        raise ConfigError(f"config key 'compile.input_shape': {text!r} is not N,H,W,C with "
                          f"positive integers (e.g. 1,28,28,1)")
    return ",".join(v.strip() for v in str(text).split(","))


def compiler_command(flow: str, tool: str, model: Path, arch_json: Path, out_dir: Path,
                     name: str, input_shape: str = "1,28,28,1") -> List[str]:
    """The exact compiler argv for a flow."""
    if flow == "tf2":
        return [tool, "-m", str(model), "-a", str(arch_json), "-o", str(out_dir), "-n", name,
                "--options", json.dumps({"input_shape": check_input_shape(input_shape)})]
    if flow == "tf1":
        return [tool, "-f", str(model), "-a", str(arch_json), "-o", str(out_dir), "-n", name]
    raise ConfigError(f"config key 'quantize.flow': {flow!r} is not one of: tf2, tf1")


def find_compiler(cfg) -> str:
    """Absolute path of the compiler, or one clear line saying it needs the image."""
    tool = TOOLS[cfg.quantize.flow]
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
    raise UserError(f"compile needs {tool} from the Vitis AI image and it is not on PATH "
                    f"here: run `make compile RUNNER=docker` (python -m toolchain compile --set "
                    f"runner=docker; needs Docker and `docker pull {cfg.docker.image}`), or run "
                    f"`python -m toolchain compile` inside `make shell`")


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


def compile_stage(cfg, build_dir, xir_module=None) -> dict:
    """Compile the quantized model for the configured board and write the deploy folder."""
    t0 = time.monotonic()
    build_dir = Path(build_dir)
    ccfg, flow = cfg.compile, cfg.quantize.flow
    tool = find_compiler(cfg)                        # fails here on the host, nothing written
    input_shape = check_input_shape(ccfg.input_shape)
    targets.validate(ccfg)                           # bad board/fingerprint: before any work
    model = model_input(flow, build_dir)
    if not model.is_file():
        raise UserError(f"{model} is missing: run `make quantize` first"
                        + (" (quantize.flow=tf1 writes quantize-tf1/results/)" if flow == "tf1" else ""))
    labels = M.read_labels(build_dir / "train" / M.LABELS_FILE)
    clean_stale_partials(build_dir)
    out_dir = build_dir / OUT_DIR
    name = ccfg.name

    with staged_dir(out_dir) as stage:
        target = targets.resolve_target(ccfg, stage)
        cmd = compiler_command(flow, tool, model.resolve(), target.arch_json.resolve(),
                               stage.resolve(), name, input_shape)
        print("compiling: " + " ".join(_quote(a) for a in cmd), flush=True)
        log_path = stage / LOG_FILE
        rc = run_compiler(cmd, log_path)
        text = log_path.read_text(encoding="utf-8", errors="replace")
        log = logparse.parse_log(text)
        xm = stage / f"{name}.xmodel"
        if rc != 0 or not xm.is_file():
            failed = _keep_failed_log(log_path, build_dir)
            why = f"exit {rc}" if rc != 0 else f"no {xm.name} was written"
            raise UserError(f"{Path(tool).name} failed ({why}): "
                            f"{logparse.first_error(log, text)} (full log: {failed})")
        try:
            if log.dpu_subgraphs is None:
                failed = build_dir / FAILED_LOG
                raise UserError(f"the compiler log has no 'Total device subgraph number N, DPU "
                                f"subgraph number M' line, so the DPU partition is unknown "
                                f"(log: {failed})")
            if log.dpu_subgraphs != ccfg.expect_dpu_subgraphs:
                failed = build_dir / FAILED_LOG
                raise UserError(f"the compiler made {log.dpu_subgraphs} DPU subgraph(s) "
                                f"({log.total_subgraphs} in all) but "
                                f"compile.expect_dpu_subgraphs={ccfg.expect_dpu_subgraphs}: a "
                                f"layer fell off the DPU (softmax in the graph, an unsupported "
                                f"op, or Flatten->Dense splitting; try model.head=gap) - see "
                                f"{failed}")
            io = xmodel.read_dpu_io(xm, xir_module=xir_module)
            compiled_fp = log.fingerprint or io.get("dpu_fingerprint")
            fingerprint = _check_fingerprint(cfg, target, compiled_fp)
            target_name = log.target_name or (targets.split_target_arch(io["dpu_name"])[0]
                                              if io.get("dpu_name") else None) \
                or target.dpu or "unknown"
            atomic_write_text(stage / M.LABELS_FILE, "\n".join(labels) + "\n")
            final_cmd = [str(out_dir.resolve()) if a == str(stage.resolve()) else a
                         for a in cmd]            # as if run in place, not in the staging dir
            compiler = {"tool": Path(tool).name, "command": final_cmd, "log": LOG_FILE,
                        "total_subgraphs": log.total_subgraphs, "dpu_subgraphs": log.dpu_subgraphs,
                        "target_arch": log.target_arch, "md5": log.md5,
                        "arch_json": str(target.arch_json) if not target.custom else "arch.json"}
            man = M.build_manifest(name=name, xmodel=xm, board=ccfg.board, target_name=target_name,
                                   fingerprint=fingerprint, vitis_ai_version=ccfg.vitis_ai_version,
                                   io=io, labels=labels, compiler=compiler)
            atomic_write_json(stage / M.MANIFEST_FILE, man)
            atomic_write_json(stage / "provenance.json", provenance(
                "compile", cfg, inputs={"model": {"path": str(model),
                                                  "sha256": M.sha256_file(model)}},
                extra={"outputs": sorted(p.name for p in stage.iterdir())}))
        except UserError:
            _keep_failed_log(log_path, build_dir)
            raise
    if (build_dir / FAILED_LOG).exists():
        (build_dir / FAILED_LOG).unlink()
    print(f"compiled {out_dir / xm.name}: {log.dpu_subgraphs} DPU subgraph of "
          f"{log.total_subgraphs}, target {target_name} {fingerprint}; input "
          f"{man['input']['name']} {man['input']['shape']} fix_point "
          f"{man['input']['fix_point']}, output {man['output']['name']} "
          f"{man['output']['shape']} fix_point {man['output']['fix_point']}", flush=True)
    return {"xmodel": str(out_dir / xm.name), "manifest": str(out_dir / M.MANIFEST_FILE),
            "dpu_subgraphs": log.dpu_subgraphs, "total_subgraphs": log.total_subgraphs,
            "fingerprint": fingerprint, "target": target_name,
            "seconds": round(time.monotonic() - t0, 1)}
