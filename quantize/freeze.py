"""Freeze: the trained model -> inference-only artifacts for both Vitis AI flows.

- `<build>/freeze/inference.h5`: the Keras model with Dropout removed (augmentation never was in
  the model), for the TF2 flow (vai_q_tensorflow2).
- `<build>/freeze/frozen.pb`: a frozen GraphDef (variables -> constants) for the TF1 flow
  (vai_q_tensorflow, TF 1.15), with attributes TF 1.15 does not know stripped (e.g.
  FusedBatchNormV3.exponential_avg_factor, Vitis-AI-Tutorials #62) and every op/attr checked
  against what TF 1.15 defines.
- `<build>/freeze/io.json`: input/output node names and shapes; `metrics.json`: the max abs
  difference of both artifacts' outputs against the float model on the held-out images
  (train/heldout.npz); the quantize stage puts the frozen graph's accuracy on the ladder.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from model.data import as_float
from toolchain import stages as S
from toolchain.artifacts import atomic_write_json, provenance, staged_dir
from toolchain.errors import UserError
from toolchain.ladder import where_label
from toolchain.tfsetup import configure_tf

# Ops this model's frozen graph may contain, with the attributes TF 1.15 defines for them.
TF115_ATTRS = {
    "Placeholder": {"dtype", "shape"},
    "NoOp": set(),
    "Const": {"dtype", "value"},
    "Identity": {"T"},
    "Conv2D": {"T", "strides", "use_cudnn_on_gpu", "padding", "explicit_paddings",
               "data_format", "dilations"},
    "BiasAdd": {"T", "data_format"},
    "FusedBatchNormV3": {"T", "U", "epsilon", "data_format", "is_training"},
    "Relu": {"T"},
    "Relu6": {"T"},
    "DepthwiseConv2dNative": {"T", "strides", "padding", "data_format", "dilations"},
    "MaxPool": {"T", "ksize", "strides", "padding", "data_format"},
    "AvgPool": {"T", "ksize", "strides", "padding", "data_format"},
    "Mean": {"T", "Tidx", "keep_dims"},
    "Reshape": {"T", "Tshape"},
    "Shape": {"T", "out_type"},
    "StridedSlice": {"T", "Index", "begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
                     "shrink_axis_mask"},
    "Pack": {"T", "N", "axis"},
    "MatMul": {"T", "transpose_a", "transpose_b"},
    "Mul": {"T"}, "Add": {"T"}, "AddV2": {"T"}, "Sub": {"T"}, "Rsqrt": {"T"},
}
# Attributes added after TF 1.15 that are safe to drop when they hold their default; internal
# attributes (leading underscore, e.g. Identity._has_manual_control_dependencies) go too.
STRIPPABLE = {
    ("FusedBatchNormV3", "exponential_avg_factor"): lambda a: a.f == 1.0,
    ("MaxPool", "explicit_paddings"): lambda a: len(a.list.i) == 0,
    ("DepthwiseConv2dNative", "explicit_paddings"): lambda a: len(a.list.i) == 0,
    ("AvgPool", "explicit_paddings"): lambda a: len(a.list.i) == 0,
}



def strip_dropout(model):
    """A copy of a chain model without Dropout layers, sharing the trained layers' weights."""
    import tensorflow as tf
    for layer in model.layers:
        if len(layer._inbound_nodes) > 1 or any(
                isinstance(n.inbound_layers, (list, tuple)) and len(n.inbound_layers) > 1
                for n in layer._inbound_nodes):
            raise UserError(f"freeze: layer '{layer.name}' has several inputs; only chain "
                            f"models (like model/net.py builds) can be frozen here")
    inp = tf.keras.Input(shape=model.input_shape[1:], name=model.inputs[0].name.split(":")[0])
    x = inp
    for layer in model.layers[1:]:
        if isinstance(layer, tf.keras.layers.Dropout):
            continue
        x = layer(x)
    return tf.keras.Model(inp, x, name=model.name)


def tf115_problems(graph_def) -> tuple[list[str], list[str]]:
    """(stripped attr notes, remaining problems) after removing strippable attrs in place."""
    stripped, problems = [], []
    for node in graph_def.node:
        known = TF115_ATTRS.get(node.op)
        if known is None:
            problems.append(f"{node.name}: op {node.op} is not in the TF 1.15 op set checked here")
            continue
        for attr in list(node.attr):
            if attr in known:
                continue
            at_default = STRIPPABLE.get((node.op, attr))
            if attr.startswith("_") or (at_default and at_default(node.attr[attr])):
                del node.attr[attr]
                stripped.append(f"{node.op}.{attr}")
            else:
                problems.append(f"{node.name}: attribute {node.op}.{attr} is unknown to TF 1.15")
    return sorted(set(stripped)), problems


def freeze_graph(model):
    """Frozen GraphDef of `model` (batch dim free) plus its input/output node names."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)
    in_name = model.inputs[0].name.split(":")[0]
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=in_name)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(fn)
    gd = frozen.graph.as_graph_def()
    inputs = [t.name.split(":")[0] for t in frozen.inputs]
    outputs = [t.name.split(":")[0] for t in frozen.outputs]
    # Name the output node after the model's output layer ("logits") for readability.
    out_node = next(n for n in gd.node if n.name == outputs[0])
    if out_node.op == "Identity":
        out_node.name = "logits"
        for n in gd.node:
            n.input[:] = ["logits" if i == outputs[0] else i for i in n.input]
        outputs = ["logits"]
    return gd, inputs, outputs


def run_frozen(graph_def, in_name: str, out_name: str, x: np.ndarray, batch: int = 1024):
    """Run a frozen GraphDef with tf.compat.v1 (as the TF1 tools load it)."""
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=g) as s:
        t_in = g.get_tensor_by_name(in_name + ":0")
        t_out = g.get_tensor_by_name(out_name + ":0")
        return np.concatenate([s.run(t_out, {t_in: x[i:i + batch]})
                               for i in range(0, len(x), batch)])


def trained_model(cfg, build_dir: Path):
    """(path, tf, model): the freeze stage's input model, loaded, or one line naming it."""
    src = S.inp(cfg, build_dir, "freeze", "model")
    if not src.exists():
        raise UserError(f"{src} does not exist: run 'make train' first")
    tf = configure_tf(cfg)
    try:
        model = tf.keras.models.load_model(str(src), compile=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{src}: not a loadable Keras .h5 ({e}); run 'make train' again") from None
    return src, tf, model


def freeze(cfg, build_dir: str | Path) -> dict:
    if cfg.model.kind == "landmarks":
        from quantize.hands_ladder import freeze_hands
        return freeze_hands(cfg, Path(build_dir))
    from model.bundle import write_model_bundle
    from model.evaluate import load_heldout
    build_dir = Path(build_dir)
    t0 = time.monotonic()
    src, tf, model = trained_model(cfg, build_dir)
    classes, sets = load_heldout(S.inp(cfg, build_dir, "freeze", "heldout"))
    train_man = read_manifest(S.inp(cfg, build_dir, "freeze", "manifest").parent)
    inference = strip_dropout(model)
    gd, inputs, outputs = freeze_graph(inference)
    stripped, problems = tf115_problems(gd)
    if problems:
        raise UserError("freeze: the frozen graph has what TF 1.15 cannot read: "
                        + "; ".join(problems[:5]))
    x_all = np.concatenate([x for x, _ in sets.values()])
    mirror = bool(train_man["recognition"].get("mirror"))
    ref = model.predict(as_float(x_all), batch_size=512, verbose=0)
    h5, pb = S.out(cfg, build_dir, "freeze", "model"), S.out(cfg, build_dir, "freeze", "frozen")
    out_dir = h5.parent
    h5_name, pb_name = h5.name, pb.name
    with staged_dir(out_dir) as stage:
        inference.save(str(stage / h5_name), include_optimizer=False, save_format="h5")
        (stage / pb_name).write_bytes(gd.SerializeToString())
        reloaded = tf.keras.models.load_model(str(stage / h5_name), compile=False)
        h5_out = reloaded.predict(as_float(x_all), batch_size=512, verbose=0)
        pb_gd = tf.compat.v1.GraphDef()
        pb_gd.ParseFromString((stage / pb_name).read_bytes())
        pb_out = run_frozen(pb_gd, inputs[0], outputs[0], as_float(x_all))
        size = int(model.input_shape[1])
        io = {"input": inputs[0], "output": outputs[0], "input_shape": [None, size, size, int(model.input_shape[3])],
              "output_shape": [None, len(classes)], "input_range": [0.0, 1.0],
              "output_kind": "logits"}
        atomic_write_json(stage / S.out(cfg, build_dir, "freeze", "io").name, io)
        # labels.txt + manifest.json beside the model: the folder is a host bundle for dpu_app
        write_model_bundle(stage, stage / h5_name, classes, model.input_shape[1:],
                           train_man["recognition"]["threshold"], train_man["recognition"]["how"],
                           mirror)
        threshold = train_man["recognition"]["threshold"]
        metrics = {
            "images": int(len(x_all)), "sets": {k: int(len(x)) for k, (x, _) in sets.items()},
            "scores": {"float": per_set_scores(
                           lambda x: model.predict(as_float(x), batch_size=512, verbose=0),
                           sets, classes, threshold, mirror),
                       "frozen": per_set_scores(
                           lambda x: run_frozen(pb_gd, inputs[0], outputs[0], as_float(x)),
                           sets, classes, threshold, mirror)},
            "where": {"float": where_label(f"TF {tf.__version__}"),
                      "frozen": where_label("tf.compat.v1")},
            "max_abs_diff_h5": float(np.abs(h5_out - ref).max()),
            "max_abs_diff_pb": float(np.abs(pb_out - ref).max()),
            "argmax_agreement_pb": float((pb_out.argmax(1) == ref.argmax(1)).mean()),
            "dropout_layers_removed": len(model.layers) - len(inference.layers),
            "tf115_attrs_stripped": stripped,
            "nodes": len(pb_gd.node),
            "seconds": round(time.monotonic() - t0, 1),
        }
        atomic_write_json(stage / S.out(cfg, build_dir, "freeze", "metrics").name, metrics)
        atomic_write_json(stage / "provenance.json", provenance(
            "freeze", cfg, inputs={"model": {"path": str(src)}}))
    print(f"frozen: {out_dir / pb_name} (input '{inputs[0]}', output '{outputs[0]}', "
          f"{metrics['nodes']} nodes; stripped for TF 1.15: {', '.join(stripped) or 'nothing'})")
    print(f"inference model: {out_dir / h5_name} ({metrics['dropout_layers_removed']} Dropout "
          f"layers removed)")
    print(f"check on {len(x_all):,} held-out images ({', '.join(sets)}): max |diff| vs the float "
          f"model: .h5 {metrics['max_abs_diff_h5']:.2e}, .pb {metrics['max_abs_diff_pb']:.2e}")
    return metrics


def per_set_scores(logits_fn, sets: dict, classes, threshold: float, mirror: bool) -> dict:
    """Each held-out set scored by the app's rule (threshold, mirror averaging) with
    `logits_fn` (uint8 images -> logits)."""
    from model.evaluate import predict_heldout, score_sets
    preds = predict_heldout(logits_fn, sets, mirror)
    return strip_letters(score_sets(preds, classes, threshold))


def strip_letters(scores: dict) -> dict:
    """Per-set scores without the per-letter detail (the ladder's metrics keep the totals)."""
    return {k: {kk: vv for kk, vv in v.items() if kk not in ("per_letter", "most_confused")}
            for k, v in scores.items()}


def read_manifest(bundle: Path) -> dict:
    import json
    from dpu_app.contract import MANIFEST_FILE
    path = bundle / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is missing or unreadable: run 'make train' again (it writes "
                        f"the model's manifest)") from None


