"""Safe artifacts: temp-then-rename writes, whole-directory swaps, and provenance records.

A failed or interrupted stage must leave nothing that looks finished. Single files are written
to a temp file beside the target and renamed (atomic on POSIX). A stage that writes several
files builds them in `<dir>.partial-<pid>/` and swaps the directory in at the end.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .config import REPO_ROOT, to_dict


def _default_mode() -> int:
    """0666 minus the umask: what open() would give (mkstemp makes files 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _default_mode())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_file(path: str | Path, suffix: str = ""):
    """Yield a temp path beside `path` (same suffix, so writers pick the right format);
    rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix,
                               dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def staged_dir(final: str | Path):
    """Build a directory's content in a sibling temp dir; swap it in only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.parent / f"{final.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = final.parent / f"{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(stage, final)
    shutil.rmtree(old, ignore_errors=True)


def clean_stale_partials(parent: str | Path) -> None:
    """Remove `*.partial-*` dirs and `.*.tmp` files left by killed runs. An `X.old-*` dir is
    the previous complete result: it is put back when a kill between staged_dir's two
    renames left no `X`, and removed otherwise."""
    parent = Path(parent)
    if not parent.is_dir():
        return
    for p in sorted(parent.iterdir()):
        if ".old-" in p.name and p.is_dir():
            final = parent / p.name.split(".old-")[0]
            if final.exists():
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.replace(p, final)
        elif ".partial-" in p.name and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
            p.unlink(missing_ok=True)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for mod in ("numpy", "tensorflow", "keras", "cv2", "yaml", "tensorflow_model_optimization",
                "vitis_quantizer"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "unknown")
    return versions


def provenance(stage: str, cfg, inputs: dict | None = None, extra: dict | None = None) -> dict:
    """What produced an artifact: stage, config, input checksums, library versions, machine,
    and where it ran (`execution`: host, or the container image; the config's `runner` key
    says only what was asked, and reads `host` inside a container)."""
    from .runners import execution_context
    return {
        "stage": stage,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "command": " ".join(sys.argv),
        "execution": execution_context(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "processor": platform.machine()},
        "versions": library_versions(),
        "inputs": inputs or {},
        "config": to_dict(cfg),
        **(extra or {}),
    }
