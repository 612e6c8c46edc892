"""The .xmodel file format (XIR's `serial_v2` protobuf schema, rebuilt as dynamic messages) and
the emulated compiled model the tests write with it (`write_emulated_xmodel`).

A compiled .xmodel (not the old ELF kind) is one protobuf message `serial_v2.Graph` written by
xir::v2::Serialize (Vitis-AI src/vai_runtime/xir/src/xir/graph/serialize_v2.cpp: it parses the
whole file with `ParseFromIstream` and logs UNI_LOG_FATAL(XIR_READ_PB_FAILURE) when that fails).
The .proto itself (graph_proto_v2.proto) is not in the sources we could read; the messages,
field names, numbers and types below are those of
  * Netron's decoder for .xmodel files (lutzroeder/netron, source/xmodel-proto.js: generated
    from graph_proto_v2.proto; every field number and wire type below is taken from it), and
  * serialize_v2.cpp (the accessor names it calls: set_graph_name, mutable_op_node,
    mutable_subg_root, mutable_graph_attr, mutable_op_defs, set_tensor_name, add_tensor_dim,
    set_data_type, set_tensor_bit_width, mutable_tensor_attr, mutable_subg_child, ...).

    syntax = "proto3"; package serial_v2;
    message Graph    { string graph_name = 1; repeated OPNode op_node = 5; SubGraph subg_root = 10;
                       map<string, AttrValue> graph_attr = 11; repeated OpDef op_defs = 101; }
    message OPNode   { string op_name = 1; string op_type = 2; map<string, AttrValue> op_attr = 3;
                       repeated OpArg args = 4; Tensor output_tensor = 5; }
    message OpArg    { string arg_name = 1; repeated string arg_ops = 2; }
    message Tensor   { string tensor_name = 1; repeated uint32 tensor_dim = 2; int32 data_type = 5;
                       int32 tensor_bit_width = 6; map<string, AttrValue> tensor_attr = 10; }
    message SubGraph { string subgraph_name = 1; repeated string op_name = 3;
                       map<string, AttrValue> subg_attr = 5; repeated SubGraph subg_child = 10; }
    message OpDef    { string name = 1; repeated OpArgDef input_args = 2; repeated AttrDef attrs = 3;
                       string annotation = 4; }
    message OpArgDef { string name = 1; OccurType occur_type = 2; int32 data_type = 3;
                       string annotation = 4; enum OccurType {REQUIRED=0; OPTIONAL=1; REPEATED=2;
                       REQUIRED_AND_REPEATED=3;} }
    message AttrDef  { string name = 1; OccurType occur_type = 3; AttrValue default_value = 4;
                       int32 list_length = 6; string annotation = 7;
                       enum OccurType {REQUIRED=0; OPTIONAL=1;} }
    message AttrValue { oneof value { bool bool_value = 4; int32 int32_value = 5; ...
                       MapString2StringVec map_string_2_string_vec_value = 32; } }  (table below)
    message Bytes { bytes value = 1; }   message Int32Vec { repeated int32 value = 1; } ...
    message MapString2Int32 { map<string, int32> value = 1; } ...

Tensor.data_type is xir::DataType::Type (xir/util/data_type.hpp):
INT=0, UINT=1, XINT=2, XUINT=3, FLOAT=4, BFLOAT=5, UNKNOWN=6; the binding's `tensor.dtype` is
DataType::to_string() lower-cased: "xint8", "float32". Attributes whose key starts with "__"
are not serialized (serialize_v2.cpp: "ignore private attribute").
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
_SCALAR = {"bool": F.TYPE_BOOL, "int32": F.TYPE_INT32, "uint32": F.TYPE_UINT32,
           "int64": F.TYPE_INT64, "uint64": F.TYPE_UINT64, "float": F.TYPE_FLOAT,
           "double": F.TYPE_DOUBLE, "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES}

# AttrValue's oneof: (field name, number, type); the type is a scalar or a message name
ATTR_VALUE_FIELDS = [
    ("bool_value", 4, "bool"), ("int32_value", 5, "int32"), ("uint32_value", 6, "uint32"),
    ("int64_value", 7, "int64"), ("uint64_value", 8, "uint64"), ("float_value", 9, "float"),
    ("double_value", 10, "double"), ("string_value", 11, "string"),
    ("bytes_value", 12, "Bytes"), ("bool_vec_value", 13, "BoolVec"),
    ("int32_vec_value", 14, "Int32Vec"), ("uint32_vec_value", 15, "Uint32Vec"),
    ("int64_vec_value", 16, "Int64Vec"), ("uint64_vec_value", 17, "Uint64Vec"),
    ("float_vec_value", 18, "FloatVec"), ("double_vec_value", 19, "DoubleVec"),
    ("string_vec_value", 20, "StringVec"), ("bytes_vec_value", 21, "BytesVec"),
    ("map_string_2_int32_value", 22, "MapString2Int32"),
    ("map_string_2_uint32_value", 23, "MapString2Uint32"),
    ("map_string_2_int64_value", 24, "MapString2Int64"),
    ("map_string_2_uint64_value", 25, "MapString2Uint64"),
    ("map_string_2_string_value", 26, "MapString2String"),
    ("map_string_2_bytes_value", 27, "MapString2Bytes"),
    ("map_string_2_int32_vec_value", 28, "MapString2Int32Vec"),
    ("map_string_2_uint32_vec_value", 29, "MapString2Uint32Vec"),
    ("map_string_2_int64_vec_value", 30, "MapString2Int64Vec"),
    ("map_string_2_uint64_vec_value", 31, "MapString2Uint64Vec"),
    ("map_string_2_string_vec_value", 32, "MapString2StringVec"),
]

DATA_TYPES = ("INT", "UINT", "XINT", "XUINT", "FLOAT", "BFLOAT", "UNKNOWN")


def _file_proto() -> descriptor_pb2.FileDescriptorProto:
    fp = descriptor_pb2.FileDescriptorProto(name="graph_proto_v2.proto", package="serial_v2",
                                            syntax="proto3")

    def msg(name, parent=None):
        m = (parent.nested_type if parent is not None else fp.message_type).add()
        m.name = name
        return m

    def field(m, name, number, typ, repeated=False, oneof=None, type_name=None):
        f = m.field.add(name=name, number=number,
                        label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if typ in _SCALAR:
            f.type = _SCALAR[typ]
        elif typ == "enum":
            f.type, f.type_name = F.TYPE_ENUM, type_name
        else:
            f.type, f.type_name = F.TYPE_MESSAGE, f".serial_v2.{typ}"
        if oneof is not None:
            f.oneof_index = oneof
        return f

    def map_field(m, name, number, value_type):
        entry = msg("".join(p.capitalize() for p in name.split("_")) + "Entry", m)
        entry.options.map_entry = True
        field(entry, "key", 1, "string")
        field(entry, "value", 2, value_type)
        f = m.field.add(name=name, number=number, label=F.LABEL_REPEATED, type=F.TYPE_MESSAGE)
        f.type_name = f".serial_v2.{m.name}.{entry.name}"

    g = msg("Graph")
    field(g, "graph_name", 1, "string")
    field(g, "op_node", 5, "OPNode", repeated=True)
    field(g, "subg_root", 10, "SubGraph")
    map_field(g, "graph_attr", 11, "AttrValue")
    field(g, "op_defs", 101, "OpDef", repeated=True)

    o = msg("OPNode")
    field(o, "op_name", 1, "string")
    field(o, "op_type", 2, "string")
    map_field(o, "op_attr", 3, "AttrValue")
    field(o, "args", 4, "OpArg", repeated=True)
    field(o, "output_tensor", 5, "Tensor")

    a = msg("OpArg")
    field(a, "arg_name", 1, "string")
    field(a, "arg_ops", 2, "string", repeated=True)

    t = msg("Tensor")
    field(t, "tensor_name", 1, "string")
    field(t, "tensor_dim", 2, "uint32", repeated=True)
    field(t, "data_type", 5, "int32")
    field(t, "tensor_bit_width", 6, "int32")
    map_field(t, "tensor_attr", 10, "AttrValue")

    s = msg("SubGraph")
    field(s, "subgraph_name", 1, "string")
    field(s, "op_name", 3, "string", repeated=True)
    map_field(s, "subg_attr", 5, "AttrValue")
    field(s, "subg_child", 10, "SubGraph", repeated=True)

    d = msg("OpDef")
    field(d, "name", 1, "string")
    field(d, "input_args", 2, "OpArgDef", repeated=True)
    field(d, "attrs", 3, "AttrDef", repeated=True)
    field(d, "annotation", 4, "string")

    ad = msg("OpArgDef")
    e = ad.enum_type.add(name="OccurType")
    for i, n in enumerate(("REQUIRED", "OPTIONAL", "REPEATED", "REQUIRED_AND_REPEATED")):
        e.value.add(name=n, number=i)
    field(ad, "name", 1, "string")
    field(ad, "occur_type", 2, "enum", type_name=".serial_v2.OpArgDef.OccurType")
    field(ad, "data_type", 3, "int32")
    field(ad, "annotation", 4, "string")

    at = msg("AttrDef")
    e = at.enum_type.add(name="OccurType")
    for i, n in enumerate(("REQUIRED", "OPTIONAL")):
        e.value.add(name=n, number=i)
    field(at, "name", 1, "string")
    field(at, "occur_type", 3, "enum", type_name=".serial_v2.AttrDef.OccurType")
    field(at, "default_value", 4, "AttrValue")
    field(at, "list_length", 6, "int32")
    field(at, "annotation", 7, "string")

    av = msg("AttrValue")
    av.oneof_decl.add(name="value")
    for name, number, typ in ATTR_VALUE_FIELDS:
        field(av, name, number, typ, oneof=0)

    b = msg("Bytes")
    field(b, "value", 1, "bytes")
    for name, typ in (("BoolVec", "bool"), ("Int32Vec", "int32"), ("Uint32Vec", "uint32"),
                      ("Int64Vec", "int64"), ("Uint64Vec", "uint64"), ("FloatVec", "float"),
                      ("DoubleVec", "double"), ("StringVec", "string"), ("BytesVec", "Bytes")):
        field(msg(name), "value", 1, typ, repeated=True)
    for name, typ in (("MapString2Int32", "int32"), ("MapString2Uint32", "uint32"),
                      ("MapString2Int64", "int64"), ("MapString2Uint64", "uint64"),
                      ("MapString2String", "string"), ("MapString2Bytes", "Bytes"),
                      ("MapString2Int32Vec", "Int32Vec"), ("MapString2Uint32Vec", "Uint32Vec"),
                      ("MapString2Int64Vec", "Int64Vec"), ("MapString2Uint64Vec", "Uint64Vec"),
                      ("MapString2StringVec", "StringVec")):
        map_field(msg(name), "value", 1, typ)
    return fp


_pool = descriptor_pool.DescriptorPool()          # private: never clashes with TF's protos
_pool.Add(_file_proto())


def message_class(name: str):
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"serial_v2.{name}"))


Graph = message_class("Graph")
OPNode = message_class("OPNode")
SubGraph = message_class("SubGraph")
Tensor = message_class("Tensor")
AttrValue = message_class("AttrValue")
OpDef = message_class("OpDef")


# ------------------------------------------------------------------------------- attributes
class Typed:
    """An attribute value with its XIR type spelled out: Typed("uint64", 0x1010...)."""

    def __init__(self, kind: str, value):
        self.kind, self.value = kind, value


def set_attr(av, value) -> None:
    """Fill an AttrValue like XIR would for `value`. Python int -> int32 (what the binding's
    set_attr picks), float -> double, str -> string, bytes -> Bytes, list of int/str ->
    Int32Vec/StringVec, dict str -> str -> MapString2String; Typed(kind, v) for anything else
    (e.g. Typed("uint64", fingerprint))."""
    if isinstance(value, Typed):
        kind, value = value.kind, value.value
    elif isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "int32"
    elif isinstance(value, float):
        kind = "double"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, bytes):
        kind = "bytes"
    elif isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        kind = "int32_vec"
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        kind = "string_vec"
    elif isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        kind = "map_string_2_string"
    else:
        raise TypeError(f"no XIR attribute type for {value!r}: wrap it in Typed(kind, value)")
    name = f"{kind}_value"
    if kind == "bytes":
        av.bytes_value.value = value
    elif kind.endswith("_vec") and not kind.startswith("map"):
        getattr(av, name).value.extend(value)
    elif kind.startswith("map_"):
        getattr(av, name).value.update(value)
    else:
        setattr(av, name, value)


def get_attr(av):
    """The Python value of an AttrValue, as the binding's get_attr returns it."""
    which = av.WhichOneof("value")
    if which is None:
        raise ValueError("AttrValue holds no value")
    v = getattr(av, which)
    if which == "bytes_value":
        return bytes(v.value)
    if which == "bytes_vec_value":
        return [bytes(b.value) for b in v.value]
    if which.startswith("map_"):
        return {k: (list(x.value) if hasattr(x, "value") else x) for k, x in v.value.items()}
    if which.endswith("_vec_value"):
        return list(v.value)
    return v


def data_type(name: str) -> tuple[int, int]:
    """'xint8' -> (XINT, 8); 'float32' -> (FLOAT, 32)."""
    name = name.upper()
    for i, t in sorted(enumerate(DATA_TYPES), key=lambda p: -len(p[1])):
        if name.startswith(t) and name[len(t):].isdigit():
            return i, int(name[len(t):])
    raise ValueError(f"unknown XIR data type {name!r}")


def data_type_name(type_index: int, bit_width: int) -> str:
    t = DATA_TYPES[type_index] if 0 <= type_index < len(DATA_TYPES) else "UNKNOWN"
    return f"{t}{bit_width}".lower()


# ------------------------------------------------------------------------------- building
def build_graph(name: str, ops: list[dict], root: dict, op_defs: list[dict],
                graph_attrs: dict | None = None):
    """A serial_v2.Graph message.

    ops (topological order): {"name", "type", "inputs": {arg name: [op names]}, "attrs",
    "tensor": {"name", "dims", "dtype", "attrs"}}; root: {"name", "attrs", "children": [...]}
    where a leaf has "ops": [op names]; op_defs: {"name", "inputs": [arg names]}."""
    g = Graph(graph_name=name)
    for op in ops:
        node = g.op_node.add(op_name=op["name"], op_type=op["type"])
        for k, v in (op.get("attrs") or {}).items():
            set_attr(node.op_attr[k], v)
        for arg, srcs in (op.get("inputs") or {}).items():
            node.args.add(arg_name=arg, arg_ops=list(srcs))
        t = op["tensor"]
        dt, bits = data_type(t.get("dtype", "xint8"))
        node.output_tensor.tensor_name = t["name"]
        node.output_tensor.tensor_dim.extend(int(d) for d in t["dims"])
        node.output_tensor.data_type = dt
        node.output_tensor.tensor_bit_width = bits
        for k, v in (t.get("attrs") or {}).items():
            set_attr(node.output_tensor.tensor_attr[k], v)

    def fill(pb, spec):
        pb.subgraph_name = spec["name"]
        for k, v in (spec.get("attrs") or {}).items():
            if not k.startswith("__"):                        # private attrs are not saved
                set_attr(pb.subg_attr[k], v)
        if spec.get("children"):
            for child in spec["children"]:
                fill(pb.subg_child.add(), child)
        else:
            pb.op_name.extend(spec.get("ops", []))

    fill(g.subg_root, root)
    for d in op_defs:
        od = g.op_defs.add(name=d["name"], annotation=d.get("annotation", ""))
        for arg in d.get("inputs", []):
            od.input_args.add(name=arg, occur_type=0, data_type=0)
    for k, v in (graph_attrs or {}).items():
        set_attr(g.graph_attr[k], v)
    return g


# ------------------------------------------------------------------------------- the model
FINGERPRINT_3_0 = 0x101000056010407          # DPUCZDX8G_ISA1_B4096, Vitis AI 3.0/3.5 images
OP_DEFS = [{"name": "data-fix", "inputs": []},
           {"name": "conv2d-fix", "inputs": ["input", "weights", "bias"]},
           {"name": "inner-product-fix", "inputs": ["input", "weights", "bias"]},
           {"name": "fix2float", "inputs": ["input"]}]


def emulated_graph(*, q_h5: str | None = None, in_fix: int | None = 6,
                   out_fix: int | None = 4, batch: int = 1, classes: int = 25,
                   dpu_subgraphs: int = 1, in_dtype: str = "xint8", compute: str = "keras",
                   in_dims=None, fingerprint: int | None = FINGERPRINT_3_0,
                   name: str = "signnet", input_name: str = "quant_image",
                   output_name: str = "quant_logits", workload: int | None = 213_248,
                   cpu_between: str | None = None, nested: bool = False):
    """A compiled sign-language model as vai_c_tensorflow2 lays it out: a USER subgraph holding
    the int8 input, the DPU subgraph(s) (conv ... dense, int8 in and out with their fix_point
    attributes, device/dpu_fingerprint/dpu_name attributes), a CPU subgraph converting the
    logits to float. Instead of DPU machine code the DPU subgraph carries the attribute
    "emulated_compute" {"kind": "keras"|"record", "model": quantized .h5}, which the fake vart
    runs. in_fix/out_fix None: the DPU tensors have no fix_point attribute.

    workload: the DPU subgraph's `workload` attribute (uint64, operations per run; None: none).
    cpu_between="<op type>" (with dpu_subgraphs=2): an op of that type, in a CPU subgraph,
    between the two DPU subgraphs, as a layer the DPU cannot run splits a real model.
    nested=True: the DPU subgraph holds child subgraphs (upload, compute, download) as the
    Vitis AI 3.x compilers write it, instead of listing its ops itself."""
    dims_in = [int(d) for d in (in_dims or [batch, 28, 28, 1])]
    fx = (lambda v: {} if v is None else {"fix_point": int(v)})
    ops = [
        {"name": "image", "type": "data-fix",
         "attrs": {"shape": dims_in, "data_type": in_dtype.upper()},
         "tensor": {"name": input_name, "dims": dims_in, "dtype": in_dtype, "attrs": fx(in_fix)}},
        {"name": "quant_conv1", "type": "conv2d-fix", "inputs": {"input": ["image"]},
         "tensor": {"name": "quant_conv1", "dims": [dims_in[0], 14, 14, 16], "dtype": "xint8",
                    "attrs": fx(3 if in_fix is not None else None)}},
        {"name": "quant_logits", "type": "inner-product-fix", "inputs": {"input": ["quant_conv1"]},
         "tensor": {"name": output_name, "dims": [dims_in[0], classes], "dtype": "xint8",
                    "attrs": fx(out_fix)}},
        {"name": "logits", "type": "fix2float", "inputs": {"input": ["quant_logits"]},
         "tensor": {"name": "logits", "dims": [dims_in[0], classes], "dtype": "float32"}},
    ]
    if cpu_between:
        ops.insert(2, {"name": "cpu_op", "type": cpu_between, "inputs": {"input": ["quant_conv1"]},
                       "tensor": {"name": "cpu_op", "dims": [dims_in[0], 14, 14, 16],
                                  "dtype": "xint8", "attrs": fx(3 if in_fix is not None
                                                               else None)}})
        ops[3]["inputs"] = {"input": ["cpu_op"]}
    if nested:
        ops.insert(1, {"name": "image_upload_0", "type": "upload", "inputs": {"input": ["image"]},
                       "tensor": {"name": input_name, "dims": dims_in, "dtype": in_dtype,
                                  "attrs": fx(in_fix)}})
        ops[2]["inputs"] = {"input": ["image_upload_0"]}
        ops.insert(4, {"name": "quant_logits_download_0", "type": "download",
                       "inputs": {"input": ["quant_logits"]},
                       "tensor": {"name": output_name, "dims": [dims_in[0], classes],
                                  "dtype": "xint8", "attrs": fx(out_fix)}})
        ops[5]["inputs"] = {"input": ["quant_logits_download_0"]}
        ops[3]["tensor"] = dict(ops[3]["tensor"], name=output_name + "_inner")
    dpu_attrs = {"device": "DPU",
                 "emulated_compute": {"kind": compute, "model": str(q_h5 or "")}}
    if workload is not None:
        dpu_attrs["workload"] = Typed("uint64", int(workload))
    if fingerprint is not None:
        dpu_attrs["dpu_fingerprint"] = Typed("uint64", int(fingerprint))
        dpu_attrs["dpu_name"] = f"DPUCZDX8G_ISA1_B4096_{int(fingerprint):016x}"
    if dpu_subgraphs == 1 and nested:
        middle = [{"name": "subgraph_quant_conv1", "attrs": dpu_attrs, "children": [
            {"name": "subgraph_image_upload_0", "ops": ["image_upload_0"]},
            {"name": "subgraph_quant_conv1", "ops": ["quant_conv1", "quant_logits"]},
            {"name": "subgraph_quant_logits_download_0", "ops": ["quant_logits_download_0"]}]}]
    elif dpu_subgraphs == 1:
        middle = [{"name": "subgraph_quant_conv1", "attrs": dpu_attrs,
                   "ops": ["quant_conv1", "quant_logits"]}]
    elif dpu_subgraphs == 0:
        middle = [{"name": "subgraph_quant_conv1", "attrs": {"device": "CPU"},
                   "ops": ["quant_conv1", "quant_logits"]}]
    else:
        middle = [{"name": f"subgraph_{op}", "attrs": dict(dpu_attrs), "ops": [op]}
                  for op in ("quant_conv1", "quant_logits")]
        if cpu_between:
            middle.insert(1, {"name": "subgraph_cpu_op", "attrs": {"device": "CPU"},
                              "ops": ["cpu_op"]})
        middle += [{"name": f"subgraph_extra{k}", "attrs": dict(dpu_attrs), "ops": []}
                   for k in range(dpu_subgraphs - 2)]
    root = {"name": "root", "attrs": {},
            "children": [{"name": "subgraph_image", "attrs": {"device": "USER"},
                          "ops": ["image"]},
                         *middle,
                         {"name": "subgraph_logits", "attrs": {"device": "CPU"},
                          "ops": ["logits"]}]}
    return build_graph(name, ops, root, OP_DEFS)


def write_emulated_xmodel(path, **kw):
    """Serialize emulated_graph(**kw) to `path` (a protobuf file, like the real .xmodel)."""
    data = emulated_graph(**kw).SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    return path
