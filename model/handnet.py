"""MediaPipe's pretrained hand landmark network as a DPU-friendly Keras model (host only).

The network ships as data (data/hand_landmark/, see NOTICE there): the two .tflite files of
the mediapipe 0.10.14 wheel, `full` and `lite`. `convert` rebuilds one as a Keras 2
**functional** model straight from the TFLite flatbuffer (TF's own schema_py_generated; no
mediapipe import anywhere): the fp16 weights behind DEQUANTIZE ops become float32 weights of
Conv2D / DepthwiseConv2D / Dense layers, each fused RELU6 a `ReLU(max_value=6)` layer, ADD an
`Add`, MAX_POOL_2D a `MaxPooling2D`, MEAN over H, W a `GlobalAveragePooling2D`. Every TFLite
convolution and pooling here uses SAME padding, which is TF's 'same' (PAD ops, if a network
had them, would become ZeroPadding2D). The two LOGISTIC ops are left out, so the whole graph is
layers the DPU runs; the app applies the sigmoid to `presence` and `handedness` in numpy.

Model: input `image`, (N, 224, 224, 3) float32 in [0, 1], BGR by default (the first
convolution's kernel takes its input channels in reverse order, so OpenCV frames go in as they
are; `bgr=False` keeps MediaPipe's RGB). Outputs, in this order:

- `landmarks`  (N, 63): 21 landmarks x, y, z (x, y in input pixels, 0..224; z relative depth
  in the same scale), as MediaPipe's `Identity` output;
- `presence`   (N, 1): hand presence **logit** (MediaPipe's "hand flag" before its sigmoid);
- `handedness` (N, 1): handedness **logit**. Its sigmoid is the score MediaPipe gives label 0
  of handedness.txt ("Left", "Right"; its TensorsToClassification binary mode: Left = s,
  Right = 1 - s), and MediaPipe's labels assume a mirrored (selfie) image: on an un-mirrored
  frame s > 0.5 should be the person's right hand (MediaPipe's convention, not checked here);
- `features`   (N, F) only with `features=True`: the global-average-pooled vector the heads read
  (F = 1152 full, 672 lite).

The world landmarks head is dropped. Command line:

    python -m model.handnet convert --network full|lite --out X.h5 [--rgb] [--features]
    python -m model.handnet check [--network full|lite]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from toolchain.errors import UserError

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "hand_landmark"
SUMS_FILE = "SHA256SUMS"
NETWORKS = {"full": "hand_landmark_full.tflite", "lite": "hand_landmark_lite.tflite"}
INPUT_NAME = "image"
INPUT_SIZE = 224
NUM_LANDMARKS = 21
OUTPUT_NAMES = ("landmarks", "presence", "handedness")
FEATURES_NAME = "features"
# The TFLite heads by the name of their weights' Keras layer ('model_1/model/conv_handflag/...').
HEADS = {"conv_landmarks": "landmarks", "conv_handflag": "presence",
         "conv_handedness": "handedness", "conv_world_landmarks": None}
RESTORE = ("restore it with 'git checkout -- data/hand_landmark/{name}' or "
           "'scripts/extract-hand-landmark.sh'")


# --------------------------------------------------------------------------- checksums

def recorded_sha256() -> dict[str, str]:
    """{file name: sha256} from data/hand_landmark/SHA256SUMS (sha256sum's format)."""
    path = DATA_DIR / SUMS_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError:
        raise UserError(f"data/hand_landmark/{SUMS_FILE} is missing: restore it with "
                        f"'git checkout -- data/hand_landmark/{SUMS_FILE}'") from None
    sums = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def network_path(network: str) -> Path:
    """The shipped .tflite of `network` ('full' or 'lite'), checked by check_network."""
    if network not in NETWORKS:
        raise UserError(f"no hand landmark network '{network}': use one of "
                        f"{', '.join(NETWORKS)}")
    return check_network(DATA_DIR / NETWORKS[network])


def check_network(path: str | Path) -> Path:
    """`path` if it is one of the shipped networks, byte for byte (sha256 in SHA256SUMS);
    a missing, unknown or altered file raises UserError naming it and how to restore it."""
    path = Path(path)
    sums = recorded_sha256()
    if path.name not in sums:
        raise UserError(f"{path}: not one of the hand landmark networks recorded in "
                        f"data/hand_landmark/{SUMS_FILE} ({', '.join(sorted(sums))})")
    if not path.is_file():
        raise UserError(f"{path} is missing: " + RESTORE.format(name=path.name))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != sums[path.name]:
        raise UserError(f"{path} is altered (sha256 {h.hexdigest()[:12]}..., recorded "
                        f"{sums[path.name][:12]}...): " + RESTORE.format(name=path.name))
    return path


# --------------------------------------------------------------------------- conversion

def _schema():
    from tensorflow.lite.python import schema_py_generated as schema
    return schema


class _Graph:
    """The one subgraph of a .tflite file, unpacked (operators, tensors, constants)."""

    def __init__(self, path: Path):
        schema = _schema()
        try:
            buf = path.read_bytes()
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror}): " + RESTORE.format(
                name=path.name)) from None
        try:
            if not schema.Model.ModelBufferHasIdentifier(buf, 0):
                raise ValueError("no TFL3 identifier")
            self.model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise UserError(f"{path}: not a TFLite flatbuffer ({e}): "
                            + RESTORE.format(name=path.name)) from None
        if len(self.model.subgraphs) != 1:
            raise UserError(f"{path}: {len(self.model.subgraphs)} subgraphs; the hand landmark "
                            f"networks have one")
        self.path = path
        self.g = self.model.subgraphs[0]
        codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
        self.ops = []
        for op in self.g.operators:
            oc = self.model.operatorCodes[op.opcodeIndex]
            self.ops.append((codes.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), "CUSTOM"),
                             op))
        self.producer = {o: i for i, (_, op) in enumerate(self.ops) for o in op.outputs}
        self.consumers: dict[int, list[int]] = {}
        for i, (_, op) in enumerate(self.ops):
            for t in op.inputs:
                self.consumers.setdefault(int(t), []).append(i)
        self.consts: dict[int, np.ndarray] = {}

    def name(self, t: int) -> str:
        n = self.g.tensors[t].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def shape(self, t: int) -> list[int]:
        return [int(d) for d in self.g.tensors[t].shape]

    def const(self, t: int) -> np.ndarray:
        """A constant tensor as float32: a raw buffer, or the output of a DEQUANTIZE."""
        if t in self.consts:
            return self.consts[t]
        tensor = self.g.tensors[t]
        data = self.model.buffers[tensor.buffer].data if tensor.buffer else None
        if data is None or len(data) == 0:
            raise UserError(f"{self.path.name}: tensor '{self.name(t)}' is not a constant "
                            f"where a weight was expected")
        dtype = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32,
                 "INT64": np.int64}.get(self.types.get(tensor.type))
        if dtype is None:
            raise UserError(f"{self.path.name}: constant '{self.name(t)}' has type "
                            f"{self.types.get(tensor.type)}; only float16/32 weights are handled")
        arr = np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(self.shape(t))
        return arr.astype(np.float32) if dtype in (np.float16, np.float32) else arr

    def head_of(self, out: int) -> str:
        """The TFLite head ('conv_handflag', ...) behind graph output `out`."""
        t = out
        kind, op = self.ops[self.producer[t]]
        if kind == "LOGISTIC":
            t = int(op.inputs[0])
            kind, op = self.ops[self.producer[t]]
        if kind == "FULLY_CONNECTED":
            for seg in self.name(int(op.inputs[1])).split(";")[-1].split("/"):
                if seg in HEADS:
                    return seg
        raise UserError(f"{self.path.name}: output '{self.name(out)}' is not one of the hand "
                        f"landmark heads ({', '.join(HEADS)}); is this a hand landmark network?")


def convert(tflite_path: str | Path, *, bgr: bool = True, features: bool = False):
    """The .tflite hand landmark network as a functional tf.keras.Model (see the module doc).

    Outputs in order: landmarks (N, 63), presence (N, 1) logit, handedness (N, 1) logit, and
    with `features=True` features (N, F). Input: (N, 224, 224, 3) float in [0, 1], BGR if `bgr`.
    """
    import tensorflow as tf
    from tensorflow.keras import layers

    path = Path(tflite_path)
    gr = _Graph(path)
    g = gr.g
    if len(g.inputs) != 1 or gr.shape(int(g.inputs[0])) != [1, INPUT_SIZE, INPUT_SIZE, 3]:
        raise UserError(f"{path.name}: expected one 1x{INPUT_SIZE}x{INPUT_SIZE}x3 input, found "
                        f"{[gr.shape(int(t)) for t in g.inputs]}")
    heads = {gr.head_of(int(t)): int(t) for t in g.outputs}
    missing = [h for h, name in HEADS.items() if name and h not in heads]
    if missing:
        raise UserError(f"{path.name}: no {', '.join(missing)} output; is this a hand "
                        f"landmark network?")
    wanted = {heads[h]: HEADS[h] for h in HEADS if HEADS[h]}       # tensor -> output name

    # Only the ops the wanted outputs need (drops the world landmarks head).
    needed, stack = set(), list(wanted)
    while stack:
        t = stack.pop()
        i = gr.producer.get(t)
        if i is None or i in needed:
            continue
        needed.add(i)
        stack.extend(int(x) for x in gr.ops[i][1].inputs if x >= 0)

    in_t = int(g.inputs[0])
    first = gr.consumers.get(in_t, [])
    if bgr and (len(first) != 1 or gr.ops[first[0]][0] != "CONV_2D"):
        raise UserError(f"{path.name}: the input feeds {len(first)} ops, not one CONV_2D; "
                        f"cannot fold BGR into the first convolution (use bgr=False)")

    inp = tf.keras.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), name=INPUT_NAME)
    values = {in_t: inp}
    count: dict[str, int] = {}
    feats = None

    def name_for(kind: str) -> str:
        count[kind] = count.get(kind, 0) + 1
        return f"{kind}{count[kind]}"

    def padding(opts) -> str:
        return {0: "same", 1: "valid"}[opts.padding]

    def activation(x, opts, base: str):
        act = opts.fusedActivationFunction
        if act == 0:
            return x
        if act == 1:
            return layers.ReLU(name=f"{base}_relu")(x)
        if act == 3:
            return layers.ReLU(max_value=6.0, name=f"{base}_relu6")(x)
        raise UserError(f"{path.name}: layer {base}: fused activation {act} is not one the DPU "
                        f"runs (only RELU, RELU6)")

    for i, (kind, op) in enumerate(gr.ops):
        if i not in needed:
            continue
        ins = [int(t) for t in op.inputs]
        out = int(op.outputs[0])
        opts = op.builtinOptions
        if kind == "DEQUANTIZE":
            gr.consts[out] = gr.const(ins[0])
            continue
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if (opts.dilationHFactor, opts.dilationWFactor) != (1, 1):
                raise UserError(f"{path.name}: dilated convolution '{gr.name(out)}' is not "
                                f"handled")
            w = gr.const(ins[1])
            b = gr.const(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            strides = (opts.strideH, opts.strideW)
            if kind == "CONV_2D":
                if ins[0] == in_t and bgr:
                    w = w[..., ::-1]                      # [O, H, W, I]: RGB -> BGR input
                name = name_for("conv")
                layer = layers.Conv2D(w.shape[0], w.shape[1:3], strides=strides,
                                      padding=padding(opts), use_bias=b is not None, name=name)
                kernel = np.transpose(w, (1, 2, 3, 0))   # -> [H, W, I, O]
            else:
                cin = gr.shape(ins[0])[-1]
                mult = opts.depthMultiplier or w.shape[-1] // cin
                name = name_for("dwconv")
                layer = layers.DepthwiseConv2D(w.shape[1:3], strides=strides,
                                               padding=padding(opts), depth_multiplier=mult,
                                               use_bias=b is not None, name=name)
                kernel = w.reshape(w.shape[1], w.shape[2], cin, mult)
            x = layer(values[ins[0]])
            layer.set_weights([kernel] + ([b] if b is not None else []))
            values[out] = activation(x, opts, name)
        elif kind == "ADD":
            name = name_for("add")
            x = layers.Add(name=name)([values[ins[0]], values[ins[1]]])
            values[out] = activation(x, opts, name)
        elif kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            cls = layers.MaxPooling2D if kind == "MAX_POOL_2D" else layers.AveragePooling2D
            name = name_for("maxpool" if kind == "MAX_POOL_2D" else "avgpool")
            x = cls((opts.filterHeight, opts.filterWidth), strides=(opts.strideH, opts.strideW),
                    padding=padding(opts), name=name)(values[ins[0]])
            values[out] = activation(x, opts, name)
        elif kind == "PAD":
            p = gr.const(ins[1]).astype(int)
            if p.shape != (4, 2) or p[0].any() or p[3].any():
                raise UserError(f"{path.name}: PAD '{gr.name(out)}' pads batch or channels")
            values[out] = layers.ZeroPadding2D(((p[1, 0], p[1, 1]), (p[2, 0], p[2, 1])),
                                               name=name_for("pad"))(values[ins[0]])
        elif kind == "MEAN":
            axes = sorted(int(a) for a in np.atleast_1d(gr.const(ins[1])))
            if axes != [1, 2] or opts.keepDims or feats is not None:
                raise UserError(f"{path.name}: MEAN over {axes} (keepDims {opts.keepDims}) is "
                                f"not the one global average pooling expected")
            feats = values[out] = layers.GlobalAveragePooling2D(name=FEATURES_NAME)(
                values[ins[0]])
        elif kind == "FULLY_CONNECTED":
            if opts.keepNumDims or len(values[ins[0]].shape) != 2:
                raise UserError(f"{path.name}: FULLY_CONNECTED '{gr.name(out)}' on a "
                                f"{len(values[ins[0]].shape)}-d input is not handled")
            w = gr.const(ins[1])                          # [O, I]
            b = gr.const(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            final = out if out in wanted else next(
                (int(gr.ops[c][1].outputs[0]) for c in gr.consumers.get(out, [])
                 if gr.ops[c][0] == "LOGISTIC"), None)
            name = wanted[final] if final in wanted else name_for("dense")
            layer = layers.Dense(w.shape[0], use_bias=b is not None, name=name)
            x = layer(values[ins[0]])
            layer.set_weights([w.T] + ([b] if b is not None else []))
            values[out] = activation(x, opts, name)
        elif kind == "LOGISTIC":
            if out not in wanted:
                raise UserError(f"{path.name}: LOGISTIC '{gr.name(out)}' inside the network; "
                                f"only the output sigmoids can be left to the app")
            values[out] = values[ins[0]]                  # logits: the app takes the sigmoid
        else:
            raise UserError(f"{path.name}: op {kind} ('{gr.name(out)}') has no DPU-friendly "
                            f"Keras layer here")

    by_name = {name: values[t] for t, name in wanted.items()}
    outputs = [by_name[n] for n in OUTPUT_NAMES]
    if features:
        if feats is None:
            raise UserError(f"{path.name}: no global average pooling to take features from")
        outputs.append(feats)
    return tf.keras.Model(inp, outputs, name=path.stem)


def save(model, path: str | Path) -> Path:
    """Write `model` as a Keras .h5 (temp file beside it, then rename)."""
    from toolchain.artifacts import atomic_file
    path = Path(path)
    with atomic_file(path, suffix=".h5") as tmp:
        model.save(str(tmp), include_optimizer=False, save_format="h5")
    return path


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.handnet", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="rebuild a shipped network as a Keras .h5")
    c.add_argument("--network", choices=sorted(NETWORKS), default="full")
    c.add_argument("--out", required=True, help="output .h5")
    c.add_argument("--rgb", action="store_true", help="take RGB input (default: BGR)")
    c.add_argument("--features", action="store_true", help="also output the pooled features")
    k = sub.add_parser("check", help="verify the shipped networks' checksums")
    k.add_argument("--network", choices=sorted(NETWORKS), action="append")
    args = p.parse_args(argv)
    try:
        if args.cmd == "check":
            for n in args.network or sorted(NETWORKS):
                print(f"ok: {network_path(n)} matches data/hand_landmark/{SUMS_FILE}")
            return 0
        import os
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")     # h5 save: "compiled metrics have yet to be built"
        model = convert(network_path(args.network), bgr=not args.rgb, features=args.features)
        out = save(model, args.out)
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(model.output_names,
                                                                   model.outputs))
        print(f"{out}: {args.network} hand landmark network, {len(model.layers)} layers, "
              f"input {INPUT_NAME} {tuple(model.input.shape)} {'RGB' if args.rgb else 'BGR'} "
              f"in [0, 1]; outputs {shapes}")
        return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
