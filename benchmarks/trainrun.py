"""What the training benchmarks share: the machine line, and one real training run
(`python -m toolchain train` in a fresh build dir) timed and read back."""
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    return f"machine: {cpu_name()}, {os.cpu_count()} cores, {platform.platform()}"


def train_run(config, overrides, keep=None, prefix="train-bench-"):
    """(completed process, metrics.json or None when it failed, wall seconds). The build dir
    is a temp dir removed afterwards, unless `keep` names one."""
    build = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    cmd = [sys.executable, "-m", "toolchain", "train", "--build-dir", str(build),
           "--set", "runner=host", "--set", "train.progress=none"]
    if config:
        cmd += ["--config", config]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.monotonic() - t0
        m = (json.loads((build / "train" / "metrics.json").read_text())
             if r.returncode == 0 else None)
    finally:
        if not keep:
            shutil.rmtree(build, ignore_errors=True)
    return r, m, wall
