"""Compile stage, by contract: exact compiler command lines, targets and fingerprints, parsing
of real compiler logs (tests/fixtures/compile/, sources at the top of each file), the manifest
from the xmodel as compile/xmodel.py reads it without xir (real serial_v2 protobuf files,
written by tests/fake_vart/xmodel_pb.py; tests/test_xmodel_reader.py covers the reader), and
the stage end to end with a stand-in compiler executable that writes such an xmodel.

Nothing here runs the real Vitis AI compiler: that needs the image (tests marked `docker`
in test_docker_runner.py)."""
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from compile import compile as C
from compile import logparse, manifest as M, targets, xmodel
from toolchain.config import load_config
from toolchain.errors import ConfigError, UserError
from vart_emulation import FAKE_VART_DIR, write_emulated_xmodel

FIX = Path(__file__).parent / "fixtures" / "compile"
LETTERS = list("ABCDEFGHIKLMNOPQRSTUVWXY") + ["nothing"]
FP_3_5 = "0x101000056010407"


def write_bundle(folder: Path, model_file: str, size: int = 28):
    """A model bundle's manifest as train/freeze/quantize write it (labels, preprocessing,
    threshold): what the compile stage copies into the deploy manifest."""
    from dpu_app.contract import Preprocess, make_manifest
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("\n".join(LETTERS) + "\n")
    man = make_manifest(model_file=model_file, sha256="0" * 64, labels=LETTERS,
                        preprocess=Preprocess(size, size), threshold=0.42,
                        how="calibrated in a test", mirror=True)
    (folder / "manifest.json").write_text(json.dumps(man))


def bundle(folder: Path):
    from dpu_app.contract import load_manifest
    return load_manifest(str(folder / "manifest.json"))


def cfg_with(tmp_path, *overrides):
    p = tmp_path / "cfg.yaml"
    p.write_text("{}\n")
    return load_config(p, list(overrides))


def fixture(name):
    return (FIX / name).read_text()


# --------------------------------------------------------------------------- commands

def test_tf2_command_is_vai_c_tensorflow2_with_input_shape_option():
    cmd = C.compiler_command("tf2", "vai_c_tensorflow2", Path("/b/quantize/quantized.h5"),
                             Path("/opt/vitis_ai/compiler/arch/DPUCZDX8G/ZCU104/arch.json"),
                             Path("/b/compile.partial-1"), "signnet", "1,28,28,1")
    assert cmd == ["vai_c_tensorflow2", "-m", "/b/quantize/quantized.h5",
                   "-a", "/opt/vitis_ai/compiler/arch/DPUCZDX8G/ZCU104/arch.json",
                   "-o", "/b/compile.partial-1", "-n", "signnet",
                   "--options", '{"input_shape": "1,28,28,1"}']


def test_tf1_command_is_vai_c_tensorflow_on_the_frozen_eval_graph():
    cmd = C.compiler_command("tf1", "vai_c_tensorflow",
                             Path("/b/quantize-tf1/results/quantize_eval_model.pb"),
                             Path("/arch/KV260/arch.json"), Path("/out"), "net", "")
    assert cmd == ["vai_c_tensorflow", "-f", "/b/quantize-tf1/results/quantize_eval_model.pb",
                   "-a", "/arch/KV260/arch.json", "-o", "/out", "-n", "net"]


@pytest.mark.parametrize("bad", ["1,28,28", "1,28,28,0", "a,b,c,d", "1 28 28 1"])
def test_bad_input_shape_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="compile.input_shape"):
        C.check_input_shape(bad)


# --------------------------------------------------------------------------- targets

@pytest.fixture
def arch_dir(tmp_path):
    root = tmp_path / "arch" / "DPUCZDX8G"
    for b in ("ZCU102", "ZCU104", "KV260"):
        (root / b).mkdir(parents=True)
        (root / b / "arch.json").write_text('{"target": "DPUCZDX8G_ISA1_B4096"}\n')
    return root


@pytest.mark.parametrize("board,folder", [("zcu104", "ZCU104"), ("zcu102", "ZCU102"),
                                          ("kv260", "KV260")])
def test_each_board_uses_its_arch_json_and_known_fingerprint(tmp_path, arch_dir, board, folder):
    cfg = cfg_with(tmp_path, f"compile.board={board}", f"compile.arch_dir={arch_dir}")
    t = targets.resolve_target(cfg.compile, tmp_path / "stage")
    assert t.arch_json == arch_dir / folder / "arch.json"
    assert t.dpu == "DPUCZDX8G_ISA1_B4096"
    assert t.fingerprint == FP_3_5
    assert not (tmp_path / "stage").exists()


def test_the_fingerprint_compile_expects_is_what_a_real_3_0_board_reports():
    """Compile checks the xmodel against the fingerprint a Vitis AI 3.0/3.5 board carries; a
    real `xdputil query` of a 3.0 image (tests/fixtures/board/) must agree, and a 2.5 image
    must not (its boards refuse 3.x xmodels)."""
    from dpu_app.dpu import parse_xdputil_query
    cap = json.loads((Path(__file__).parent / "fixtures" / "board" /
                      "xdputil_query_zcu102_vai3.0.json").read_text())
    board = parse_xdputil_query(cap["stdout"])
    assert int(targets.expected_fingerprint(board.archs[0], "3.5"), 16) == board.fingerprints[0]
    old = json.loads((Path(__file__).parent / "fixtures" / "board" /
                      "xdputil_query_kv260_vai2.5.json").read_text())
    b25 = parse_xdputil_query(old["stdout"])
    assert int(targets.expected_fingerprint(b25.archs[0], "3.5"), 16) not in b25.fingerprints
    assert targets.expected_fingerprint("DPUCZDX8G_ISA1_B4096", "1.4") is None


def test_missing_board_arch_json_names_what_is_there(tmp_path, arch_dir):
    (arch_dir / "KV260" / "arch.json").unlink()
    cfg = cfg_with(tmp_path, "compile.board=kv260", f"compile.arch_dir={arch_dir}")
    with pytest.raises(UserError) as e:
        targets.resolve_target(cfg.compile, tmp_path / "stage")
    msg = str(e.value)
    assert "KV260" in msg and "ZCU102, ZCU104" in msg and "compile.arch_dir" in msg
    assert "\n" not in msg


def test_custom_board_writes_a_fingerprint_only_arch_json(tmp_path):
    cfg = cfg_with(tmp_path, "compile.board=custom",
                   'compile.fingerprint="0x0101000056010407"')
    t = targets.resolve_target(cfg.compile, tmp_path / "stage")
    assert t.custom and t.arch_json == tmp_path / "stage" / "arch.json"
    assert json.loads(t.arch_json.read_text()) == {"fingerprint": FP_3_5}
    assert t.fingerprint == FP_3_5


@pytest.mark.parametrize("bad", ["0x", "101000056010407", "0xZZ01", "0x0",
                                 "0x10100005601040700", "fingerprint", "0x-1"])
def test_bad_custom_fingerprint_fails_loudly_naming_the_key(tmp_path, bad):
    cfg = cfg_with(tmp_path, "compile.board=custom", f'compile.fingerprint="{bad}"')
    with pytest.raises(ConfigError, match="compile.fingerprint") as e:
        targets.resolve_target(cfg.compile, tmp_path / "stage")
    assert "xdputil query" in str(e.value)
    assert not (tmp_path / "stage" / "arch.json").exists()


def test_custom_without_fingerprint_and_fingerprint_without_custom_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs compile.fingerprint"):
        targets.validate(cfg_with(tmp_path, "compile.board=custom").compile)
    with pytest.raises(ConfigError, match="only used with compile.board=custom"):
        targets.validate(cfg_with(tmp_path, f'compile.fingerprint="{FP_3_5}"').compile)


def test_target_arch_name_splits_off_the_fingerprint():
    assert targets.split_target_arch("DPUCZDX8G_ISA1_B4096_0101000056010407") == \
        ("DPUCZDX8G_ISA1_B4096", FP_3_5)
    assert targets.split_target_arch("DPUCZDX8G_ISA0_B4096_MAX_BG2") == \
        ("DPUCZDX8G_ISA0_B4096_MAX_BG2", None)


# --------------------------------------------------------------------------- real logs

def test_parse_real_vai_c_tensorflow2_log():
    log = logparse.parse_log(fixture("vai_c_tensorflow2_3.5_resnet50.log"))
    assert (log.total_subgraphs, log.dpu_subgraphs) == (3, 1)
    assert log.target_arch == "DPUCZDX8G_ISA1_B2304_0101000016010405"
    assert (log.target_name, log.fingerprint) == ("DPUCZDX8G_ISA1_B2304", "0x101000016010405")
    assert (log.graph_name, log.op_num) == ("resnet50", 416)
    assert log.xmodel.endswith("/deploy.xmodel")
    assert log.md5 == "351a68f866a715ba6ce529a3655a5965"
    assert log.errors == []


def test_parse_real_vai_c_tensorflow_log():
    log = logparse.parse_log(fixture("vai_c_tensorflow_3.5_resnet50.log"))
    assert (log.total_subgraphs, log.dpu_subgraphs) == (3, 1)
    assert log.fingerprint == "0x101000016010405"
    assert (log.graph_name, log.op_num) == ("quantized_4.3B_91542", 435)
    assert log.md5 == "635a7ac74171877a1471de5a2644e64c"


def test_parse_real_log_with_many_dpu_subgraphs_and_old_target_name():
    log = logparse.parse_log(fixture("vai_c_xir_20_dpu_subgraphs.log"))
    assert (log.total_subgraphs, log.dpu_subgraphs) == (83, 20)
    assert (log.target_name, log.fingerprint) == ("DPUCZDX8G_ISA0_B2304_MAX_BG2", None)
    assert log.compiler_log_dir == "/tmp/vitis-ai-user/log/xcompiler-20210305-033056-788"
    assert log.xmodel is None


def test_parse_real_glog_prefixed_lines():
    log = logparse.parse_log(fixture("glog_prefixed_b4096.log"))
    assert (log.total_subgraphs, log.dpu_subgraphs) == (3, 1)
    assert (log.target_name, log.fingerprint) == ("DPUCZDX8G_ISA1_B4096", None)
    assert log.op_num == 9


def test_parse_real_keras_softmax_split():
    log = logparse.parse_log(fixture("keras_softmax_2_dpu_subgraphs.log"))
    assert (log.total_subgraphs, log.dpu_subgraphs) == (5, 2)


def test_first_error_of_a_real_failed_compile_is_the_exception_line():
    text = fixture("vai_c_tensorflow_leakyrelu_failure.log")
    log = logparse.parse_log(text)
    assert log.dpu_subgraphs is None
    assert logparse.first_error(log, text) == (
        "AssertionError: [ERROR] The negative slope for LeakyRelu must be 0.1015625: "
        "actual: 0.30000001192092896")


# --------------------------------------------------------------------------- the xmodel

# fix points unlike xmodel_pb's defaults (6, 4): what the tests see came from the file
XM = {"in_fix": 7, "out_fix": 3}


def xmodel_file(path: Path, **kw) -> Path:
    return write_emulated_xmodel(path, **{**XM, **kw})


def test_read_dpu_io_from_the_xmodel_file_without_xir(tmp_path, monkeypatch):
    """The xmodel is read in pure Python on any PC: `import xir` would fail here."""
    monkeypatch.setitem(sys.modules, "xir", None)           # import xir -> ImportError
    xm = xmodel_file(tmp_path / "n.xmodel")
    io = xmodel.read_dpu_io(xm)
    assert io["input"] == {"name": "quant_image", "shape": [1, 28, 28, 1], "dtype": "xint8",
                           "fix_point": 7}
    assert io["output"] == {"name": "quant_logits", "shape": [1, 25], "dtype": "xint8",
                            "fix_point": 3}
    assert io["devices"] == ["USER", "DPU", "CPU"] and io["subgraphs"] == 3
    assert io["dpu_fingerprint"] == FP_3_5
    assert io["dpu_name"] == "DPUCZDX8G_ISA1_B4096_0101000056010407"


def test_read_dpu_io_of_another_xmodel_reads_its_values(tmp_path):
    xm = xmodel_file(tmp_path / "n.xmodel", in_fix=5, out_fix=2, classes=26,
                     in_dims=[1, 32, 32, 1], fingerprint=0x101000016010407)
    io = xmodel.read_dpu_io(xm)
    assert (io["input"]["shape"], io["input"]["fix_point"]) == ([1, 32, 32, 1], 5)
    assert (io["output"]["shape"], io["output"]["fix_point"]) == ([1, 26], 2)
    assert io["dpu_fingerprint"] == "0x101000016010407"


def test_two_dpu_subgraphs_in_the_xmodel_is_an_error(tmp_path):
    xm = xmodel_file(tmp_path / "n.xmodel", dpu_subgraphs=2)
    with pytest.raises(UserError, match="2 DPU subgraphs") as e:
        xmodel.read_dpu_io(xm)
    assert "USER, DPU, DPU, CPU" in str(e.value)


def test_tensor_without_fix_point_is_an_error(tmp_path):
    xm = xmodel_file(tmp_path / "n.xmodel", with_fix=False)
    with pytest.raises(UserError, match="quant_image' has no fix_point"):
        xmodel.read_dpu_io(xm)


def test_xmodel_without_fingerprint_reads_as_none(tmp_path):
    io = xmodel.read_dpu_io(xmodel_file(tmp_path / "n.xmodel", fingerprint=None))
    assert io["dpu_fingerprint"] is None and io["dpu_name"] is None


def damage(path: Path, how: str) -> Path:
    """A file at `path` that is not an xmodel: a good one cut short, or other bytes."""
    if how == "truncated":
        data = xmodel_file(path).read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:                                        # what the old stand-in compiler wrote
        path.write_bytes(b"xmodel " + path.stem.encode())
    return path


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_a_damaged_xmodel_is_one_user_error(tmp_path, monkeypatch, how):
    monkeypatch.delenv("FAKE_VART_ABORT", raising=False)     # EmulatedAbort, not os.abort()
    xm = damage(tmp_path / "n.xmodel", how)
    with pytest.raises(UserError) as e:
        xmodel.read_dpu_io(xm)
    assert "n.xmodel" in str(e.value) and "\n" not in str(e.value)


def test_manifest_fields_from_the_xmodel(tmp_path):
    xm = xmodel_file(tmp_path / "signnet.xmodel")
    write_bundle(tmp_path / "q", "quantized.h5")
    io = xmodel.read_dpu_io(xm)
    man = M.build_manifest(name="signnet", xmodel=xm, board="zcu104",
                           target_name="DPUCZDX8G_ISA1_B4096", fingerprint=FP_3_5,
                           vitis_ai_version="3.5", io=io, bundle=bundle(tmp_path / "q"))
    assert man == {
        "schema": 1, "name": "signnet",
        "xmodel": {"file": "signnet.xmodel",
                   "sha256": hashlib.sha256(xm.read_bytes()).hexdigest()},
        "board": "zcu104",
        "target": {"name": "DPUCZDX8G_ISA1_B4096", "fingerprint": FP_3_5},
        "vitis_ai_version": "3.5",
        "input": {"name": "quant_image", "shape": [1, 28, 28, 1], "dtype": "xint8",
                  "fix_point": 7},
        "output": {"name": "quant_logits", "shape": [1, 25], "dtype": "xint8", "fix_point": 3},
        "labels": LETTERS, "labels_file": "labels.txt",
        "preprocess": {"width": 28, "height": 28, "color": "gray", "scale": 1 / 255,
                       "resize": "area", "layout": "NHWC", "hand_margin": 1.2},
        "recognition": {"threshold": 0.42, "no_hand_label": "nothing", "mirror": True,
                        "how": "calibrated in a test"},
    }


def test_manifest_refuses_labels_that_do_not_match_the_output(tmp_path):
    xm = xmodel_file(tmp_path / "n.xmodel", classes=26)
    write_bundle(tmp_path / "q", "quantized.h5")
    io = xmodel.read_dpu_io(xm)
    assert io["output"]["shape"] == [1, 26]
    with pytest.raises(UserError, match="26"):
        M.build_manifest(name="n", xmodel=xm, board="zcu104", target_name="t",
                         fingerprint=FP_3_5, vitis_ai_version="3.5", io=io,
                         bundle=bundle(tmp_path / "q"))


# --------------------------------------------------------------------------- the stage

FAKE_COMPILER = r'''#!{python}
# Stand-in for vai_c_tensorflow2 / vai_c_tensorflow: records argv, prints a log, writes
# <out>/<name>.xmodel like the real tool (contract test only): a real serial_v2 protobuf
# xmodel made by tests/fake_vart/xmodel_pb.py (loaded by path) with the properties in
# FAKE_VAI_XMODEL (json: write_emulated_xmodel's keywords), or, with FAKE_VAI_DAMAGE, a damaged
# one: "truncated" (cut in half), "empty", "garbage" (not protobuf).
import importlib.util, json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_VAI_ARGV"], "w") as f:
    json.dump(sys.argv, f)
out, name = args[args.index("-o") + 1], args[args.index("-n") + 1]
with open(os.environ["FAKE_VAI_LOG"]) as f:
    sys.stdout.write(f.read().replace("@OUT@", out).replace("@NAME@", name))
rc = int(os.environ.get("FAKE_VAI_RC", "0"))
if rc == 0 and os.environ.get("FAKE_VAI_WRITE", "1") == "1":
    spec = importlib.util.spec_from_file_location("xmodel_pb", os.environ["FAKE_VAI_XMODEL_PB"])
    pb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pb)
    data = pb.emulated_graph(name=name,
                             **json.loads(os.environ["FAKE_VAI_XMODEL"])).SerializeToString()
    how = os.environ.get("FAKE_VAI_DAMAGE", "")
    if how:
        data = {"truncated": data[:len(data) // 2], "empty": b"",
                "garbage": b"xmodel " + name.encode()}[how]
    with open(os.path.join(out, name + ".xmodel"), "wb") as f:
        f.write(data)
    for extra in ("meta.json", "md5sum.txt"):
        with open(os.path.join(out, extra), "w") as f:
            f.write("{}\n")
sys.exit(rc)
'''


def real_log_for(target_arch="DPUCZDX8G_ISA1_B4096_0101000056010407", dpu=1, total=3):
    """The real 3.5 vai_c_tensorflow2 log, with its target line swapped to the board under
    test, its subgraph counts set, and its paths pointing at the output dir."""
    text = fixture("vai_c_tensorflow2_3.5_resnet50.log")
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#")) + "\n"
    text = text.replace("DPUCZDX8G_ISA1_B2304_0101000016010405", target_arch)
    text = text.replace("Total device subgraph number 3, DPU subgraph number 1",
                        f"Total device subgraph number {total}, DPU subgraph number {dpu}")
    saved = re.search(r'The compiled xmodel is saved to "([^"]+)"', text).group(1)
    return text.replace(saved, "@OUT@/@NAME@.xmodel")


@pytest.fixture
def vai(tmp_path, monkeypatch, arch_dir):
    """A build dir with quantize + train outputs, the stand-in compilers on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("vai_c_tensorflow2", "vai_c_tensorflow"):
        p = bindir / tool
        p.write_text(FAKE_COMPILER.replace("{python}", sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("FAKE_VAI_ARGV", str(tmp_path / "argv.json"))
    log = tmp_path / "log.txt"
    log.write_text(real_log_for())
    monkeypatch.setenv("FAKE_VAI_LOG", str(log))
    monkeypatch.setenv("FAKE_VAI_XMODEL_PB", str(FAKE_VART_DIR / "xmodel_pb.py"))
    monkeypatch.delenv("FAKE_VAI_DAMAGE", raising=False)
    monkeypatch.delenv("FAKE_VART_ABORT", raising=False)     # EmulatedAbort, not os.abort()
    build = tmp_path / "build"
    (build / "quantize").mkdir(parents=True)
    (build / "quantize-tf1" / "results").mkdir(parents=True)
    (build / "quantize" / "quantized.h5").write_bytes(b"h5")
    (build / "quantize-tf1" / "results" / "quantize_eval_model.pb").write_bytes(b"pb")
    (build / "quantize" / "metrics.json").write_text(json.dumps(
        {"quantizer": "vai_q_tensorflow2 (Vitis AI image)"}))
    write_bundle(build / "quantize", "quantized.h5")
    write_bundle(build / "freeze", "inference.h5")

    class V:
        pass
    v = V()
    v.build, v.log, v.bindir, v.arch_dir, v.tmp = build, log, bindir, arch_dir, tmp_path
    v.cfg = lambda *o: cfg_with(tmp_path, f"compile.arch_dir={arch_dir}", *o)
    v.argv = lambda: json.loads((tmp_path / "argv.json").read_text())

    def compiles(damage="", **kw):
        """What the next compile writes: an xmodel with these write_emulated_xmodel keywords
        (on top of XM), or a damaged one."""
        xm = {**XM, **kw}
        if not xm.pop("with_fix", True):
            xm["in_fix"] = xm["out_fix"] = None
        if "fingerprint" not in xm:
            xm["fingerprint"] = int(FP_3_5, 16)
        monkeypatch.setenv("FAKE_VAI_XMODEL", json.dumps(xm))
        monkeypatch.setenv("FAKE_VAI_DAMAGE", damage)
    v.compiles = compiles
    compiles()
    return v


def leftovers(build):
    return sorted(p.name for p in build.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_stage_writes_the_deploy_folder(vai, capsys):
    res = C.compile_stage(vai.cfg(), vai.build)
    out = vai.build / "compile"
    assert sorted(p.name for p in out.iterdir()) == [
        "compile.log", "labels.txt", "manifest.json", "md5sum.txt", "meta.json",
        "provenance.json", "signnet.xmodel"]
    argv = vai.argv()
    assert argv[0] == str(vai.bindir / "vai_c_tensorflow2")
    assert argv[1:] == ["-m", str((vai.build / "quantize" / "quantized.h5").resolve()),
                        "-a", str(vai.arch_dir / "ZCU104" / "arch.json"),
                        "-o", argv[6], "-n", "signnet",
                        "--options", '{"input_shape": "1,28,28,1"}']
    assert ".partial-" in argv[6]                       # compiled into the staging dir
    man = json.loads((out / "manifest.json").read_text())
    assert man["xmodel"] == {"file": "signnet.xmodel",
                             "sha256": M.sha256_file(out / "signnet.xmodel")}
    assert man["target"] == {"name": "DPUCZDX8G_ISA1_B4096", "fingerprint": FP_3_5}
    assert man["input"] == {"name": "quant_image", "shape": [1, 28, 28, 1], "dtype": "xint8",
                            "fix_point": 7}                   # read from the xmodel written
    assert man["output"] == {"name": "quant_logits", "shape": [1, 25], "dtype": "xint8",
                             "fix_point": 3}
    assert man["board"] == "zcu104" and man["vitis_ai_version"] == "3.5"
    assert man["labels"] == LETTERS and man["labels_file"] == "labels.txt"
    assert man["recognition"]["threshold"] == 0.42 and man["recognition"]["mirror"] is True
    assert man["compiler"]["dpu_subgraphs"] == 1 and man["compiler"]["total_subgraphs"] == 3
    assert man["compiler"]["quantized_by"] == "vai_q_tensorflow2 (Vitis AI image)"
    assert (out / "labels.txt").read_text().split() == LETTERS
    log = (out / "compile.log").read_text()
    assert log.startswith("$ ") and "DPU subgraph number 1" in log
    assert "DPU subgraph number 1" in capsys.readouterr().out   # streamed live too
    assert res["dpu_subgraphs"] == 1 and res["fingerprint"] == FP_3_5
    assert leftovers(vai.build) == [] and not (vai.build / C.FAILED_LOG).exists()


def test_tf1_flow_compiles_the_frozen_eval_graph(vai):
    C.compile_stage(vai.cfg("quantize.flow=tf1", "compile.board=kv260"), vai.build)
    argv = vai.argv()
    assert Path(argv[0]).name == "vai_c_tensorflow"
    assert argv[1:3] == ["-f", str((vai.build / "quantize-tf1" / "results" /
                                    "quantize_eval_model.pb").resolve())]
    assert argv[3:5] == ["-a", str(vai.arch_dir / "KV260" / "arch.json")]
    assert "--options" not in argv


def test_custom_board_compiles_against_its_own_arch_json(vai):
    C.compile_stage(vai.cfg("compile.board=custom", f'compile.fingerprint="{FP_3_5}"'),
                    vai.build)
    arch = vai.build / "compile" / "arch.json"
    assert json.loads(arch.read_text()) == {"fingerprint": FP_3_5}
    assert vai.argv()[4].endswith("/arch.json") and ".partial-" in vai.argv()[4]


def test_dpu_subgraph_count_other_than_expected_fails_and_keeps_only_the_log(vai):
    vai.log.write_text(real_log_for(dpu=2, total=5))      # as in Vitis-AI #1073
    vai.compiles(dpu_subgraphs=2)
    with pytest.raises(UserError) as e:
        C.compile_stage(vai.cfg(), vai.build)
    msg = str(e.value)
    assert "2 DPU subgraph(s)" in msg and "compile.expect_dpu_subgraphs=1" in msg
    assert "\n" not in msg
    assert not (vai.build / "compile").exists() and leftovers(vai.build) == []
    assert "DPU subgraph number 2" in (vai.build / C.FAILED_LOG).read_text()
    # the same count passes the log check when it is what was asked for; the xmodel itself,
    # two DPU subgraphs, is then refused by its reader (the app runs one runner)
    with pytest.raises(UserError) as e:
        C.compile_stage(vai.cfg("compile.expect_dpu_subgraphs=2"), vai.build)
    msg = str(e.value)
    assert msg.startswith("signnet.xmodel has 2 DPU subgraphs (devices: USER, DPU, DPU, CPU)")
    assert "expect_dpu_subgraphs" not in msg and "\n" not in msg
    assert not (vai.build / "compile").exists() and leftovers(vai.build) == []


def test_compiler_failure_is_one_line_with_its_error(vai, monkeypatch):
    vai.log.write_text(fixture("vai_c_tensorflow_leakyrelu_failure.log"))
    monkeypatch.setenv("FAKE_VAI_RC", "1")
    with pytest.raises(UserError) as e:
        C.compile_stage(vai.cfg(), vai.build)
    msg = str(e.value)
    assert msg.startswith("vai_c_tensorflow2 failed (exit 1): AssertionError: [ERROR] The "
                          "negative slope for LeakyRelu must be 0.1015625")
    assert str(vai.build / C.FAILED_LOG) in msg and "\n" not in msg
    assert not (vai.build / "compile").exists() and leftovers(vai.build) == []


def test_a_failed_compile_keeps_the_previous_good_output(vai):
    C.compile_stage(vai.cfg(), vai.build)
    before = (vai.build / "compile" / "manifest.json").read_text()
    vai.log.write_text(real_log_for(dpu=2, total=5))
    vai.compiles(dpu_subgraphs=2)
    with pytest.raises(UserError):
        C.compile_stage(vai.cfg(), vai.build)
    assert (vai.build / "compile" / "manifest.json").read_text() == before


@pytest.mark.parametrize("log_target", ["DPUCZDX8G_ISA1_B4096_0101000016010407",
                                        "DPUCZDX8G_ISA1_B4096"],
                         ids=["in-log-and-xmodel", "xmodel-only"])
def test_fingerprint_of_another_release_fails_loudly_unless_switched_off(vai, log_target):
    """A 2.5-era fingerprint, from the compiler log's target line or, when the log names none,
    from the xmodel's DPU subgraph."""
    vai.log.write_text(real_log_for(log_target))
    vai.compiles(fingerprint=0x101000016010407)
    with pytest.raises(UserError) as e:
        C.compile_stage(vai.cfg(), vai.build)
    msg = str(e.value)
    assert "0x101000016010407" in msg and FP_3_5 in msg and "CHECK fingerprint" in msg
    assert not (vai.build / "compile").exists()
    C.compile_stage(vai.cfg("compile.check_fingerprint=false"), vai.build)
    man = json.loads((vai.build / "compile" / "manifest.json").read_text())
    assert man["target"] == {"name": "DPUCZDX8G_ISA1_B4096", "fingerprint": "0x101000016010407"}


def test_the_xmodel_the_compiler_wrote_is_what_the_manifest_describes(vai):
    """Another model (32x32 input, other fix points): the manifest's tensors are the
    xmodel's; an output of 26 classes for 25 labels is refused."""
    vai.compiles(classes=26)
    with pytest.raises(UserError, match="quant_logits has shape \\[1, 26\\]") as e:
        C.compile_stage(vai.cfg(), vai.build)
    assert "\n" not in str(e.value) and not (vai.build / "compile").exists()
    write_bundle(vai.build / "quantize", "quantized.h5", size=32)
    vai.compiles(in_dims=[1, 32, 32, 1], in_fix=6, out_fix=2)
    C.compile_stage(vai.cfg(), vai.build)
    assert vai.argv()[-1] == '{"input_shape": "1,32,32,1"}'
    man = json.loads((vai.build / "compile" / "manifest.json").read_text())
    assert (man["input"]["shape"], man["input"]["fix_point"]) == ([1, 32, 32, 1], 6)
    assert (man["output"]["shape"], man["output"]["fix_point"]) == ([1, 25], 2)


def test_an_xmodel_without_fix_points_fails_and_keeps_the_log(vai):
    vai.compiles(with_fix=False)
    with pytest.raises(UserError, match="no fix_point attribute"):
        C.compile_stage(vai.cfg(), vai.build)
    assert not (vai.build / "compile").exists() and leftovers(vai.build) == []
    assert (vai.build / C.FAILED_LOG).is_file()


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_a_damaged_xmodel_from_the_compiler_is_one_user_error(vai, how):
    vai.compiles(damage=how)
    with pytest.raises(UserError) as e:
        C.compile_stage(vai.cfg(), vai.build)
    msg = str(e.value)
    assert "signnet.xmodel" in msg and "\n" not in msg
    assert not (vai.build / "compile").exists() and leftovers(vai.build) == []
    assert (vai.build / C.FAILED_LOG).is_file()


def test_missing_inputs_say_which_make_target_to_run(vai):
    (vai.build / "quantize" / "quantized.h5").unlink()
    with pytest.raises(UserError, match="make quantize"):
        C.compile_stage(vai.cfg(), vai.build)
    (vai.build / "quantize" / "quantized.h5").write_bytes(b"h5")
    (vai.build / "quantize" / "manifest.json").unlink()
    with pytest.raises(UserError, match="manifest .* not found.*make quantize"):
        C.compile_stage(vai.cfg(), vai.build)
    assert not (vai.build / "compile").exists() and leftovers(vai.build) == []


def test_on_the_host_compile_stops_in_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    build = tmp_path / "build"
    build.mkdir()
    cfg = cfg_with(tmp_path)
    with pytest.raises(UserError) as e:
        C.compile_stage(cfg, build)
    msg = str(e.value)
    assert msg.startswith("compile needs vai_c_tensorflow2 from the Vitis AI image")
    assert "runner=docker" in msg and "make shell" in msg and "\n" not in msg
    assert list(build.iterdir()) == []


def test_tool_dir_is_used_instead_of_path(vai, monkeypatch):
    monkeypatch.setenv("PATH", str(vai.tmp / "empty"))
    C.compile_stage(vai.cfg(f"compile.tool_dir={vai.bindir}"), vai.build)
    assert vai.argv()[0] == str(vai.bindir / "vai_c_tensorflow2")
    with pytest.raises(UserError, match="not in compile.tool_dir"):
        C.compile_stage(vai.cfg(f"compile.tool_dir={vai.tmp}"), vai.build)


def test_what_runs_in_the_image_parses_as_python_3_8():
    """Stages run on the image's Python (3.8 for Vitis AI 3.5) with runner=docker: the code
    they import has no 3.9+ syntax. The app runs on the board's Python 3.9."""
    import ast
    repo = Path(C.__file__).parent.parent
    for pkg, version in (("compile", (3, 8)), ("toolchain", (3, 8)), ("model", (3, 8)),
                         ("quantize", (3, 8)), ("dpu_app", (3, 8))):
        for path in (repo / pkg).glob("*.py"):
            ast.parse(path.read_text(), filename=str(path), feature_version=version)


def test_cli_compile_on_the_host_is_one_error_line(repo_root, tmp_path):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))
    r = subprocess.run([sys.executable, "-m", "toolchain", "compile", "--set", "runner=host",
                        "--build-dir", str(tmp_path / "b")], cwd=repo_root, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: compile needs "), r.stderr
    assert not (tmp_path / "b").exists()
