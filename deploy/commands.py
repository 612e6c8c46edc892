"""The board commands: deploy, board-run, board-bench, board-eval-photos.

    make deploy BOARD=root@<ip>   deploy(cfg, build_dir, target)
    make board-run                board_run(cfg, build_dir, target)      (viewer URL printed)
    make board-bench              board_bench(cfg, build_dir, target)    (the ladder's board rung)
    make board-eval-photos DIR=   board_eval_photos(cfg, build_dir, dir) (any photo folder)

Deploy refuses to copy anything when the board's DPU fingerprint differs from the one the
xmodel records (read from the file itself on this PC, compile/xmodel.py). On the board the app checks it again before VART can see the xmodel:
VART's own check aborts the process (SIGABRT, exit status 134). Every expected fault is one
line naming the thing and the fix.
"""
from __future__ import annotations

import datetime as _dt
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from dpu_app.bench import check_result
from dpu_app.dpu import XDPUTIL_QUERY, DpuInfo, describe_fingerprint, json_object, \
    parse_xdputil_query
from toolchain import ladder as L
from toolchain import stages as S
from toolchain.artifacts import atomic_write_json
from toolchain.errors import UserError

from .bundle import (PHOTOS_NAME, TEST_CSV_NAME, CompileArtifacts, bundle_names,
                     compile_artifacts, stage_bundle)
from .transport import (check_target, last_line, run_scp, run_ssh, ssh_argv, ssh_fault,
                        target_host)

RECORD_FILE = "deploy.json"          # <build>/board/deploy.json: the last successful deploy
BOARD_IMAGE = "xilinx-zcu104-dpu-v2022.2-v3.0.0.img.gz"
SIGABRT_EXIT = 134


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- where
def _record_path(build_dir: Path) -> Path:
    return Path(build_dir) / "board" / RECORD_FILE


def read_record(build_dir: Path) -> dict | None:
    try:
        return json.loads(_record_path(build_dir).read_text())
    except (OSError, ValueError):
        return None


def resolve_target(cfg, target: str | None, build_dir: Path) -> str:
    """BOARD=... wins, then board.target from the config, then the last successful deploy."""
    if target:
        return check_target(target)
    if cfg.board.target:
        return check_target(cfg.board.target)
    rec = read_record(build_dir)
    if rec and rec.get("target"):
        return check_target(rec["target"])
    raise UserError("no board given: pass BOARD=root@<board-ip> (e.g. make deploy "
                    "BOARD=root@192.168.1.50), or set board.target in the config")


def remote_dir(cfg) -> str:
    return cfg.board.remote_dir.rstrip("/") or "/"


def app_argv(art: CompileArtifacts) -> str:
    """`python3 -m dpu_app --model model/<x> --manifest model/manifest.json`, run from the
    bundle's folder (the same on the board after deploy and from make bundle's run.sh)."""
    return (f"python3 -m dpu_app --model {shlex.quote('model/' + art.xmodel.name)} "
            f"--manifest model/manifest.json")


def app_command(cfg, art: CompileArtifacts, *args: str) -> str:
    """`cd <remote_dir> && python3 -m dpu_app --model model/<x> --manifest ... <args>`."""
    q = shlex.quote
    return (f"cd {q(remote_dir(cfg))} && exec {app_argv(art)} "
            + " ".join(q(a) for a in args))


def explain_exit(code: int, target: str, what: str) -> UserError:
    if code == SIGABRT_EXIT:
        return UserError(f"the app on {target} was aborted while {what} (exit status 134, "
                         f"SIGABRT): VART aborts the process when the xmodel does not fit the "
                         f"board's DPU ('CHECK fingerprint fail' in the board's output) or the "
                         f"xmodel is damaged; run make deploy again (it compares the "
                         f"fingerprints) and check `xdputil query` on the board",
                         exit_code=1)
    return UserError(f"the app on {target} stopped with exit code {code} while {what} (its "
                     f"message is above); after a fix, make deploy and try again",
                     exit_code=code if 0 < code < 128 else 1)


# ----------------------------------------------------------------------------- the DPU
def query_board(cfg, target: str) -> DpuInfo:
    proc = run_ssh(cfg, target, XDPUTIL_QUERY, "reading the DPU fingerprint (xdputil query)",
                   timeout=90)
    out, err = proc.stdout or "", proc.stderr or ""
    if proc.returncode != 0 and json_object(out) is None:
        if proc.returncode == 127 or "No module named xdputil" in err \
                or "No module named 'xdputil'" in err:
            raise UserError(f"{target} has no xdputil (neither the command nor python3 -m "
                            f"xdputil): it does not run a Vitis AI board image; flash "
                            f"{BOARD_IMAGE} (README, section Board)")
        raise UserError(f"`xdputil query` failed on {target} (exit {proc.returncode}: "
                        f"{last_line(err) or last_line(out) or 'no output'}): the DPU is not "
                        f"ready; reboot the board, and check `show_dpu` on it")
    try:
        return parse_xdputil_query(out)
    except ValueError as e:
        raise UserError(f"could not read the DPU fingerprint from `xdputil query` on {target} "
                        f"({e}; first output line: {last_line(out[:200]) or 'none'}): is the "
                        f"DPU loaded? `show_dpu` on the board must list a core") from None


def mismatch(board: DpuInfo, model_fp: int, target: str, xmodel: Path,
             model_dpu: str | None = None, what: str = "nothing copied") -> UserError | None:
    """None when a DPU core of the board has the xmodel's fingerprint, else the one-line
    refusal naming both DPUs, both fingerprints and the fixes."""
    if model_fp in board.fingerprints:
        return None
    bfp = board.fingerprints[0]
    vai = f", VART {board.vai_version}" if board.vai_version else ""
    bdpu = f"{board.archs[0]} " if board.archs and board.archs[0] else ""
    mdpu = f"{model_dpu} " if model_dpu else ""
    return UserError(
        f"fingerprint mismatch, {what}: the board {target} runs DPU {bdpu}fingerprint "
        f"{hex(bfp)} ({describe_fingerprint(bfp)}{vai}) but {xmodel} was compiled for "
        f"{mdpu}fingerprint {hex(model_fp)} ({describe_fingerprint(model_fp)}), so the board "
        f"would refuse it with 'CHECK fingerprint fail'. Fix: flash the Vitis AI 3.0 ZCU104 image "
        f"{BOARD_IMAGE} (README, section Board), or recompile for this board with "
        f"make compile SET=\"compile.board=custom compile.fingerprint={hex(bfp)}\" using the "
        f"Vitis AI docker of the board image's release")


def check_fingerprint(board: DpuInfo, model_fp: int, target: str, xmodel: Path,
                      model_dpu: str | None = None) -> None:
    """Refuse when no DPU core of the board has the xmodel's fingerprint."""
    refusal = mismatch(board, model_fp, target, xmodel, model_dpu)
    if refusal is not None:
        raise refusal


def board_verdict(cfg, target: str, info: dict):
    """For `inspect-xmodel --board`: ({"target", "dpu", "fingerprints", "accepts"}, None) or
    (that, the refusal) for the xmodel described by compile.xmodel.describe()."""
    target = check_target(target)
    board = query_board(cfg, target)
    dpus = [d for d in info["dpu"] if d["fingerprint"]]
    refusal = None
    for d in dpus:
        refusal = mismatch(board, int(d["fingerprint"], 16), target, Path(info["file"]).name,
                           d["dpu_name"], what="not deployed")
        if refusal is not None:
            break
    if not dpus:
        refusal = UserError(f"{Path(info['file']).name} records no DPU fingerprint, so "
                            f"whether {target} accepts it cannot be checked: compile it again "
                            f"with the Vitis AI 3.x image (make compile)")
    verdict = {"target": target, "dpu": board.archs[0],
               "fingerprints": [hex(f) for f in board.fingerprints],
               "accepts": refusal is None}
    return verdict, refusal


# ----------------------------------------------------------------------------- deploy
def xmodel_fingerprint(art: CompileArtifacts):
    """(fingerprint, DPU name) the xmodel itself records, read on this PC before anything is
    copied (compile/xmodel.py, no xir): what the board will compare, not what the manifest
    says. A damaged file, or one the manifest does not describe, stops here in one line."""
    from compile.xmodel import read_dpu_io
    io = read_dpu_io(art.xmodel)
    fp_text = io.get("dpu_fingerprint")
    if fp_text is None:
        return art.fingerprint, io.get("dpu_name")      # older compilers: the manifest's
    fp = int(fp_text, 16)
    if fp != art.fingerprint:
        raise UserError(f"{art.xmodel} records DPU fingerprint {hex(fp)} but {art.manifest_path} "
                        f"says {hex(art.fingerprint)}: they do not belong together; re-run "
                        f"`make compile`")
    return fp, io.get("dpu_name")


def deploy(cfg, build_dir: Path, target: str | None = None, log=print) -> dict:
    """Stage the bundle, check the board's DPU fingerprint, then scp -r it to board.remote_dir.
    Nothing is copied when the fingerprints differ."""
    build_dir = Path(build_dir)
    target = resolve_target(cfg, target, build_dir)
    art = compile_artifacts(cfg, build_dir)
    model_fp, model_dpu = xmodel_fingerprint(art)
    board = query_board(cfg, target)
    check_fingerprint(board, model_fp, target, art.xmodel, model_dpu)
    bundle = stage_bundle(cfg, build_dir, art)
    log(f"staged {bundle} ({art.xmodel.name}, compiled for {model_dpu or 'its DPU'} "
        f"{hex(model_fp)})")
    log(f"board {target}: {len(board.fingerprints)} DPU core(s) {board.archs[0]}, fingerprint "
        f"{hex(board.fingerprints[0])} matches")
    rd = remote_dir(cfg)
    proc = run_ssh(cfg, target, f"mkdir -p {shlex.quote(rd)}", f"creating {rd}")
    if proc.returncode != 0:
        raise UserError(f"could not create {rd} on {target} ({last_line(proc.stderr)}): set "
                        f"board.remote_dir to a writable folder (default /home/root/signlang)")
    argv = run_scp(cfg, target, [str(bundle / n) for n in bundle_names(bundle)],
                   f"{target}:{rd}/", f"copying the bundle to {rd}")
    record = {"target": target, "remote_dir": rd, "xmodel": art.xmodel.name,
              "fingerprint": hex(art.fingerprint), "board_fingerprints":
              [hex(f) for f in board.fingerprints], "board_dpu": board.archs[0],
              "board_vart": board.vai_version, "scp": argv, "deployed_utc": _now()}
    atomic_write_json(_record_path(build_dir), record)
    log(f"deployed to {target}:{rd}/ ({', '.join(bundle_names(bundle))}); next: make board-run "
        f"(live viewer), make board-bench or make board-eval-photos DIR=...")
    return record


# ----------------------------------------------------------------------------- SD card
SD_DIRNAME = "sdcard"                # <build>/sdcard/signlang/: make bundle's folder
SD_APP_NAME = "signlang"
RUN_SCRIPT = """#!/bin/sh
# The sign-language app on the ZCU104 board ({xmodel}, DPU fingerprint {fingerprint}), made by
# `make bundle` ({commit}). Copy this folder onto the board (e.g. onto the SD card's rootfs
# partition at /home/root/signlang, or its boot partition), then on the board:
#   sh run.sh                          live: camera /dev/video0, web viewer on port {port}
#   sh run.sh --source 1 --port 9000   any app flags instead (python3 -m dpu_app --help)
#   sh run.sh --bench --csv data/{csv}
# The app checks the board's DPU fingerprint before it loads the model.
cd "$(dirname "$0")" || exit 2
if [ "$#" -eq 0 ]; then
  set -- --source /dev/video0 --web --host 0.0.0.0 --port {port}
  echo "live viewer: open http://<this board's IP>:{port}/ in a browser on this network"
fi
exec {argv} "$@"
"""


def sd_bundle(cfg, build_dir: Path, log=print) -> Path:
    """<build>/sdcard/signlang/: what deploy copies (the app, the compiled model and every
    file its manifest names, the test sets) plus run.sh, for a board reached without ssh."""
    from toolchain.artifacts import _git_commit
    build_dir = Path(build_dir)
    art = compile_artifacts(cfg, build_dir)
    model_fp, model_dpu = xmodel_fingerprint(art)       # a damaged xmodel stops here
    script = RUN_SCRIPT.format(xmodel=art.xmodel.name, fingerprint=hex(model_fp),
                               commit=_git_commit() or "no git commit", port=cfg.board.port,
                               csv=TEST_CSV_NAME, argv=app_argv(art))
    final = build_dir / SD_DIRNAME / SD_APP_NAME
    stage_bundle(cfg, build_dir, art, final=final, files={"run.sh": (script, 0o755)})
    log(f"bundle: {final}/ ({', '.join(sorted(p.name for p in final.iterdir()))}; "
        f"{art.xmodel.name} for {model_dpu or 'its DPU'} {hex(model_fp)})")
    log(f"next: copy {final} onto the board (e.g. the SD card's rootfs at /home/root/"
        f"{SD_APP_NAME}), then run `sh run.sh` there; the viewer is on port {cfg.board.port}")
    return final


def _check_deployed(cfg, target: str, art: CompileArtifacts) -> None:
    rd = remote_dir(cfg)
    q = shlex.quote
    files = [f"{rd}/dpu_app/__main__.py", f"{rd}/model/{art.xmodel.name}",
             f"{rd}/model/manifest.json"]
    proc = run_ssh(cfg, target, " && ".join(f"test -f {q(f)}" for f in files),
                   "checking the deployed app")
    if proc.returncode != 0:
        raise UserError(f"the app or {art.xmodel.name} is not deployed on {target}:{rd}: run "
                        f"make deploy BOARD={target} first")


# ----------------------------------------------------------------------------- live
def viewer_url(target: str, port: int) -> str:
    host = target_host(target)
    return f"http://{'[' + host + ']' if ':' in host else host}:{int(port)}/"


def board_run(cfg, build_dir: Path, target: str | None = None, port: int | None = None,
              log=print) -> int:
    """Start the live app with the web viewer on the board (in the foreground: Ctrl-C here
    stops it there, thanks to ssh -tt) and print the URL to open."""
    build_dir = Path(build_dir)
    target = resolve_target(cfg, target, build_dir)
    art = compile_artifacts(cfg, build_dir)
    _check_deployed(cfg, target, art)
    port = int(port or cfg.board.port)
    log(f"live viewer: open {viewer_url(target, port)} in a browser on this network "
        f"(the app runs on {target} until Ctrl-C here)")
    argv = ssh_argv(cfg, target, app_command(cfg, art, "--web", "--host", "0.0.0.0", "--port",
                                             str(port)), tty=True)
    try:
        proc = subprocess.run(argv, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise UserError("`ssh` is not installed on this machine: apt-get install "
                        "openssh-client") from None
    except KeyboardInterrupt:
        return 130
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    if proc.returncode == 255:
        raise ssh_fault(target, proc.stderr, "starting the app")
    if proc.returncode not in (0, 130):
        raise explain_exit(proc.returncode, target, "running the live app")
    return 0


# ----------------------------------------------------------------------------- measure
def _run_and_fetch(cfg, target: str, art, args: list, remote_json: str, local: Path,
                   what: str, check=lambda res: []) -> dict:
    """Run the app on the board with --json, fetch that JSON, check it (`check` returns its
    problems) and keep it in `local` (atomically)."""
    rd = remote_dir(cfg)
    cmd = f"mkdir -p {shlex.quote(rd + '/results')} && " + app_command(
        cfg, art, *args, "--json", remote_json)
    proc = run_ssh(cfg, target, cmd, what, timeout=3600)
    if proc.stdout:
        sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        if proc.stderr:
            sys.stderr.write(proc.stderr)
        raise explain_exit(proc.returncode, target, what)
    with tempfile.TemporaryDirectory(prefix="board-") as tmp:
        run_scp(cfg, target, [f"{target}:{rd}/{remote_json}"], str(Path(tmp) / "r.json"),
                f"fetching {remote_json}")
        try:
            res = json.loads((Path(tmp) / "r.json").read_text())
        except (OSError, ValueError):
            raise UserError(f"{target}:{rd}/{remote_json} is not valid JSON: the board app's "
                            f"--json output is broken; re-deploy") from None
    problems = check(res)
    if problems:
        raise UserError(f"{target}:{rd}/{remote_json}: {'; '.join(problems)}: the board app's "
                        f"--json output does not match this toolchain; re-deploy matching code")
    res["board"] = {"target": target, "remote_json": f"{rd}/{remote_json}",
                    "fetched_utc": _now()}
    atomic_write_json(local, res)
    return res


def fill_board_rung(build_dir: Path, bench: dict, source: str) -> Path:
    """The ladder's board rung from a board bench result (every set it measured)."""
    threads = max((r.get("threads", 1) for r in bench.get("runs", [])), default=None)
    where = (f"ZCU104 DPU via VART: {bench['fps']:,.0f} images/s"
             + (f" with {threads} threads" if threads else "") + f" ({source})")
    return L.set_rung(build_dir, L.rung("board", f"compile/{bench.get('xmodel', '<name>.xmodel')}",
                                        where, bench["sets"]))


def board_bench(cfg, build_dir: Path, target: str | None = None, threads: int = 2,
                run: bool = True, log=print) -> dict:
    """The app's benchmark on the board (the test CSV and the validation photos), fetched to
    <build>/board/bench.json; fills the ladder's board rung. run=False only refills the
    ladder from an existing bench.json."""
    build_dir = Path(build_dir)
    local = build_dir / "board" / "bench.json"
    if run:
        target = resolve_target(cfg, target, build_dir)
        art = compile_artifacts(cfg, build_dir)
        _check_deployed(cfg, target, art)
        # a model trained with nothing held out has no validation photos (nor has its bundle)
        photos = S.out(cfg, build_dir, "train", "photos_val").is_dir()
        hands = art.manifest.get("kind") == "landmarks"
        if hands and not photos:
            raise UserError("the hand pipeline is benchmarked on the validation photos, and "
                            "this model was trained with nothing held out: make board-eval-"
                            "photos DIR=<a labelled photo folder> scores it instead")
        log(f"benchmarking {art.xmodel.name} on {target} ("
            + ("validation photos and 640x480 frames of held hands" if hands else
               f"{threads} threads: test CSV" + (" and validation photos" if photos else ""))
            + ")...")
        args = (["--bench", "--eval-photos", f"data/{PHOTOS_NAME}"] if hands else
                ["--bench", "--csv", f"data/{TEST_CSV_NAME}",
                 *(["--eval-photos", f"data/{PHOTOS_NAME}"] if photos else []),
                 "--threads", str(int(threads))])
        bench = _run_and_fetch(cfg, target, art, args, "results/bench.json", local,
                               "running the benchmark", check=check_result)
        bench["xmodel"] = art.xmodel.name
        atomic_write_json(local, bench)
    else:
        if not local.is_file():
            raise UserError(f"{local} does not exist: run make board-bench (without BENCH_RUN=no)"
                            f" first")
        try:
            bench = json.loads(local.read_text())
        except ValueError:
            raise UserError(f"{local} is not valid JSON: run make board-bench again") from None
        problems = check_result(bench)
        if problems:
            raise UserError(f"{local}: {'; '.join(problems)}: the board app's --json output "
                            f"does not match this toolchain; re-deploy matching code")
    if (bench.get("sets") or {}).get("sign_mnist_test"):
        log(f"board result: Sign MNIST test {bench['accuracy'] * 100:.2f} %, "
            f"{bench['fps']:,.0f} images/s -> {local}")
    else:
        log(f"board result: validation photos top-1 {bench['accuracy'] * 100:.2f} % through "
            f"the hand pipeline, {bench['fps']:,.1f} frames/s (640x480, tracking) -> {local}")
    src = (bench.get("board") or {}).get("target", "board")
    when = ((bench.get("board") or {}).get("fetched_utc") or "")[:10]
    try:
        md = fill_board_rung(build_dir, bench, f"{src}, board/bench.json {when}".strip())
    except UserError as e:
        raise UserError(f"{e}; the board result is kept in {local}: after make quantize, "
                        f"make board-bench BENCH_RUN=no fills it in") from None
    log(f"ladder updated: {md}")
    return bench


def check_photo_folder(photos: str):
    """A labelled photo folder that scans cleanly (a bad one fails here, not on the board);
    returns its scan (dpu_app.datasets.PhotoFolder)."""
    src = Path(photos)
    if not photos:
        raise UserError("DIR is empty: give a photo folder with one sub-folder per letter, or "
                        "leave DIR out for the photo validation split")
    if not src.is_dir():
        what = "is a file, not a folder" if src.is_file() else "not found"
        raise UserError(f"DIR={photos}: photo folder {what} (DIR= a folder with one sub-folder "
                        f"per letter, see data/asl_photos/README.md)")
    from dpu_app.datasets import scan_photo_folder
    try:
        return scan_photo_folder(str(src))
    except Exception as e:                          # AppError: one line
        raise UserError(str(e)) from None


def board_eval_photos(cfg, build_dir: Path, photos: str, target: str | None = None,
                      log=print) -> dict:
    """Copy a photo folder to the board and score it there with the .xmodel, through the
    app's own pipeline (the board's figure for *your* hands)."""
    build_dir = Path(build_dir)
    src = Path(check_photo_folder(photos).root)
    target = resolve_target(cfg, target, build_dir)
    art = compile_artifacts(cfg, build_dir)
    _check_deployed(cfg, target, art)
    rd = remote_dir(cfg)
    name = f"eval-{src.resolve().name}"
    run_ssh(cfg, target, f"rm -rf {shlex.quote(rd + '/data/' + name)} && mkdir -p "
                         f"{shlex.quote(rd + '/data')}", "preparing the folder")
    run_scp(cfg, target, [str(src)], f"{target}:{rd}/data/{name}", f"copying {src}")
    local = build_dir / "board" / f"{name}.json"
    res = _run_and_fetch(cfg, target, art, ["--eval-photos", f"data/{name}"],
                         f"results/{name}.json", local, f"scoring {src}")
    log(f"board result for {src}: -> {local}")
    return res
