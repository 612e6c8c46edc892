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
from dataclasses import dataclass
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
    return CompileArtifacts(cdir, mpath, man, xmodel, labels, fp)


def stage_bundle(cfg, build_dir: Path, art: CompileArtifacts) -> Path:
    """<build>/board/bundle/: exactly what will sit under board.remote_dir."""
    if not (DPU_APP_DIR / "__main__.py").is_file():
        raise UserError(f"{DPU_APP_DIR / '__main__.py'} is missing: the board app is not in "
                        f"this checkout (git status dpu_app/)")
    csv_src = resolve_path(cfg.data.test_csv)
    if not csv_src.is_file():
        raise UserError(f"{csv_src} (data.test_csv) is missing: board-bench needs it; restore "
                        f"it with 'git checkout -- data/sign_mnist'")
    photos = S.out(cfg, build_dir, "train", "photos_val")
    final = Path(build_dir) / "board" / BUNDLE_DIRNAME
    with staged_dir(final) as stage:
        shutil.copytree(DPU_APP_DIR, stage / "dpu_app",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        (stage / "model").mkdir()
        for src in (art.xmodel, art.manifest_path, art.labels):
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
    return final


def bundle_names(bundle: Path) -> list:
    return [n for n in ("dpu_app", "model", "data", "deploy.json") if (bundle / n).exists()]

