"""Board tooling: deploy the compiled model and the live app to a ZCU104, run it, benchmark it.

NOT YET RUN ON A REAL BOARD. Everything here is written against the documented interface of
the Vitis AI 3.0 ZCU104 board image (login root/root, apps under /home/root, `xdputil query`
prints JSON with the DPU fingerprint, files go over `scp -r`) and tested by contract: the
exact ssh/scp command lines, real `xdputil query` output (tests/fixtures/board/, with their
sources) and a fake ssh/scp on PATH.

    make deploy BOARD=root@<ip>   deploy(cfg, build_dir, target)
    make board-run                board_run(cfg, build_dir, target)   (viewer URL printed)
    make board-bench              board_bench(cfg, build_dir, target) (fills the ladder's board rung)

What lands on the board (<remote_dir> = board.remote_dir, default /home/root/signlang):
    <remote_dir>/dpu_app/...                    the app (python3 only, plus the image's vart/xir/cv2)
    <remote_dir>/model/<name>.xmodel, manifest.json, labels.txt   from <build>/compile/
    <remote_dir>/data/sign_mnist_test.csv       the test CSV (plain CSV) for board-bench
    <remote_dir>/deploy.json                    what was deployed, from which commit
Deploy refuses to copy anything when the board's DPU fingerprint differs from the one the
xmodel was compiled for (the board would fail at load with "CHECK fingerprint fail").

Every expected fault (board unreachable, ssh login refused, host key changed, fingerprint
mismatch, nothing compiled, nothing deployed, no ladder yet) is a `UserError`: one line that
names the thing and the fix.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from compile.manifest import sha256_file

from .artifacts import _git_commit, atomic_write_json, atomic_write_text, staged_dir
from .config import REPO_ROOT, resolve_path
from .errors import UserError

DPU_APP_DIR = REPO_ROOT / "dpu_app"
BUNDLE_DIRNAME = "bundle"            # <build>/board/bundle/: exactly what is copied
RECORD_FILE = "deploy.json"          # <build>/board/deploy.json: the last successful deploy
REMOTE_BENCH_JSON = "results/bench.json"
TEST_CSV_NAME = "sign_mnist_test.csv"

# Run on the board. The 3.0 image's /usr/bin/xdputil is a shell wrapper around
# `python3 -m xdputil` (Vitis-AI issue #1215 shows "/usr/bin/xdputil: line 20: ...
# /usr/bin/python3 -m xdputil $*"); older images only had the module (VART README: "obtain
# fingerprint of DPU: python3 -m xdputil query"), so fall back to it.
XDPUTIL_QUERY = ("if command -v xdputil >/dev/null 2>&1; then xdputil query; "
                 "else python3 -m xdputil query; fi")

# What a fingerprint means, for the mismatch message. Sources: tests/fixtures/board/ (real
# `xdputil query` output of a Vitis AI 3.0 and a 2.5 image), Vitis-AI-Tutorials #117 (3.0
# ZCU104 image reports 0x101000056010407, 2.5 tutorials compile for 0x101000016010407),
# Vitis-AI #729 / #890 (ZCU104 images of Vitis AI 1.4/2.0 report 0x1000020f6014407).
KNOWN_FINGERPRINTS = {
    0x101000056010407: "DPUCZDX8G_ISA1_B4096 of the Vitis AI 3.0 board images, which 3.5 reuses",
    0x101000016010407: "DPUCZDX8G_ISA1_B4096 of Vitis AI 2.5-era board images",
    0x1000020F6014407: "DPUCZDX8G_ISA0_B4096_MAX_BG2 of Vitis AI 1.x/2.0-era board images",
    0x101000016010406: "DPUCZDX8G_ISA1_B3136 of Vitis AI 2.5-era Kria images",
}
BOARD_IMAGE = "xilinx-zcu104-dpu-v2022.2-v3.0.0.img.gz"

_TARGET_RE = re.compile(r"^(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?"
                        r"(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])$")


# ----------------------------------------------------------------------------- targets

def check_target(target: str) -> str:
    """`[user@]host` (host: name, IPv4 or [IPv6]); anything else is a UserError."""
    t = (target or "").strip()
    if not t or not _TARGET_RE.match(t):
        raise UserError(f"board target {target!r} is not user@host: pass BOARD=root@<board-ip> "
                        f"(e.g. make deploy BOARD=root@192.168.1.50)")
    return t


def target_host(target: str) -> str:
    return target.rsplit("@", 1)[-1].strip("[]")


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


# ----------------------------------------------------------------------------- command lines

def ssh_options(cfg) -> list[str]:
    """board.ssh_options, plus BatchMode=yes and ConnectTimeout=10 unless they set their own:
    never a password prompt, never an endless wait."""
    opts = [str(o) for o in cfg.board.ssh_options]
    joined = " ".join(opts).lower()
    if "batchmode" not in joined:
        opts += ["-o", "BatchMode=yes"]
    if "connecttimeout" not in joined:
        opts += ["-o", "ConnectTimeout=10"]
    return opts


def ssh_argv(cfg, target: str, command: str, tty: bool = False) -> list[str]:
    return ["ssh", *ssh_options(cfg), *(["-tt"] if tty else []), target, command]


def scp_argv(cfg, sources: list[str], dest: str, legacy: bool = False) -> list[str]:
    """`scp -r [-O] <options> sources... dest`; -O (the classic scp protocol) for boards whose
    ssh server has no SFTP subsystem (OpenSSH >= 9 scp uses SFTP by default)."""
    return ["scp", "-r", *(["-O"] if legacy else []), *ssh_options(cfg), *sources, dest]


def remote_paths(cfg, xmodel_file: str) -> dict:
    rd = cfg.board.remote_dir.rstrip("/") or "/"
    return {"dir": rd, "app": f"{rd}/dpu_app/__main__.py", "model_dir": f"{rd}/model",
            "xmodel": f"{rd}/model/{xmodel_file}", "manifest": f"{rd}/model/manifest.json",
            "csv": f"{rd}/data/{TEST_CSV_NAME}", "bench_json": f"{rd}/{REMOTE_BENCH_JSON}"}


def run_app_command(cfg, xmodel_file: str, port: int | None = None) -> str:
    """The live app with the web viewer, as started on the board by board-run."""
    p = remote_paths(cfg, xmodel_file)
    q = shlex.quote
    return (f"cd {q(p['dir'])} && exec python3 -m dpu_app --model {q(p['xmodel'])} "
            f"--manifest {q(p['manifest'])} --web --host 0.0.0.0 --port {int(port or cfg.board.port)}")


def bench_command(cfg, xmodel_file: str, threads: int) -> str:
    """The benchmark over the deployed test CSV; its JSON lands in <remote_dir>/results/."""
    p = remote_paths(cfg, xmodel_file)
    q = shlex.quote
    return (f"mkdir -p {q(p['dir'] + '/results')} && cd {q(p['dir'])} && python3 -m dpu_app "
            f"--model {q(p['xmodel'])} --manifest {q(p['manifest'])} --bench "
            f"--csv {q(p['csv'])} --json {q(p['bench_json'])} --threads {int(threads)}")


# ----------------------------------------------------------------------------- running ssh/scp

def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _ssh_fault(target: str, stderr: str, what: str) -> UserError:
    """Turn ssh's own failure (exit 255) into one line naming the cause and the fix."""
    return (_known_ssh_fault(target, stderr, what)
            or UserError(f"ssh to {target} failed while {what}: "
                         f"{_last_line(stderr) or 'exit 255'}"))


def _known_ssh_fault(target: str, stderr: str, what: str) -> UserError | None:
    host = target_host(target)
    err = stderr or ""
    for pat in ("Connection timed out", "No route to host", "Network is unreachable",
                "Connection refused", "Could not resolve hostname", "Operation timed out",
                "Name or service not known", "Connection reset"):
        if pat.lower() in err.lower():
            return UserError(
                f"board {target} is unreachable over ssh ({pat}) while {what}: check that it "
                f"is powered and booted from the Vitis AI SD card, the Ethernet cable, and its "
                f"IP address (serial console: ifconfig eth0), then retry with "
                f"BOARD=root@<that-ip>")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        return UserError(
            f"the ssh host key of {host} changed (a re-flashed SD card makes a new one) while "
            f"{what}: if this is your board, forget the old key with `ssh-keygen -R {host}`, "
            f"then retry")
    if "Host key verification failed" in err:
        return UserError(
            f"ssh does not know {host}'s host key yet (BatchMode never asks) while {what}: "
            f"log in once with `ssh {target}` and accept the key, or add "
            f"-o StrictHostKeyChecking=accept-new to board.ssh_options")
    if "Permission denied" in err or "Too many authentication failures" in err:
        return UserError(
            f"ssh login to {target} was refused ({_last_line(err)}) while {what}: "
            f"BatchMode never types a password, so install your key once with "
            f"`ssh-copy-id {target}` (the Vitis AI image's root password is root)")
    return None


def _run(argv: list[str], what: str, timeout: float, capture: bool = True):
    try:
        return subprocess.run(argv, capture_output=capture, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserError(f"`{argv[0]}` is not installed on this machine (needed for {what}): "
                        f"apt-get install openssh-client") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"no answer from the board within {timeout:.0f} s while {what}: check "
                        f"that it is up (ssh into it by hand) and retry") from None


def run_ssh(cfg, target: str, command: str, what: str, timeout: float = 120):
    """Run one remote command; ssh's own failures become UserError, the remote exit code is
    returned to the caller in the CompletedProcess."""
    proc = _run(ssh_argv(cfg, target, command), what, timeout)
    if proc.returncode == 255:
        raise _ssh_fault(target, proc.stderr, what)
    return proc


_SFTP_MISSING = ("sftp-server", "subsystem request failed")


def run_scp(cfg, target: str, sources: list[str], dest: str, what: str,
            timeout: float = 600) -> list[str]:
    """scp -r; retried once with -O (classic protocol) when the board's ssh server has no
    SFTP subsystem (e.g. dropbear: "sh: /usr/libexec/sftp-server: not found"). Returns the argv
    that worked."""
    argv = scp_argv(cfg, sources, dest)
    proc = _run(argv, what, timeout)
    if proc.returncode != 0:
        fault = _known_ssh_fault(target, proc.stderr, what)
        if fault is not None:
            raise fault
        if any(p in (proc.stderr or "") for p in _SFTP_MISSING):
            argv = scp_argv(cfg, sources, dest, legacy=True)
            proc = _run(argv, what, timeout)
    if proc.returncode != 0:
        fault = _known_ssh_fault(target, proc.stderr, what)
        if fault is not None:
            raise fault
        raise UserError(f"scp to/from {target} failed while {what}: "
                        f"{_last_line(proc.stderr) or f'exit {proc.returncode}'}")
    return argv


# ----------------------------------------------------------------------------- xdputil query

@dataclass
class DpuInfo:
    fingerprints: list[int]   # one per DPU core, in cu order
    archs: list[str]          # "DPUCZDX8G_ISA1_B4096", ...
    ip_version: str | None    # "v4.1.0"
    vai_version: str | None   # "3.0.0" from libvart-runner.so's version string
    raw: dict


def _json_object(text: str) -> dict | None:
    """The first JSON object in text (stdout may carry log lines around it)."""
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = dec.raw_decode(text, i)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def _to_int(fp) -> int | None:
    try:
        return int(str(fp).strip(), 16) if isinstance(fp, str) else int(fp)
    except (TypeError, ValueError):
        return None


def parse_xdputil_query(text: str) -> DpuInfo:
    """Parse `xdputil query` output (Vitis AI 2.5/3.0 layout: "DPU IP Spec", "VAI Version",
    "kernels": [{"DPU Arch", "fingerprint", "IP Type", "cu_name", ...}]). Kernels that are not
    a DPU (fingerprint 0x0 / empty "DPU Arch", e.g. the softmax or pre-processing CUs) are
    skipped. Raises ValueError when there is no JSON or no DPU kernel."""
    obj = _json_object(text or "")
    if obj is None:
        raise ValueError("no JSON object in the output")
    fps, archs = [], []
    for k in obj.get("kernels") or []:
        if not isinstance(k, dict):
            continue
        fp = _to_int(k.get("fingerprint"))
        if not fp or (k.get("IP Type") not in (None, "DPU")) or not k.get("DPU Arch", "x"):
            continue
        fps.append(fp)
        archs.append(str(k.get("DPU Arch") or ""))
    if not fps:
        raise ValueError("no DPU kernel with a fingerprint in the output")
    spec = obj.get("DPU IP Spec") or {}
    vart = str((obj.get("VAI Version") or {}).get("libvart-runner.so", ""))
    m = re.search(r"Version:\s*(\d+\.\d+(?:\.\d+)?)", vart)
    return DpuInfo(fps, archs, spec.get("IP version"), m.group(1) if m else None, obj)


def describe_fingerprint(fp: int) -> str:
    return KNOWN_FINGERPRINTS.get(fp, "a DPU configuration this toolchain does not know "
                                      "(custom hardware?)")


def query_board(cfg, target: str) -> DpuInfo:
    proc = run_ssh(cfg, target, XDPUTIL_QUERY, "reading the DPU fingerprint (xdputil query)",
                   timeout=90)
    out, err = proc.stdout or "", proc.stderr or ""
    if proc.returncode != 0 and _json_object(out) is None:
        if proc.returncode == 127 or "No module named xdputil" in err \
                or "No module named 'xdputil'" in err:
            raise UserError(f"{target} has no xdputil (neither the command nor python3 -m "
                            f"xdputil): it does not run a Vitis AI board image; flash "
                            f"{BOARD_IMAGE} (README, section Board)")
        raise UserError(f"`xdputil query` failed on {target} (exit {proc.returncode}: "
                        f"{_last_line(err) or _last_line(out) or 'no output'}): the DPU is not "
                        f"ready; reboot the board, and check `show_dpu` on it")
    try:
        return parse_xdputil_query(out)
    except ValueError as e:
        raise UserError(f"could not read the DPU fingerprint from `xdputil query` on {target} "
                        f"({e}; first output line: {_last_line(out[:200]) or 'none'}): is the "
                        f"DPU loaded? `show_dpu` on the board must list a core") from None


def check_fingerprint(board: DpuInfo, model_fp: int, target: str, xmodel: Path) -> None:
    """Refuse when no DPU core of the board has the xmodel's fingerprint."""
    if model_fp in board.fingerprints:
        return
    bfp = board.fingerprints[0]
    vai = f", VART {board.vai_version}" if board.vai_version else ""
    raise UserError(
        f"fingerprint mismatch, nothing copied: the board {target} runs DPU fingerprint "
        f"{hex(bfp)} ({describe_fingerprint(bfp)}{vai}) but {xmodel} was compiled for "
        f"{hex(model_fp)} ({describe_fingerprint(model_fp)}), so the board would refuse it "
        f"with 'CHECK fingerprint fail'. Fix: flash the Vitis AI 3.0 ZCU104 image "
        f"{BOARD_IMAGE} (README, section Board), or recompile for this board with "
        f"make compile SET=\"compile.board=custom compile.fingerprint={hex(bfp)}\" using the "
        f"Vitis AI docker of the board image's release")


# ----------------------------------------------------------------------------- local artifacts

@dataclass
class CompileArtifacts:
    dir: Path
    manifest_path: Path
    manifest: dict
    xmodel: Path
    labels: Path
    fingerprint: int


def compile_artifacts(build_dir: Path) -> CompileArtifacts:
    """<build>/compile/: manifest.json (schema 1, compile/manifest.py), the xmodel it names
    (sha256 checked) and labels.txt."""
    cdir = Path(build_dir) / "compile"
    mpath = cdir / "manifest.json"
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
    fp = _to_int(fp_text)
    if not fp:
        raise UserError(f"{mpath}: target.fingerprint {fp_text!r} is not a hex fingerprint: "
                        f"re-run `make compile`")
    xmodel = cdir / Path(str(xfile)).name
    if not xmodel.is_file():
        raise UserError(f"{xmodel} (named in {mpath}) is missing: re-run `make compile`")
    want = (man.get("xmodel") or {}).get("sha256")
    if want and sha256_file(xmodel) != want:
        raise UserError(f"{xmodel} does not match the sha256 in {mpath} (changed after "
                        f"compiling?): re-run `make compile`")
    labels = cdir / str(man.get("labels_file") or "labels.txt")
    if not labels.is_file():
        raise UserError(f"{labels} is missing: re-run `make compile`")
    return CompileArtifacts(cdir, mpath, man, xmodel, labels, fp)


def stage_bundle(cfg, build_dir: Path, art: CompileArtifacts) -> Path:
    """<build>/board/bundle/: dpu_app/, model/, data/ and deploy.json, exactly as they will
    sit under board.remote_dir."""
    app_src = DPU_APP_DIR
    if not (app_src / "__main__.py").is_file():
        raise UserError(f"{app_src / '__main__.py'} is missing: the board app is not in this "
                        f"checkout (git status dpu_app/)")
    csv_src = resolve_path(cfg.data.test_csv)
    if not csv_src.is_file():
        raise UserError(f"{csv_src} (data.test_csv) is missing: board-bench needs it; restore "
                        f"it with 'git checkout -- data/sign_mnist'")
    final = Path(build_dir) / "board" / BUNDLE_DIRNAME
    with staged_dir(final) as stage:
        shutil.copytree(app_src, stage / "dpu_app",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        (stage / "model").mkdir()
        for src in (art.xmodel, art.manifest_path, art.labels):
            shutil.copy2(src, stage / "model" / src.name)
        (stage / "data").mkdir()
        opener = gzip.open if csv_src.name.endswith(".gz") else open
        with opener(csv_src, "rb") as fin, open(stage / "data" / TEST_CSV_NAME, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        info = {"xmodel": art.xmodel.name, "xmodel_sha256": sha256_file(art.xmodel),
                "fingerprint": hex(art.fingerprint), "name": art.manifest.get("name"),
                "git_commit": _git_commit(),
                "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        (stage / "deploy.json").write_text(json.dumps(info, indent=2) + "\n")
    return final


# ----------------------------------------------------------------------------- the commands

def deploy(cfg, build_dir: Path, target: str | None = None, log=print) -> dict:
    """Stage the bundle, check the board's DPU fingerprint, then scp -r it to board.remote_dir.
    Nothing is copied when the fingerprints differ."""
    build_dir = Path(build_dir)
    target = resolve_target(cfg, target, build_dir)
    art = compile_artifacts(build_dir)
    bundle = stage_bundle(cfg, build_dir, art)
    log(f"staged {bundle} ({art.xmodel.name}, compiled for {hex(art.fingerprint)})")

    board = query_board(cfg, target)
    check_fingerprint(board, art.fingerprint, target, art.xmodel)
    log(f"board {target}: {len(board.fingerprints)} DPU core(s) {board.archs[0]}, fingerprint "
        f"{hex(board.fingerprints[0])} matches")

    rd = cfg.board.remote_dir.rstrip("/") or "/"
    proc = run_ssh(cfg, target, f"mkdir -p {shlex.quote(rd)}", f"creating {rd}")
    if proc.returncode != 0:
        raise UserError(f"could not create {rd} on {target} ({_last_line(proc.stderr)}): set "
                        f"board.remote_dir to a writable folder (default /home/root/signlang)")
    sources = [str(bundle / n) for n in ("dpu_app", "model", "data", "deploy.json")]
    argv = run_scp(cfg, target, sources, f"{target}:{rd}/", f"copying the bundle to {rd}")
    record = {"target": target, "remote_dir": rd, "xmodel": art.xmodel.name,
              "fingerprint": hex(art.fingerprint), "board_fingerprints":
              [hex(f) for f in board.fingerprints], "board_dpu": board.archs[0],
              "board_vart": board.vai_version, "scp": argv,
              "deployed_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(_record_path(build_dir), record)
    log(f"deployed to {target}:{rd}/ (dpu_app/, model/, data/); next: make board-run "
        f"(live viewer) or make board-bench")
    return record


def viewer_url(target: str, port: int) -> str:
    host = target_host(target)
    return f"http://{'[' + host + ']' if ':' in host else host}:{int(port)}/"


def _check_deployed(cfg, target: str, xmodel_file: str) -> None:
    p = remote_paths(cfg, xmodel_file)
    q = shlex.quote
    cmd = " && ".join(f"test -f {q(p[k])}" for k in ("app", "xmodel", "manifest"))
    proc = run_ssh(cfg, target, cmd, "checking the deployed app")
    if proc.returncode != 0:
        raise UserError(f"the app or {xmodel_file} is not deployed on {target}:{p['dir']}: run "
                        f"make deploy BOARD={target} first")


def board_run(cfg, build_dir: Path, target: str | None = None, port: int | None = None,
              log=print) -> int:
    """Start the live app with the web viewer on the board (in the foreground: Ctrl-C here
    stops it there, thanks to ssh -tt) and print the URL to open."""
    build_dir = Path(build_dir)
    target = resolve_target(cfg, target, build_dir)
    art = compile_artifacts(build_dir)
    _check_deployed(cfg, target, art.xmodel.name)
    port = int(port or cfg.board.port)
    log(f"live viewer: open {viewer_url(target, port)} in a browser on this network "
        f"(the app runs on {target} until Ctrl-C here)")
    argv = ssh_argv(cfg, target, run_app_command(cfg, art.xmodel.name, port), tty=True)
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
        raise _ssh_fault(target, proc.stderr, "starting the app")
    if proc.returncode not in (0, 130):
        raise UserError(f"the app on {target} stopped with exit code {proc.returncode} (its "
                        f"message is above); after a fix, make deploy and make board-run again",
                        exit_code=proc.returncode if 0 < proc.returncode < 128 else 1)
    return 0


def _validate_bench(bench, source: str) -> dict:
    if not isinstance(bench, dict):
        raise UserError(f"{source} is not a JSON object: the board app's --json output "
                        f"changed; re-deploy matching code")
    for key in ("accuracy", "fps"):
        v = bench.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UserError(f"{source} has no numeric '{key}' (keys: {', '.join(bench) or 'none'})"
                            f": the board app must write accuracy (0..1) and fps")
    if not 0.0 <= bench["accuracy"] <= 1.0:
        raise UserError(f"{source}: accuracy {bench['accuracy']} is not a fraction in 0..1")
    if not bench["fps"] > 0:
        raise UserError(f"{source}: fps {bench['fps']} is not positive")
    return bench


def fill_board_rung(build_dir: Path, bench: dict, source: str) -> Path:
    """Set the ladder's "board" rung (accuracy, fps, source) from a board bench result and
    rewrite <build>/ladder/ladder.json and ladder.md (each atomically)."""
    ladder_dir = Path(build_dir) / "ladder"
    lpath = ladder_dir / "ladder.json"
    if not lpath.is_file():
        raise UserError(f"no accuracy ladder at {lpath} yet (make quantize writes it): the board "
                        f"result is kept in {Path(build_dir) / 'board' / 'bench.json'}; run make "
                        f"quantize, then make board-bench BENCH_RUN=no to fill it in")
    try:
        ladder = json.loads(lpath.read_text())
        rungs = ladder["rungs"]
        assert isinstance(rungs, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UserError(f"{lpath} is not a ladder (no rungs list): re-run make quantize") from None
    board = next((r for r in rungs if isinstance(r, dict) and r.get("rung") == "board"), None)
    if board is None:
        board = {"rung": "board", "artifact": "compile/<name>.xmodel"}
        rungs.append(board)
    threads = bench.get("threads")
    images = bench.get("images")
    board["accuracy"] = float(bench["accuracy"])
    board["fps"] = float(bench["fps"])
    board["source"] = source
    board["images"] = images
    board["where"] = (f"ZCU104 DPU via VART: {bench['fps']:,.0f} fps"
                      + (f" with {threads} threads" if threads else "")
                      + (f" on {images:,} images" if isinstance(images, int) else "")
                      + f" ({source})")
    prev = None                                 # drop vs the previous measured rung
    for r in rungs:
        if r is board:
            r["drop_pt"] = (round((prev - r["accuracy"]) * 100, 4) if prev is not None else None)
        if isinstance(r, dict) and r.get("accuracy") is not None:
            prev = r["accuracy"]
    from quantize.quantize import ladder_markdown
    md = ladder_markdown(ladder)
    atomic_write_json(lpath, ladder)
    atomic_write_text(ladder_dir / "ladder.md", md)
    return ladder_dir / "ladder.md"


def board_bench(cfg, build_dir: Path, target: str | None = None, threads: int = 2,
                run: bool = True, log=print) -> dict:
    """Run the benchmark on the board over the deployed test CSV, fetch its JSON into
    <build>/board/bench.json and fill the ladder's board rung. run=False only refills the
    ladder from an existing bench.json."""
    build_dir = Path(build_dir)
    local = build_dir / "board" / "bench.json"
    if run:
        target = resolve_target(cfg, target, build_dir)
        art = compile_artifacts(build_dir)
        _check_deployed(cfg, target, art.xmodel.name)
        log(f"benchmarking {art.xmodel.name} on {target} ({threads} threads, test CSV)...")
        proc = run_ssh(cfg, target, bench_command(cfg, art.xmodel.name, threads),
                       "running the benchmark", timeout=3600)
        if proc.stdout:
            sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            raise UserError(f"the benchmark on {target} failed (exit {proc.returncode}: "
                            f"{_last_line(proc.stderr) or _last_line(proc.stdout) or 'no output'})"
                            f"; see the app's message, fix, make deploy, retry")
        remote = remote_paths(cfg, art.xmodel.name)["bench_json"]
        with tempfile.TemporaryDirectory(prefix="bench-", dir=local.parent
                                         if local.parent.exists() else None) as tmp:
            run_scp(cfg, target, [f"{target}:{remote}"], str(Path(tmp) / "bench.json"),
                    "fetching bench.json")
            try:
                bench = json.loads((Path(tmp) / "bench.json").read_text())
            except (OSError, ValueError):
                raise UserError(f"{target}:{remote} is not valid JSON: the board app's --json "
                                f"output is broken") from None
        _validate_bench(bench, f"{target}:{remote}")
        bench.setdefault("threads", threads)
        bench["board"] = {"target": target, "remote_json": remote,
                          "fetched_utc": _dt.datetime.now(_dt.timezone.utc)
                          .isoformat(timespec="seconds")}
        atomic_write_json(local, bench)
        log(f"board result: accuracy {bench['accuracy'] * 100:.2f} %, {bench['fps']:,.0f} fps "
            f"-> {local}")
    else:
        if not local.is_file():
            raise UserError(f"{local} does not exist: run make board-bench (without BENCH_RUN=no)"
                            f" first")
        try:
            bench = json.loads(local.read_text())
        except ValueError:
            raise UserError(f"{local} is not valid JSON: run make board-bench again") from None
        _validate_bench(bench, str(local))
    src_target = (bench.get("board") or {}).get("target", "board")
    when = ((bench.get("board") or {}).get("fetched_utc") or "")[:10]
    md = fill_board_rung(build_dir, bench, f"{src_target}, board/bench.json {when}".strip())
    log(f"ladder updated: {md}")
    return bench
