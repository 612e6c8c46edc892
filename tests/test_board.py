"""Board tooling (deploy/), tested by contract: NOT YET RUN ON A REAL BOARD.

- `xdputil query` parsing (dpu_app/dpu.py) runs on real board output
  (tests/fixtures/board/*.json; each file names its source URL): a Vitis AI 3.0 image
  (ZCU102, same DPU release as the ZCU104 3.0 image), a 2.5 image (KV260), and a failing query
  (Vitis-AI issue #1215).
- The whole deploy / board-run / board-bench flow runs against a fake `ssh`/`scp` put first on
  PATH (tests/fixtures/board/fake_ssh.py): it prints the real captures, records every argv
  and copies files into a local folder standing for the board. Nothing touches the network;
  the board address is from TEST-NET-1 (192.0.2.0/24, never routed).

With a real board: BOARD=root@<ip> .venv/bin/python -m pytest -m board tests/test_board.py
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import bundle as BU
from deploy import commands as B
from deploy import transport as T
from dpu_app.contract import sha256_file
from dpu_app.dpu import describe_fingerprint, parse_xdputil_query
from toolchain.cli import main as cli_main
from toolchain.config import load_config
from toolchain.errors import UserError
from vart_emulation import write_emulated_xmodel

FIX = Path(__file__).resolve().parent / "fixtures" / "board"
REPO = Path(__file__).resolve().parent.parent
TARGET = "root@192.0.2.10"
FP3 = 0x101000056010407
FP25 = 0x101000016010407
FP14 = 0x1000020F6014407
OPTS = ["-o", "ConnectTimeout=10", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new"]


def capture(name: str) -> dict:
    return json.loads((FIX / name).read_text())


# ----------------------------------------------------------------------------- parsing

def test_parse_real_vai30_query():
    cap = capture("xdputil_query_zcu102_vai3.0.json")
    assert cap["source"].startswith("https://github.com/")
    info = parse_xdputil_query(cap["stdout"])
    assert info.fingerprints == [FP3, FP3, FP3]          # the softmax CU (0x0) is skipped
    assert info.archs == ["DPUCZDX8G_ISA1_B4096"] * 3
    assert info.ip_version == "v4.1.0" and info.vai_version == "3.0.0"
    # a serial-console transcript (glog lines first, then JSON) parses the same
    info2 = parse_xdputil_query(cap["stderr"] + cap["stdout"] + "root@xilinx-zcu102-20222:~# ")
    assert info2.fingerprints == info.fingerprints


def test_parse_real_vai25_query():
    cap = capture("xdputil_query_kv260_vai2.5.json")
    info = parse_xdputil_query(cap["stdout"])
    assert info.fingerprints == [FP25] and info.vai_version == "2.5.0"
    assert info.ip_version == "v4.0.0"
    assert "2.5-era" in describe_fingerprint(FP25) and "3.0" in describe_fingerprint(FP3)


@pytest.mark.parametrize("text", ["", "Segmentation fault", '{"kernels": []}',
                                  '{"kernels": [{"DPU Arch": "", "fingerprint": "0x0"}]}'])
def test_parse_rejects_output_without_a_dpu(text):
    with pytest.raises(ValueError):
        parse_xdputil_query(text)


def test_fingerprints_compare_as_numbers():
    info = parse_xdputil_query('{"kernels": [{"DPU Arch": "DPUCZDX8G_ISA1_B4096", '
                                 '"fingerprint": "0x0101000056010407"}]}')
    B.check_fingerprint(info, FP3, TARGET, Path("x.xmodel"))   # leading zero: same value


# ----------------------------------------------------------------------------- command lines

def test_ssh_options_never_prompt_and_never_hang():
    """Whatever board.ssh_options says, ssh runs with BatchMode (no password prompt) and a
    connect timeout, and the user's own values are kept, not doubled."""
    cfg = load_config(None, ["board.ssh_options=[-o, Port=2222]"])
    opts = T.ssh_options(cfg)
    assert "BatchMode=yes" in opts and "ConnectTimeout=10" in opts and "Port=2222" in opts
    cfg2 = load_config(None, ["board.ssh_options=[-o, ConnectTimeout=3, -o, BatchMode=no]"])
    assert T.ssh_options(cfg2) == ["-o", "ConnectTimeout=3", "-o", "BatchMode=no"]


@pytest.mark.parametrize("good", ["root@192.168.1.50", "root@zcu104.local", "zcu104",
                                  "root@[fe80::1]", "petalinux@10.0.0.2"])
def test_good_targets(good):
    assert T.check_target(good) == good


@pytest.mark.parametrize("bad", ["", "root@", "-oProxyCommand=sh", "root@host; rm -rf /",
                                 "root@a b", "@host", "root@host:22"])
def test_bad_targets_are_one_clear_line(bad):
    with pytest.raises(UserError, match="BOARD=root@<board-ip>"):
        T.check_target(bad)


def test_viewer_url():
    assert B.viewer_url("root@192.168.1.50", 8080) == "http://192.168.1.50:8080/"
    assert B.viewer_url("root@[fe80::1]", 80) == "http://[fe80::1]:80/"


# ----------------------------------------------------------------------------- fake board

class FakeBoard:
    def __init__(self, tmp_path: Path, monkeypatch):
        self.root = tmp_path / "board-fs"
        self.root.mkdir()
        self.log = tmp_path / "ssh-calls.jsonl"
        self.log.touch()
        bindir = tmp_path / "bin"
        bindir.mkdir()
        body = (FIX / "fake_ssh.py").read_text()
        for name in ("ssh", "scp"):
            p = bindir / name
            p.write_text(f"#!{sys.executable}\n{body}")
            p.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_BOARD_ROOT", str(self.root))
        monkeypatch.setenv("FAKE_BOARD_LOG", str(self.log))
        self.use_capture("xdputil_query_zcu102_vai3.0.json")
        for k in ("FAKE_SSH_FAIL", "FAKE_SCP_NO_SFTP", "FAKE_BENCH", "FAKE_BENCH_EXIT"):
            monkeypatch.delenv(k, raising=False)
        self.monkeypatch = monkeypatch

    def use_capture(self, name: str):
        os.environ["FAKE_XDPUTIL"] = str(FIX / name)

    def set(self, **env):
        for k, v in env.items():
            self.monkeypatch.setenv(k, v)

    def calls(self) -> list[list[str]]:
        return [json.loads(ln) for ln in self.log.read_text().splitlines()]

    def path(self, remote: str) -> Path:
        return self.root / remote.lstrip("/")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_XDPUTIL", "")
    return FakeBoard(tmp_path, monkeypatch)


@pytest.fixture
def app_dir(tmp_path, monkeypatch):
    """A dpu_app/ package as the app engineer ships it (__main__.py stub + the real web.py)."""
    d = tmp_path / "dpu_app"
    d.mkdir()
    (d / "__main__.py").write_text("# the live app (stub for the deploy test)\n")
    shutil.copy2(REPO / "dpu_app" / "web.py", d / "web.py")
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "web.cpython-311.pyc").write_bytes(b"junk")
    monkeypatch.setattr(BU, "DPU_APP_DIR", d)
    return d


@pytest.fixture
def build(tmp_path):
    """<build>/compile/ as the compile stage leaves it (schema-1 manifest)."""
    bdir = tmp_path / "build"
    cdir = bdir / "compile"
    cdir.mkdir(parents=True)
    xm = write_emulated_xmodel(cdir / "signnet.xmodel", fingerprint=FP3)   # a real protobuf
    (cdir / "labels.txt").write_text("\n".join("ABCDEFGHIKLMNOPQRSTUVWXY") + "\nnothing\n")
    manifest = {"schema": 1, "name": "signnet",
                "xmodel": {"file": "signnet.xmodel", "sha256": sha256_file(xm)},
                "board": "zcu104", "target": {"name": "DPUCZDX8G_ISA1_B4096",
                                              "fingerprint": "0x101000056010407"},
                "vitis_ai_version": "3.5", "labels_file": "labels.txt"}
    (cdir / "manifest.json").write_text(json.dumps(manifest))
    return bdir


@pytest.fixture
def cfg(tmp_path):
    csv = tmp_path / "test.csv.gz"
    with gzip.open(csv, "wt") as f:
        f.write("label,pixel1\n3,7\n")          # deploy only copies it (decompressed)
    return load_config(None, [f"data.test_csv={csv}"])


def with_photos(build: Path) -> Path:
    """The trainer's exported validation photos, as make train leaves them."""
    d = build / "train" / "photos_val" / "A"
    d.mkdir(parents=True)
    (d / "x.jpg").write_bytes(b"\xff\xd8 not decoded here")
    return build


def quiet(*a, **k):
    pass


# ----------------------------------------------------------------------------- deploy

def test_deploy_checks_fingerprint_then_copies_the_bundle(fake, app_dir, build, cfg):
    lines = []
    record = B.deploy(cfg, build, TARGET, log=lines.append)
    calls = fake.calls()
    bundle = build / "board" / "bundle"
    assert calls == [
        ["ssh", *OPTS, TARGET, B.XDPUTIL_QUERY],
        ["ssh", *OPTS, TARGET, "mkdir -p /home/root/signlang"],
        ["scp", "-r", *OPTS, str(bundle / "dpu_app"), str(bundle / "model"),
         str(bundle / "data"), str(bundle / "deploy.json"), f"{TARGET}:/home/root/signlang/"],
    ]
    rd = fake.path("/home/root/signlang")
    assert (rd / "dpu_app" / "__main__.py").is_file() and (rd / "dpu_app" / "web.py").is_file()
    assert not (rd / "dpu_app" / "__pycache__").exists()
    for name in ("signnet.xmodel", "manifest.json", "labels.txt"):
        assert (rd / "model" / name).read_bytes() == (build / "compile" / name).read_bytes()
    assert (rd / "data" / "sign_mnist_test.csv").read_text() == "label,pixel1\n3,7\n"
    info = json.loads((rd / "deploy.json").read_text())
    assert info["fingerprint"] == hex(FP3) and info["xmodel"] == "signnet.xmodel"
    assert record["target"] == TARGET and record["board_fingerprints"] == [hex(FP3)] * 3
    assert B.read_record(build)["remote_dir"] == "/home/root/signlang"
    assert any("matches" in ln for ln in lines) and any("deployed" in ln for ln in lines)


def test_deploy_refuses_a_fingerprint_mismatch_and_copies_nothing(fake, app_dir, build, cfg):
    fake.use_capture("xdputil_query_kv260_vai2.5.json")
    with pytest.raises(UserError) as e:
        B.deploy(cfg, build, TARGET, log=quiet)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("fingerprint mismatch, nothing copied")
    assert "0x101000016010407" in msg and "0x101000056010407" in msg       # both fingerprints
    assert "2.5-era" in msg and "3.0 board images" in msg                  # what each means
    assert "compile.board=custom compile.fingerprint=0x101000016010407" in msg   # fix 1
    assert "xilinx-zcu104-dpu-v2022.2-v3.0.0.img.gz" in msg                # fix 2
    assert [c[0] for c in fake.calls()] == ["ssh"]                          # only the query
    assert list(fake.root.iterdir()) == []
    assert B.read_record(build) is None


def test_deploy_reads_the_fingerprint_from_the_xmodel_itself(fake, app_dir, build, cfg):
    """The fingerprint compared with the board's is the one in the xmodel file (read on this
    PC, no xir): an xmodel compiled for a 1.4-era DPU is refused in one line naming both
    DPUs, before anything is copied."""
    man = json.loads((build / "compile" / "manifest.json").read_text())
    xm = write_emulated_xmodel(build / "compile" / "signnet.xmodel", fingerprint=FP14)
    man["xmodel"]["sha256"] = sha256_file(xm)
    man["target"]["fingerprint"] = hex(FP14)
    (build / "compile" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UserError) as e:
        B.deploy(cfg, build, TARGET, log=quiet)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("fingerprint mismatch, nothing copied")
    assert f"runs DPU DPUCZDX8G_ISA1_B4096 fingerprint {hex(FP3)}" in msg
    assert f"compiled for DPUCZDX8G_ISA1_B4096_{FP14:016x} fingerprint {hex(FP14)}" in msg
    assert [c[0] for c in fake.calls()] == ["ssh"]
    assert list(fake.root.iterdir()) == [] and not (build / "board" / "bundle").exists()


def test_deploy_refuses_an_xmodel_its_manifest_does_not_describe(fake, app_dir, build, cfg):
    man = json.loads((build / "compile" / "manifest.json").read_text())
    xm = write_emulated_xmodel(build / "compile" / "signnet.xmodel", fingerprint=FP25)
    man["xmodel"]["sha256"] = sha256_file(xm)                   # the manifest still says 3.0
    (build / "compile" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UserError, match=r"records DPU fingerprint 0x101000016010407 but .* "
                                        r"says 0x101000056010407.*make compile"):
        B.deploy(cfg, build, TARGET, log=quiet)
    assert fake.calls() == []                                   # before any ssh


@pytest.mark.parametrize("how", ["cut", "garbage", "two-dpu"])
def test_a_damaged_or_split_xmodel_is_refused_before_any_ssh(fake, app_dir, build, cfg, how):
    xm = build / "compile" / "signnet.xmodel"
    if how == "cut":
        xm.write_bytes(xm.read_bytes()[:200])
    elif how == "garbage":
        xm.write_bytes(b"XMODEL" + bytes(range(256)) * 8)
    else:
        write_emulated_xmodel(xm, dpu_subgraphs=2)
    man = json.loads((build / "compile" / "manifest.json").read_text())
    man["xmodel"]["sha256"] = sha256_file(xm)
    (build / "compile" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UserError) as e:
        B.deploy(cfg, build, TARGET, log=quiet)
    assert "signnet.xmodel" in str(e.value) and "\n" not in str(e.value)
    assert fake.calls() == []


def test_unreachable_board_is_one_clear_line_from_the_cli(fake, app_dir, build, cfg, capsys,
                                                          tmp_path):
    fake.set(FAKE_SSH_FAIL="timeout")
    rc = cli_main(["deploy", "--board", TARGET, "--build-dir", str(build),
                   "--set", f"data.test_csv={cfg.data.test_csv}"])
    out, err = capsys.readouterr()
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: board {TARGET} is unreachable over ssh "
                               f"(Connection timed out)")
    assert "ifconfig" in lines[0] and "BOARD=root@" in lines[0]
    assert list(fake.root.iterdir()) == []


@pytest.mark.parametrize("mode,needle", [
    ("refused", "unreachable over ssh (Connection refused)"),
    ("auth", "refuses root's default login over ssh"),
    ("auth", "on the board's serial console set a password (`passwd`) and run `ssh-copy-id "
             "root@192.0.2.10`"),
    ("hostkey", "StrictHostKeyChecking=accept-new"),
    ("changed", "ssh-keygen -R 192.0.2.10"),
])
def test_ssh_faults_name_the_fix(fake, app_dir, build, cfg, mode, needle):
    fake.set(FAKE_SSH_FAIL=mode)
    with pytest.raises(UserError) as e:
        B.deploy(cfg, build, TARGET, log=quiet)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_failing_xdputil_is_one_clear_line(fake, app_dir, build, cfg):
    fake.use_capture("xdputil_query_aborted_vai3.0.json")
    with pytest.raises(UserError) as e:
        B.deploy(cfg, build, TARGET, log=quiet)
    msg = str(e.value)
    assert "`xdputil query` failed on root@192.0.2.10 (exit 134" in msg
    assert "Aborted" in msg and "show_dpu" in msg and "\n" not in msg


def test_board_without_xdputil(fake, app_dir, build, cfg, tmp_path):
    cap = tmp_path / "noxdputil.json"
    cap.write_text(json.dumps({"stdout": "", "exit_code": 1,
                               "stderr": "/usr/bin/python3: No module named xdputil\n"}))
    os.environ["FAKE_XDPUTIL"] = str(cap)
    with pytest.raises(UserError, match="no xdputil .* flash xilinx-zcu104-dpu-v2022.2-v3.0.0"):
        B.deploy(cfg, build, TARGET, log=quiet)


def test_nothing_compiled_fails_before_any_ssh(fake, app_dir, tmp_path, cfg):
    with pytest.raises(UserError, match=r"manifest.json does not exist.*make compile"):
        B.deploy(cfg, tmp_path / "empty-build", TARGET, log=quiet)
    assert fake.calls() == []


def test_changed_xmodel_is_refused(fake, app_dir, build, cfg):
    (build / "compile" / "signnet.xmodel").write_bytes(b"other")
    with pytest.raises(UserError, match="does not match the sha256"):
        B.deploy(cfg, build, TARGET, log=quiet)
    assert fake.calls() == []


def test_no_board_given(fake, app_dir, build, cfg):
    with pytest.raises(UserError, match=r"no board given: pass BOARD=root@<board-ip>"):
        B.deploy(cfg, build, None, log=quiet)


@pytest.mark.parametrize("how", ["1", "closed"])
def test_scp_falls_back_to_the_classic_protocol(fake, app_dir, build, cfg, how):
    """The board image has no sftp-server: newer scp fails (named, or just "Connection
    closed") and is retried once with -O."""
    fake.set(FAKE_SCP_NO_SFTP=how)
    record = B.deploy(cfg, build, TARGET, log=quiet)
    scps = [c for c in fake.calls() if c[0] == "scp"]
    assert len(scps) == 2 and "-O" not in scps[0] and scps[1][:3] == ["scp", "-r", "-O"]
    assert record["scp"] == scps[1]
    assert fake.path("/home/root/signlang/model/signnet.xmodel").is_file()


def test_deploy_bundles_the_real_dpu_app_folder(fake, build, cfg):
    B.deploy(cfg, build, TARGET, log=quiet)
    for f in (REPO / "dpu_app").glob("*.py"):
        assert fake.path(f"/home/root/signlang/dpu_app/{f.name}").read_bytes() == f.read_bytes()


# ----------------------------------------------------------------------------- board-run

def test_board_run_starts_the_app_and_prints_the_url(fake, app_dir, build, cfg, capfd):
    B.deploy(cfg, build, TARGET, log=quiet)
    lines = []
    assert B.board_run(cfg, build, None, log=lines.append) == 0     # target from the deploy
    assert lines[0].startswith("live viewer: open http://192.0.2.10:8080/ ")
    run = fake.calls()[-1]
    assert run[:len(OPTS) + 3] == ["ssh", *OPTS, "-tt", TARGET]     # Ctrl-C reaches the board
    assert "viewer at http://0.0.0.0:8080/" in capfd.readouterr().out  # the fake board ran it


def test_board_run_before_deploy(fake, app_dir, build, cfg):
    with pytest.raises(UserError, match=r"not deployed on root@192.0.2.10:/home/root/signlang: "
                                        r"run make deploy BOARD=root@192.0.2.10 first"):
        B.board_run(cfg, build, TARGET, log=quiet)


# ----------------------------------------------------------------------------- board-bench
def write_ladder(build: Path):
    from toolchain import ladder as L
    sets = {"sign_mnist_test": 7172, "photos_val": 273, "no_hand_val": 889}
    sc = {"sign_mnist_test": {"accuracy": 0.955}, "photos_val": {"accuracy": 0.81},
          "no_hand_val": {"no_hand": 0.97}}
    i8 = {"sign_mnist_test": {"accuracy": 0.9521}, "photos_val": {"accuracy": 0.8022},
          "no_hand_val": {"no_hand": 0.968}}
    L.write(build, L.build([L.rung("float", "train/model.h5", "host", sc),
                            L.rung("frozen", "freeze/frozen.pb", "host", sc),
                            L.rung("int8", "quantize/quantized.h5", "host", i8)],
                           sets, {"sign_mnist_test": 0.3, "photos_val": 1.0}, 0.5))


BENCH = {"accuracy": 0.9512, "fps": 3456.7, "runs": [{"threads": 1}, {"threads": 2}],
         "sets": {"sign_mnist_test": {"images": 7172, "accuracy": 0.9512},
                  "photos_val": {"images": 273, "top1": 0.7985},
                  "no_hand_val": {"images": 889, "no_hand": 0.9651}}}


def test_board_bench_fetches_json_and_fills_the_board_rung(fake, app_dir, build, cfg):
    B.deploy(cfg, with_photos(build), TARGET, log=quiet)
    assert fake.path("/home/root/signlang/data/photos_val/A/x.jpg").is_file()
    write_ladder(build)
    fake.set(FAKE_BENCH=json.dumps(BENCH))
    bench = B.board_bench(cfg, build, TARGET, threads=2, log=quiet)
    assert fake.path("/home/root/signlang/results/bench.json").is_file()   # written there
    run = next(" ".join(c) for c in fake.calls() if "--bench" in " ".join(c))
    assert "--eval-photos data/photos_val" in run
    saved = json.loads((build / "board" / "bench.json").read_text())
    assert saved["accuracy"] == 0.9512 and saved["board"]["target"] == TARGET
    assert bench["fps"] == 3456.7
    ladder = json.loads((build / "ladder" / "ladder.json").read_text())
    assert [r["rung"] for r in ladder["rungs"]] == ["float", "frozen", "int8", "board"]
    rung = ladder["rungs"][-1]
    assert rung["accuracy"] == {"sign_mnist_test": 0.9512, "photos_val": 0.7985,
                                "no_hand_val": 0.9651}
    assert TARGET in rung["where"] and "3,457 images/s with 2 threads" in rung["where"]
    md = (build / "ladder" / "ladder.md").read_text()
    board_line = next(ln for ln in md.splitlines() if ln.startswith("| board"))
    assert "95.12 % | −0.09 pt" in board_line and "79.85 % | −0.37 pt" in board_line
    assert not list((build / "ladder").glob(".*.tmp"))


def test_board_bench_without_a_ladder_keeps_the_result(fake, app_dir, build, cfg):
    B.deploy(cfg, build, TARGET, log=quiet)
    fake.set(FAKE_BENCH=json.dumps(BENCH))
    with pytest.raises(UserError, match=r"no accuracy ladder at .*ladder.json yet .*kept in"):
        B.board_bench(cfg, build, TARGET, log=quiet)
    # no validation photos (trained with nothing held out): the board is not asked for them
    run = next(" ".join(c) for c in fake.calls() if "--bench" in " ".join(c))
    assert "--eval-photos" not in run
    assert json.loads((build / "board" / "bench.json").read_text())["accuracy"] == 0.9512
    write_ladder(build)                                # later: refill without re-running
    rc = cli_main(["board-bench", "--no-run", "--build-dir", str(build)])
    assert rc == 0
    ladder = json.loads((build / "ladder" / "ladder.json").read_text())
    assert ladder["rungs"][-1]["accuracy"]["sign_mnist_test"] == 0.9512


@pytest.mark.parametrize("bench,needle", [
    ('{"acc": 0.9}', "no numeric 'accuracy'"),
    ('{"accuracy": 91.2, "fps": 10, "sets": {}}', "not a fraction"),
    ('{"accuracy": 0.9, "fps": 0, "sets": {}}', "not positive"),
    ('{"accuracy": 0.9, "fps": 10}', "no 'sets' object"),
    ("not json", "is not valid JSON"),
])
def test_board_bench_checks_the_apps_json(fake, app_dir, build, cfg, bench, needle):
    B.deploy(cfg, build, TARGET, log=quiet)
    fake.set(FAKE_BENCH=bench)
    with pytest.raises(UserError, match=needle):
        B.board_bench(cfg, build, TARGET, log=quiet)
    assert not (build / "board" / "bench.json").exists()


@pytest.mark.parametrize("status,needle", [
    ("2", r"the app on root@192.0.2.10 stopped with exit code 2 while running the benchmark"),
    # a fingerprint mismatch makes VART abort the process (SIGABRT): exit status 134
    ("134", r"was aborted while running the benchmark \(exit status 134, SIGABRT\): VART "
            r"aborts .*CHECK fingerprint fail"),
])
def test_board_bench_app_failure_is_explained(fake, app_dir, build, cfg, status, needle):
    B.deploy(cfg, build, TARGET, log=quiet)
    fake.set(FAKE_BENCH_EXIT=status)
    with pytest.raises(UserError, match=needle):
        B.board_bench(cfg, build, TARGET, log=quiet)


def test_board_eval_photos_copies_the_folder_and_keeps_the_result(fake, app_dir, build, cfg,
                                                                  tmp_path):
    B.deploy(cfg, build, TARGET, log=quiet)
    mine = tmp_path / "my_hands" / "B"
    mine.mkdir(parents=True)
    (mine / "1.jpg").write_bytes(b"\xff\xd8")
    fake.set(FAKE_BENCH=json.dumps({"sets": {"photos_val": {"images": 1, "top1": 1.0}}}))
    res = B.board_eval_photos(cfg, build, str(tmp_path / "my_hands"), TARGET, log=quiet)
    assert fake.path("/home/root/signlang/data/eval-my_hands/B/1.jpg").is_file()
    assert res["sets"]["photos_val"]["top1"] == 1.0
    assert json.loads((build / "board" / "eval-my_hands.json").read_text())["board"]["target"] \
        == TARGET


def test_board_eval_photos_checks_the_folder_before_any_ssh(fake, app_dir, build, cfg,
                                                            tmp_path):
    (tmp_path / "bad" / "J").mkdir(parents=True)
    with pytest.raises(UserError, match="'J' is not a letter"):
        B.board_eval_photos(cfg, build, str(tmp_path / "bad"), TARGET, log=quiet)
    assert fake.calls() == []


def test_cli_has_the_board_commands():
    out = subprocess.run([sys.executable, "-m", "toolchain", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60).stdout
    for cmd in ("deploy", "board-run", "board-bench", "board-eval-photos"):
        assert cmd in out


# ----------------------------------------------------------------------------- real board

@pytest.mark.board
def test_real_board_reports_a_dpu_fingerprint():
    """Only with a board: BOARD=root@<ip> pytest -m board tests/test_board.py"""
    target = os.environ.get("BOARD")
    if not target:
        pytest.skip("set BOARD=root@<board-ip> to run against a real board")
    info = B.query_board(load_config(None), target)
    assert info.fingerprints and all(f > 0 for f in info.fingerprints)
    print(f"\n{target}: {info.archs[0]} x{len(info.fingerprints)}, fingerprint "
          f"{hex(info.fingerprints[0])} ({describe_fingerprint(info.fingerprints[0])})")
