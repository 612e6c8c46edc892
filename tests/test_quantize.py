"""Freeze and host quantization, for real, on a small trained model."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import QUICK_TRAIN


def toolchain(repo_root, cmd, build, *extra):
    """A stage on the host, whatever engine this machine has: the verdicts below must not
    depend on where the stage runs (the runner's note would come first on stderr)."""
    return subprocess.run([sys.executable, "-m", "toolchain", cmd, "--build-dir", str(build),
                           *QUICK_TRAIN, "--set", "runner=host", *extra], cwd=repo_root,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def frozen(small_build, repo_root):
    build, _ = small_build
    r = toolchain(repo_root, "freeze", build)
    assert r.returncode == 0, r.stdout + r.stderr
    return build, r


@pytest.fixture(scope="module")
def quantized(frozen, repo_root):
    build, _ = frozen
    r = toolchain(repo_root, "quantize", build, "--set", "quantize.calib_size=300",
                  "--set", "quantize.max_drop_pt=100", "--set", "quantize.max_photo_drop_pt=100")
    assert r.returncode == 0, r.stdout + r.stderr
    return build, r


def copy_of_frozen_build(frozen, tmp_path):
    """train/ and freeze/ of the shared build, in a dir this test may change."""
    import shutil
    build, _ = frozen
    b2 = tmp_path / "b"
    shutil.copytree(build / "train", b2 / "train")
    shutil.copytree(build / "freeze", b2 / "freeze")
    return b2


def test_freeze_outputs_match_the_float_model(frozen):
    build, r = frozen
    m = json.loads((build / "freeze" / "metrics.json").read_text())
    assert m["sets"]["sign_mnist_test"] == 1200 and m["sets"]["photos_val"] > 0
    assert m["images"] == sum(m["sets"].values())
    assert m["max_abs_diff_h5"] < 1e-4 and m["max_abs_diff_pb"] < 1e-3
    assert m["dropout_layers_removed"] == 2
    fl, fr = m["scores"]["float"], m["scores"]["frozen"]
    for name in m["sets"]:
        for key in ("accuracy", "no_hand"):
            if key in fl[name]:
                assert fr[name][key] == pytest.approx(fl[name][key], abs=1.01 / m["sets"][name])
    io = json.loads((build / "freeze" / "io.json").read_text())
    assert io["input"] == "image" and io["output"] == "logits"
    assert io["input_shape"] == [None, 28, 28, 1] and io["output_shape"] == [None, 25]
    man = json.loads((build / "freeze" / "manifest.json").read_text())
    assert man["model"]["file"] == "inference.h5"
    assert man["recognition"] == json.loads((build / "train" / "manifest.json").read_text()
                                            )["recognition"]
    assert "max |diff|" in r.stdout


def test_frozen_pb_loads_with_compat_v1_and_reproduces_float(frozen, repo_root):
    """A separate process that knows only the .pb, its node names and the Kaggle CSV."""
    build, _ = frozen
    code = f"""
import gzip, json, numpy as np, tensorflow as tf
io = json.load(open({str(build / 'freeze' / 'io.json')!r}))
gd = tf.compat.v1.GraphDef(); gd.ParseFromString(open({str(build / 'freeze' / 'frozen.pb')!r}, 'rb').read())
g = tf.Graph()
with g.as_default(): tf.compat.v1.import_graph_def(gd, name='')
rows = np.loadtxt(gzip.open({str(repo_root / 'data/sign_mnist/sign_mnist_test.csv.gz')!r}), delimiter=',', skiprows=1, max_rows=300)
x = (rows[:, 1:] / 255.0).reshape(-1, 28, 28, 1).astype('float32')
with tf.compat.v1.Session(graph=g) as s:
    y = s.run(io['output'] + ':0', {{io['input'] + ':0': x}})
m = tf.keras.models.load_model({str(build / 'train' / 'model.h5')!r}, compile=False)
print(float(np.abs(y - m.predict(x, verbose=0)).max()))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip().splitlines()[-1]) < 1e-3


def test_frozen_graph_has_nothing_tf115_cannot_read(frozen):
    import tensorflow as tf
    from quantize.freeze import TF115_ATTRS
    build, _ = frozen
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString((build / "freeze" / "frozen.pb").read_bytes())
    for node in gd.node:
        assert node.op in TF115_ATTRS, node.op
        assert set(node.attr) <= TF115_ATTRS[node.op], (node.name, set(node.attr))
        assert "exponential_avg_factor" not in node.attr


def test_tf115_check_strips_and_flags():
    import tensorflow as tf
    from quantize.freeze import tf115_problems
    gd = tf.compat.v1.GraphDef()
    n = gd.node.add(name="bn", op="FusedBatchNormV3")
    n.attr["exponential_avg_factor"].f = 1.0
    n.attr["epsilon"].f = 1e-3
    n.attr["_internal"].b = True
    m = gd.node.add(name="bn2", op="FusedBatchNormV3")
    m.attr["exponential_avg_factor"].f = 0.5          # not the default: cannot be dropped
    gd.node.add(name="g", op="Gelu")
    c = gd.node.add(name="c", op="Conv2D")
    c.attr["some_new_attr"].i = 1
    stripped, problems = tf115_problems(gd)
    assert stripped == ["FusedBatchNormV3._internal", "FusedBatchNormV3.exponential_avg_factor"]
    assert "exponential_avg_factor" not in gd.node[0].attr
    assert any("bn2: attribute FusedBatchNormV3.exponential_avg_factor" in p for p in problems)
    assert any("op Gelu" in p for p in problems)
    assert any("Conv2D.some_new_attr" in p for p in problems)


def test_host_quantization_is_close_to_float_and_reloads(quantized, repo_root):
    build, r = quantized
    m = json.loads((build / "quantize" / "metrics.json").read_text())
    assert m["images"]["sign_mnist_test"] == 1200 and m["calib_images"] == 300
    i8, fl = m["int8"], m["float"]
    assert i8["sign_mnist_test"]["accuracy"] > 0.4
    assert abs(fl["sign_mnist_test"]["accuracy"] - i8["sign_mnist_test"]["accuracy"]) < 0.05
    assert m["where"] == {"runner": "host"}
    # the saved int8 model scores the same in a separate process under quantize_scope
    code = f"""
import gzip, string, numpy as np, tensorflow as tf
from vitis_quantizer import quantize_scope
from dpu_app.contract import softmax
with quantize_scope():
    q = tf.keras.models.load_model({str(build / 'quantize' / 'quantized.h5')!r}, compile=False)
letters = open({str(build / 'quantize' / 'labels.txt')!r}).read().split()
rows = np.loadtxt(gzip.open({str(repo_root / 'data/sign_mnist/sign_mnist_test.csv.gz')!r}), delimiter=',', skiprows=1, max_rows=1200)
x = (rows[:, 1:] / 255.0).reshape(-1, 28, 28, 1).astype('float32')
p = softmax(q.predict(x, verbose=0)) + softmax(q.predict(x[:, :, ::-1].copy(), verbose=0))
pred = [letters[i] for i in p.argmax(1)]
print(np.mean([p == string.ascii_uppercase[int(v)] for p, v in zip(pred, rows[:, 0])]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=repo_root)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(
        i8["sign_mnist_test"]["accuracy"], abs=1e-5)
    # a log, not a terminal: no Keras progress bars from the quantizer's calibration
    assert "[====" not in r.stdout + r.stderr and "ETA:" not in r.stdout + r.stderr


def test_the_quantizer_used_power_of_two_scales(quantized):
    """pof2s is what the DPU runs: every quantize position the model carries is a whole
    number (scale 2^-pos); a float-scale strategy would store fractional scales."""
    import h5py
    import numpy as np
    build, _ = quantized
    pos = []
    with h5py.File(build / "quantize" / "quantized.h5", "r") as f:
        f.visititems(lambda n, o: pos.append(np.asarray(o[()], np.float64))
                     if hasattr(o, "shape") and n.split("/")[-1].endswith("pos:0") else None)
    assert len(pos) > 10
    assert all(np.array_equal(p, np.round(p)) for p in pos)


def test_ladder_has_every_rung_on_every_set_and_an_empty_board(quantized):
    from toolchain import ladder as L
    build, _ = quantized
    ladder = json.loads((build / "ladder" / "ladder.json").read_text())
    assert [r["rung"] for r in ladder["rungs"]] == ["float", "frozen", "int8", "board"]
    assert set(ladder["sets"]) == {"sign_mnist_test", "photos_val", "no_hand_val"}
    fl, fr, i8, board = ladder["rungs"]
    assert board["accuracy"] is None
    for r in (fl, fr, i8):
        assert set(r["accuracy"]) == set(ladder["sets"])
    assert L.change_pt(ladder, "float", "int8", "photos_val") == pytest.approx(
        (i8["accuracy"]["photos_val"] - fl["accuracy"]["photos_val"]) * 100, abs=1e-3)
    assert fl["where"].startswith("host, TF 2.12") and "vitis-quantizer" in i8["where"]
    md = (build / "ladder" / "ladder.md").read_text()
    assert "| board |" in md and "not yet run" in md and "real photos" in md
    assert "+0." not in md.split("Change =")[0] or "−" in md    # a loss reads as −, not +
    dpu = json.loads((build / "quantize" / "dpu_check.json").read_text())
    assert dpu["ok"] and any(layer["type"] == "Conv2D" for layer in dpu["layers"])
    assert dpu["vitis_inspector"] == {"ran": False, "why": "not in this quantizer (the Vitis "
                                                           "AI image has it)"}


def test_the_int8_model_carries_its_own_calibrated_threshold(quantized):
    """The board runs the int8 model: the threshold in its manifest is the one calibrated on
    its own photo validation outputs, and the ladder's int8 rung is scored at it."""
    from dpu_app.contract import MANIFEST_FILE
    build, _ = quantized
    man = json.loads((build / "quantize" / MANIFEST_FILE).read_text())["recognition"]
    ladder = json.loads((build / "ladder" / "ladder.json").read_text())
    assert ladder["threshold"]["int8"] == man["threshold"]
    assert "int8 model's own outputs" in man["how"]
    fl = json.loads((build / "train" / MANIFEST_FILE).read_text())["recognition"]["threshold"]
    assert ladder["threshold"]["float"] == ladder["threshold"]["frozen"] == fl


def test_int8_threshold_is_recalibrated_unless_the_config_sets_one():
    from types import SimpleNamespace
    from dpu_app.contract import NO_HAND
    from quantize.quantize import int8_threshold
    classes = ["A", "B", NO_HAND]
    # 20 hand crops whose top letter probabilities run from 0.45 to 0.83 (logits)
    p = np.linspace(0.45, 0.83, 20)
    probs = np.stack([p, (1 - p) * 0.6, (1 - p) * 0.4], 1)
    preds = {"photos_val": (np.log(probs), np.zeros(20, int))}
    free = SimpleNamespace(threshold=None, max_hand_rejection=0.05)
    t, how = int8_threshold(preds, classes, free, 0.7, "float how")
    assert t == pytest.approx(0.45, abs=0.02) and "int8 model's own outputs" in how
    assert "0.70" in how                                  # names the float threshold it replaced
    fixed = SimpleNamespace(threshold=0.6, max_hand_rejection=0.05)
    assert int8_threshold(preds, classes, fixed, 0.6, "set") == (0.6, "set")
    assert int8_threshold({}, classes, free, 0.7, "float how") == (0.7, "float how")


def test_ladder_names_each_rungs_threshold_when_they_differ():
    from toolchain import ladder as L
    rungs = [L.rung("float", "a", "here", {"no_hand_val": {"no_hand": 0.97}}),
             L.rung("int8", "b", "here", {"no_hand_val": {"no_hand": 0.96}})]
    md = L.markdown(L.build(rungs, {"no_hand_val": 10}, {}, {"float": 0.22, "int8": 0.2}))
    assert "(float 0.22, int8 0.20: int8 calibrated on its own outputs)" in md
    md = L.markdown(L.build(rungs, {"no_hand_val": 10}, {}, {"float": 0.22, "int8": 0.22}))
    assert "at its threshold 0.22." in md


def test_ladder_changes_read_as_signed_points():
    from toolchain import ladder as L
    lad = L.build([L.rung("float", "a", "here", {"sign_mnist_test": {"accuracy": 0.95}}),
                   L.rung("int8", "b", "here", {"sign_mnist_test": {"accuracy": 0.9497}})],
                  {"sign_mnist_test": 100}, {"sign_mnist_test": 0.3}, 0.5)
    assert L.change_pt(lad, "float", "int8", "sign_mnist_test") == pytest.approx(-0.03)
    md = L.markdown(lad)
    assert "| 94.97 % | −0.03 pt |" in md and "within" in md
    assert L.int8_verdict(lad) is True
    lad["tolerance_pt"]["sign_mnist_test"] = 0.01
    assert L.int8_verdict(lad) is False


def test_vitis_inspector_failure_is_recorded_not_fatal(monkeypatch, tmp_path):
    """VitisInspector is experimental in 3.5 and raises on models with missing layer metadata:
    the stage records the message and carries on."""
    import sys
    import types
    from quantize import quantize as Q

    class Boom:
        def __init__(self, target):
            assert target == "DPUCZDX8G_ISA1_B4096"

        def inspect_model(self, model, **kw):
            assert "input_shape" not in kw            # the model's input is fixed
            raise AttributeError("'Conv2D' object has no attribute '_inbound_nodes_value'")
    pkg = "tensorflow_model_optimization.quantization.keras"
    monkeypatch.setitem(sys.modules, pkg + ".vitis_inspect",
                        types.SimpleNamespace(VitisInspector=Boom))
    import tensorflow_model_optimization.quantization.keras as tk
    monkeypatch.setattr(tk, "vitis_inspect", sys.modules[pkg + ".vitis_inspect"],
                        raising=False)
    res = Q.vitis_inspect(object(), tmp_path)
    assert res["ran"] is False and "AttributeError" in res["why"]


def test_drop_beyond_tolerance_fails_and_keeps_no_model(frozen, repo_root, tmp_path):
    b2 = copy_of_frozen_build(frozen, tmp_path)
    # A tolerance no result can meet (int8 100 pt above float), so the failing path is taken
    # on every machine, whatever the calibration happens to lose.
    r = toolchain(repo_root, "quantize", b2, "--set", "quantize.calib_size=32",
                  "--set", "quantize.max_drop_pt=-100")
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: int8 accuracy"), r.stderr
    assert "max_drop_pt" in err[0]
    assert not (b2 / "quantize").exists()
    assert (b2 / "ladder" / "ladder.md").exists()


def test_quantize_without_freeze_is_one_clear_line(tmp_path, repo_root):
    r = toolchain(repo_root, "quantize", tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/freeze/inference.h5 does not exist: run 'make freeze' first")
    assert "Traceback" not in r.stderr


def test_tf1_flow_prepares_the_vai_q_run_and_says_where_to_run_it(frozen, repo_root, tmp_path):
    b2 = copy_of_frozen_build(frozen, tmp_path)
    r = toolchain(repo_root, "quantize", b2, "--set", "quantize.flow=tf1",
                  "--set", "quantize.calib_size=100", "--set", "runner=host")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "vai_q_tensorflow exists only in the TF1 Vitis AI image" in err[0]
    assert "run_vai_c.sh" in err[0]
    work = b2 / "quantize-tf1"
    script = (work / "run_vai_q.sh").read_text()
    assert ("vai_q_tensorflow quantize --input_frozen_graph ../freeze/frozen.pb --input_nodes image"
            " --output_nodes logits --input_shapes ?,28,28,1 --input_fn calib_input.calib_input"
            " --calib_iter 2 --output_dir results --method 1") in script
    compile_script = (work / "run_vai_c.sh").read_text()
    assert ("vai_c_tensorflow -f results/quantize_eval_model.pb -a /opt/vitis_ai/compiler/arch/"
            "DPUCZDX8G/ZCU104/arch.json -o compiled -n signnet") in compile_script
    # the generated input_fn module feeds real calibration batches under the input node name
    code = ("import sys; sys.path.insert(0, '.'); import calib_input as m; "
            "b = m.calib_input(1); x = b['image']; print(x.shape, x.dtype, float(x.max()) <= 1.0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True)
    assert out.stdout.strip() == "(50, 28, 28, 1) float32 True", out.stderr
    assert not (b2 / "quantize").exists()
