"""What `make compile` left, and the folder that goes to the board.

<remote_dir> (board.remote_dir, default /home/root/signlang) receives:
    dpu_app/                  the app (python3 -m dpu_app; the image's vart/xir/numpy/cv2)
    model/<name>.xmodel, manifest.json, labels.txt      from <build>/compile/
    data/sign_mnist_test.csv  the test CSV (plain CSV) for board-bench
    data/photos_val/          the validation photos (letter folders + manifest), same as the
                              ladder's host rungs score
    deploy.json               what was deployed, from which commit
"""
from __future__ import annotations

import datetime as _dt
import gzip
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dpu_app.contract import LABELS_FILE, sha256_file
from dpu_app.dpu import to_int
from toolchain import stages as S
from toolchain.artifacts import _git_commit, staged_dir
from toolchain.config import REPO_ROOT, resolve_path
from toolchain.errors import UserError

DPU_APP_DIR = REPO_ROOT / "dpu_app"
BUNDLE_DIRNAME = "bundle"            # <build>/board/bundle/: exactly what is copied
TEST_CSV_NAME = "sign_mnist_test.csv"
PHOTOS_NAME = "photos_val"


@dataclass
class CompileArtifacts:
    dir: Path
    manifest_path: Path
    manifest: dict
    xmodel: Path
    labels: Path
    fingerprint: int
    extra: list = field(default_factory=list)   # other files the manifest names (a .npz ...)


def compile_artifacts(cfg, build_dir: Path) -> CompileArtifacts:
    """<build>/compile/: manifest.json (schema 1), the xmodel it names (sha256 checked) and
    labels.txt."""
    mpath = S.out(cfg, build_dir, "compile", "manifest")
    if not mpath.is_file():
        raise UserError(f"{mpath} does not exist: nothing compiled yet; run `make compile` "
                        f"first (it needs the Vitis AI image)")
    try:
        man = json.loads(mpath.read_text())
        xfile = man["xmodel"]["file"]
        fp_text = man["target"]["fingerprint"]
    except ValueError:
        raise UserError(f"{mpath} is not valid JSON: re-run `make compile`") from None
    except (KeyError, TypeError):
        raise UserError(f"{mpath} lacks xmodel.file or target.fingerprint (not a schema-1 "
                        f"deploy manifest): re-run `make compile`") from None
    fp = to_int(fp_text)
    if not fp:
        raise UserError(f"{mpath}: target.fingerprint {fp_text!r} is not a hex fingerprint: "
                        f"re-run `make compile`")
    cdir = mpath.parent
    xmodel = cdir / Path(str(xfile)).name
    if not xmodel.is_file():
        raise UserError(f"{xmodel} (named in {mpath}) is missing: re-run `make compile`")
    want = (man.get("xmodel") or {}).get("sha256")
    if want and sha256_file(str(xmodel)) != want:
        raise UserError(f"{xmodel} does not match the sha256 in {mpath} (changed after "
                        f"compiling?): re-run `make compile`")
    labels = cdir / str(man.get("labels_file") or LABELS_FILE)
    if not labels.is_file():
        raise UserError(f"{labels} is missing: re-run `make compile`")
    extra = []
    for name, digest in _named_files(man):
        path = cdir / Path(name).name
        if path in (xmodel, labels, mpath) or path in extra:
            continue
        if not path.is_file():
            raise UserError(f"{path} (named in {mpath}) is missing: re-run `make compile`")
        if digest and sha256_file(str(path)) != digest:
            raise UserError(f"{path} does not match the sha256 in {mpath} (changed after "
                            f"compiling?): re-run `make compile`")
        extra.append(path)
    return CompileArtifacts(cdir, mpath, man, xmodel, labels, fp, extra)


def _named_files(node) -> list:
    """(file name, sha256 or None) of every file a manifest names: a "file" or "*_file" key
    at any depth (xmodel.file, labels_file, a classifier's {"file", "sha256"}, ...)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str) and v and (k == "file" or k.endswith("_file")):
                out.append((v, node.get("sha256") if k == "file" else None))
            elif isinstance(v, (dict, list)):
                out += _named_files(v)
    elif isinstance(node, list):
        for v in node:
            out += _named_files(v)
    return out


def stage_bundle(cfg, build_dir: Path, art: CompileArtifacts, final: Path | None = None,
                 files: dict | None = None) -> Path:
    """<build>/board/bundle/ (or `final`): exactly what will sit under board.remote_dir;
    `files`: more {name: (text, mode)} at its top (make bundle's run.sh)."""
    if not (DPU_APP_DIR / "__main__.py").is_file():
        raise UserError(f"{DPU_APP_DIR / '__main__.py'} is missing: the board app is not in "
                        f"this checkout (git status dpu_app/)")
    csv_src = resolve_path(cfg.data.test_csv)
    if not csv_src.is_file():
        raise UserError(f"{csv_src} (data.test_csv) is missing: board-bench needs it; restore "
                        f"it with 'git checkout -- data/sign_mnist'")
    photos = S.out(cfg, build_dir, "train", "photos_val")
    final = Path(final or Path(build_dir) / "board" / BUNDLE_DIRNAME)
    with staged_dir(final) as stage:
        shutil.copytree(DPU_APP_DIR, stage / "dpu_app",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        (stage / "model").mkdir()
        for src in (art.xmodel, art.manifest_path, art.labels, *art.extra):
            shutil.copy2(src, stage / "model" / src.name)
        (stage / "data").mkdir()
        opener = gzip.open if csv_src.name.endswith(".gz") else open
        with opener(csv_src, "rb") as fin, open(stage / "data" / TEST_CSV_NAME, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        if photos.is_dir():
            shutil.copytree(photos, stage / "data" / PHOTOS_NAME)
        info = {"xmodel": art.xmodel.name, "xmodel_sha256": sha256_file(str(art.xmodel)),
                "fingerprint": hex(art.fingerprint), "name": art.manifest.get("name"),
                "git_commit": _git_commit(),
                "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        (stage / "deploy.json").write_text(json.dumps(info, indent=2) + "\n")
        for name, (text, mode) in (files or {}).items():
            (stage / name).write_text(text)
            (stage / name).chmod(mode)
    return final


def bundle_names(bundle: Path) -> list:
    return [n for n in ("dpu_app", "model", "data", "deploy.json") if (bundle / n).exists()]

