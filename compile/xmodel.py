"""Read a compiled .xmodel in pure Python, on any PC: no `xir`, no Vitis AI image, no protoc.

A compiled .xmodel (Vitis AI 1.3 and later, not the older ELF kind) is one protobuf message
`serial_v2.Graph`, written by xir::v2::Serialize. The schema is XIR's public
`graph_proto_v2.proto` (Vitis-AI, Apache-2.0: src/vai_runtime/xir/src/xir/graph/
graph_proto_v2.proto; the same text ships as src/vai_library/usefultools/src/
xir_graph_proto_v2.proto). The field numbers this reader relies on, from that file:

    Graph     { string graph_name = 1; repeated OPNode op_node = 5; SubGraph subg_root = 10;
                map<string, AttrValue> graph_attr = 11; repeated OpDef op_defs = 101; }
    OPNode    { string op_name = 1; string op_type = 2; map<string, AttrValue> op_attr = 3;
                repeated OpArg args = 4; Tensor output_tensor = 5; }
    OpArg     { string arg_name = 1; repeated string arg_ops = 2; }
    Tensor    { string tensor_name = 1; repeated uint32 tensor_dim = 2; int32 data_type = 5;
                int32 tensor_bit_width = 6; map<string, AttrValue> tensor_attr = 10; }
    SubGraph  { string subgraph_name = 1; repeated string op_name = 3;
                map<string, AttrValue> subg_attr = 5; repeated SubGraph subg_child = 10; }
    AttrValue { oneof value { bool 4; int32 5; uint32 6; int64 7; uint64 8; float 9; double 10;
                string 11; Bytes 12; BoolVec 13; Int32Vec 14; Uint32Vec 15; Int64Vec 16;
                Uint64Vec 17; FloatVec 18; DoubleVec 19; StringVec 20; BytesVec 21;
                MapString2{Int32 22, Uint32 23, Int64 24, Uint64 25, String 26, Bytes 27,
                Int32Vec 28, Uint32Vec 29, Int64Vec 30, Uint64Vec 31, StringVec 32} } }
    Bytes { bytes value = 1; }   <T>Vec { repeated T value = 1; }
    MapString2<T> { map<string, T> value = 1; }          (a map entry: key = 1, value = 2)

Tensor.data_type is xir::DataType::Type (xir/util/data_type.hpp): INT, UINT, XINT, XUINT,
FLOAT, BFLOAT, UNKNOWN = 0..6; the name is type + bit width ("xint8"), lower-cased as the
Python binding prints it.

What xir makes of it, mirrored here (src/vai_runtime/xir/src/xir/graph/subgraph_imp.cpp,
serialize_v2.cpp; VART's DPU runner takes its tensors from the same calls):
  * a subgraph's ops are its own `op_name` list when it is a leaf, else the union of its
    children's (newer compilers nest the DPU subgraph: upload / compute / download children);
  * get_input_tensors: the output tensors of ops *outside* the subgraph that feed an op inside;
  * get_output_tensors: the output tensors of ops inside that feed an op outside, or feed
    nothing at all; both sorted by tensor name (TensorLexicographicalOrder), which is the order
    `runner.get_input_tensors()` returns;
  * the root's children, in file order (the compiler writes them topologically sorted), carry
    the `device` attribute (USER, DPU, CPU); a DPU child carries `dpu_name`, `dpu_fingerprint`
    (uint64) and `workload` (operations per run, uint64); a tensor's `fix_point` is a tensor
    attribute.

The reader is bounded: it reads the file once and never allocates from a length the file
declares (every length is checked against the bytes that remain first), never recurses deeper
than MAX_DEPTH subgraph levels, and every loop advances through the file. Anything wrong is
one `XmodelError` (a UserError: `error: <file>: <what>: <fix>`, exit 2).
"""
from __future__ import annotations

import os
import re
import stat
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from toolchain.errors import UserError

MAX_DEPTH = 32                       # subgraph nesting; real models use 2-3 levels
MAX_FILE = 2 ** 31 - 1               # protobuf's own limit for one message
DATA_TYPES = ("INT", "UINT", "XINT", "XUINT", "FLOAT", "BFLOAT", "UNKNOWN")
FIX = "compile it again with vai_c for the board (make compile) or copy the file again"


class XmodelError(UserError):
    """The file cannot be read as a compiled xmodel: one line naming the file, what is wrong
    and the fix."""


class _Bad(Exception):
    """Damage found while walking the bytes (internal; becomes an XmodelError)."""

    def __init__(self, what: str, cut: bool = False):
        super().__init__(what)
        self.cut = cut


# ----------------------------------------------------------------------------- wire format
def _varint(data: bytes, pos: int, end: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end:
            raise _Bad(f"a number runs past the end of its message at byte {pos}",
                       cut=end == len(data))
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise _Bad(f"a number longer than 10 bytes at byte {pos}")


def _fields(data: bytes, start: int, end: int):
    """(field number, wire type, value) of one message in data[start:end]: value is an int
    for varint and fixed fields, a (start, end) pair for length-delimited ones. Groups (wire
    types 3, 4) are not in proto3 and are refused like any other damage."""
    pos = start
    while pos < end:
        at = pos
        tag, pos = _varint(data, pos, end)
        field, wire = tag >> 3, tag & 7
        if field == 0 or field > 536870911:
            raise _Bad(f"field number {field} at byte {at}")
        if wire == 0:
            value, pos = _varint(data, pos, end)
        elif wire == 2:
            size, pos = _varint(data, pos, end)
            if size > end - pos:
                if size > MAX_FILE:
                    raise _Bad(f"a field at byte {at} claims an absurd {size:,} bytes")
                if end == len(data):       # runs past the end of the file: cut short
                    raise _Bad(f"a field at byte {at} needs {size:,} bytes, the file has "
                               f"{end - pos:,} left", cut=True)
                raise _Bad(f"a field at byte {at} claims {size:,} bytes but its message has "
                           f"{end - pos:,} left")
            value, pos = (pos, pos + size), pos + size
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if n > end - pos:
                raise _Bad(f"a fixed-size field runs past the end at byte {at}",
                           cut=end == len(data))
            value = int.from_bytes(data[pos:pos + n], "little")
            pos += n
        else:
            raise _Bad(f"wire type {wire} (field {field}) at byte {at}: not proto3")
        yield field, wire, value


def _expect(wire: int, want: int, what: str) -> None:
    if wire != want:
        names = {0: "a number", 1: "8 bytes", 2: "a length-delimited value", 5: "4 bytes"}
        raise _Bad(f"{what} is {names.get(wire, wire)}, XIR's schema says "
                   f"{names.get(want, want)}")


def _text(data: bytes, wire: int, span, what: str) -> str:
    """A length-delimited field holding text."""
    _expect(wire, 2, what)
    return _str(data, span, what)


def _str(data: bytes, span, what: str) -> str:
    try:
        return data[span[0]:span[1]].decode("utf-8")
    except UnicodeDecodeError:
        raise _Bad(f"{what} is not UTF-8 text (byte {span[0]})") from None


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1                 # negative int32/int64 are 10-byte varints
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# AttrValue oneof: number -> (kind, decoder name)
_SCALAR_KINDS = {4: "bool", 5: "int32", 6: "uint32", 7: "int64", 8: "uint64", 9: "float",
                 10: "double", 11: "string"}
_VEC_KINDS = {13: "bool", 14: "int32", 15: "uint32", 16: "int64", 17: "uint64", 18: "float",
              19: "double", 20: "string", 21: "bytes"}
_MAP_KINDS = {22: "int32", 23: "uint32", 24: "int64", 25: "uint64", 26: "string",
              27: "bytes", 28: "int32_vec", 29: "uint32_vec", 30: "int64_vec",
              31: "uint64_vec", 32: "string_vec"}
_WIRE_OF = {"bool": 0, "int32": 0, "uint32": 0, "int64": 0, "uint64": 0, "float": 5,
            "double": 1, "string": 2, "bytes": 2}


def _scalar(data: bytes, kind: str, wire: int, value, what: str):
    _expect(wire, _WIRE_OF[kind], what)
    if kind == "bool":
        return bool(value)
    if kind in ("int32", "int64"):
        return _signed(value, 32 if kind == "int32" else 64)
    if kind in ("uint32", "uint64"):
        return value & ((1 << (32 if kind == "uint32" else 64)) - 1)
    if kind == "float":
        return struct.unpack("<f", value.to_bytes(4, "little"))[0]
    if kind == "double":
        return struct.unpack("<d", value.to_bytes(8, "little"))[0]
    if kind == "string":
        return _str(data, value, what)
    return _bytes_msg(data, value, what)                               # Bytes message


def _bytes_msg(data: bytes, span, what: str) -> memoryview:
    out = memoryview(b"")
    for f, w, v in _fields(data, *span):
        if f == 1:
            _expect(w, 2, what)
            out = memoryview(data)[v[0]:v[1]]                          # a view, not a copy
    return out


def _vector(data: bytes, span, kind: str, what: str) -> list:
    out = []
    for f, w, v in _fields(data, *span):
        if f != 1:
            continue
        if w == 2 and kind not in ("string", "bytes"):                 # packed
            width = {"float": 4, "double": 8}.get(kind)
            if width:
                if (v[1] - v[0]) % width:
                    raise _Bad(f"{what}: packed {kind}s of {v[1] - v[0]} bytes")
                fmt = "<%d%s" % ((v[1] - v[0]) // width, "f" if width == 4 else "d")
                out.extend(struct.unpack(fmt, data[v[0]:v[1]]))
            else:
                p = v[0]
                while p < v[1]:
                    x, p = _varint(data, p, v[1])
                    out.append(_scalar(data, kind, 0, x, what))
        elif kind == "bytes":
            out.append(_bytes_msg(data, v, what))
        else:
            out.append(_scalar(data, kind, w, v, what))
    return out


def _map_entry(data: bytes, span, what: str, value_fn):
    key, value = "", None
    for f, w, v in _fields(data, *span):
        if f == 1:
            key = _text(data, w, v, f"a key in {what}")
        elif f == 2:
            value = (w, v)
    return key, (value_fn(*value, key) if value is not None else None)


def _attr_value(data: bytes, wire: int, span, key: str):
    """The Python value of one serial_v2.AttrValue (the last oneof member wins, as in
    protobuf); an AttrValue with nothing set is None."""
    what = f"attribute '{key}'"
    _expect(wire, 2, what)
    result = None
    for f, w, v in _fields(data, *span):
        if f in _SCALAR_KINDS:
            result = _scalar(data, _SCALAR_KINDS[f], w, v, what)
        elif f == 12:
            _expect(w, 2, what)
            result = _bytes_msg(data, v, what)
        elif f in _VEC_KINDS:
            _expect(w, 2, what)
            result = _vector(data, v, _VEC_KINDS[f], what)
        elif f in _MAP_KINDS:
            _expect(w, 2, what)
            kind = _MAP_KINDS[f]
            result = {}

            def value_fn(ww, vv, k, kind=kind):
                if kind.endswith("_vec"):
                    _expect(ww, 2, what)
                    return _vector(data, vv, kind[:-4], what)
                if kind == "bytes":
                    _expect(ww, 2, what)
                    return _bytes_msg(data, vv, what)
                return _scalar(data, kind, ww, vv, what)
            for ef, ew, ev in _fields(data, *v):
                if ef == 1:
                    _expect(ew, 2, what)
                    k, val = _map_entry(data, ev, what, value_fn)
                    result[k] = val
    return result


def _attr_map(data: bytes, span, into: dict, what: str) -> None:
    key, value = _map_entry(data, span, what, lambda w, v, k: _attr_value(data, w, v, k))
    into[key] = value


# ----------------------------------------------------------------------------- the graph
class Tensor:
    __slots__ = ("name", "dims", "dtype", "attrs")

    def __init__(self, name: str, dims: List[int], dtype: str, attrs: dict):
        self.name, self.dims, self.dtype, self.attrs = name, dims, dtype, attrs

    def info(self) -> dict:
        fp = self.attrs.get("fix_point")
        return {"name": self.name, "shape": list(self.dims), "dtype": self.dtype,
                "fix_point": int(fp) if isinstance(fp, int) else None}


class Op:
    __slots__ = ("name", "type", "attrs", "inputs", "tensor")

    def __init__(self, name, type_, attrs, inputs, tensor):
        self.name, self.type, self.attrs, self.inputs, self.tensor = \
            name, type_, attrs, inputs, tensor

    def input_ops(self) -> List[str]:
        return [src for srcs in self.inputs.values() for src in srcs]


class Subgraph:
    __slots__ = ("name", "attrs", "own_ops", "children")

    def __init__(self, name, attrs, own_ops, children):
        self.name, self.attrs, self.own_ops, self.children = name, attrs, own_ops, children

    def ops(self) -> List[str]:
        """xir's get_ops(): a leaf's own ops, else its children's (in order, iteratively)."""
        out, stack = [], [self]
        while stack:
            s = stack.pop()
            if s.children:
                stack.extend(reversed(s.children))
            else:
                out.extend(s.own_ops)
        return out

    @property
    def device(self) -> str:
        d = self.attrs.get("device")
        return d.upper() if isinstance(d, str) and d else "?"


class Graph:
    def __init__(self, name, ops, root, attrs):
        self.name = name
        self.ops: "OrderedDict[str, Op]" = ops
        self.root: Subgraph = root
        self.attrs: dict = attrs
        self._fanout: Optional[Dict[str, List[str]]] = None

    def fanout(self) -> Dict[str, List[str]]:
        if self._fanout is None:
            fo: Dict[str, List[str]] = {n: [] for n in self.ops}
            for op in self.ops.values():
                for src in op.input_ops():
                    fo[src].append(op.name)
            self._fanout = fo
        return self._fanout

    def input_tensors(self, sub: Subgraph) -> List[Tensor]:
        """xir's Subgraph.get_sorted_input_tensors()."""
        inside = set(sub.ops())
        names = {src for n in inside for src in self.ops[n].input_ops() if src not in inside}
        return sorted((self.ops[n].tensor for n in names), key=lambda t: t.name)

    def output_tensors(self, sub: Subgraph) -> List[Tensor]:
        """xir's Subgraph.get_sorted_output_tensors()."""
        inside, fo = set(sub.ops()), self.fanout()
        names = {n for n in inside if not fo[n] or any(o not in inside for o in fo[n])}
        return sorted((self.ops[n].tensor for n in names), key=lambda t: t.name)


def _tensor(data: bytes, span, op_name: str) -> Tensor:
    what = f"the output tensor of op '{op_name}'"
    name, dims, dtype, bits, attrs = "", [], 6, 0, {}
    for f, w, v in _fields(data, *span):
        if f == 1:
            name = _text(data, w, v, f"{what}'s name")
        elif f == 2:
            if w == 2:                                            # packed uint32s
                p = v[0]
                while p < v[1]:
                    x, p = _varint(data, p, v[1])
                    dims.append(x & 0xFFFFFFFF)
            else:
                _expect(w, 0, f"{what}'s shape")
                dims.append(v & 0xFFFFFFFF)
        elif f == 5:
            _expect(w, 0, f"{what}'s data type")
            dtype = _signed(v, 32)
        elif f == 6:
            _expect(w, 0, f"{what}'s bit width")
            bits = _signed(v, 32)
        elif f == 10:
            _expect(w, 2, f"{what}'s attributes")
            _attr_map(data, v, attrs, f"{what}'s attributes")
    kind = DATA_TYPES[dtype] if 0 <= dtype < len(DATA_TYPES) else "UNKNOWN"
    return Tensor(name, dims, f"{kind}{bits}".lower(), attrs)


def _op(data: bytes, span, index: int) -> Op:
    name, type_, attrs, inputs, tensor = "", "", {}, OrderedDict(), None
    for f, w, v in _fields(data, *span):
        if f == 1:
            name = _text(data, w, v, f"the name of op #{index}")
        elif f == 2:
            type_ = _text(data, w, v, f"the type of op #{index}")
        elif f == 3:
            _expect(w, 2, f"the attributes of op #{index}")
            _attr_map(data, v, attrs, f"the attributes of op #{index}")
        elif f == 4:
            _expect(w, 2, f"an argument of op #{index}")
            arg, srcs = "", []
            for af, aw, av in _fields(data, *v):
                if af == 1:
                    arg = _text(data, aw, av, f"an argument name of op #{index}")
                elif af == 2:
                    srcs.append(_text(data, aw, av, f"an argument of op #{index}"))
            inputs.setdefault(arg, []).extend(srcs)
        elif f == 5:
            _expect(w, 2, f"the output tensor of op #{index}")
            tensor = (v, name)
    if not name:
        raise _Bad(f"op #{index} has no name")
    if tensor is None:
        raise _Bad(f"op '{name}' has no output tensor")
    return Op(name, type_, attrs, inputs, _tensor(data, tensor[0], name))


def _subgraph(data: bytes, span, depth: int) -> Subgraph:
    if depth > MAX_DEPTH:
        raise _Bad(f"subgraphs nested more than {MAX_DEPTH} deep")
    name, attrs, ops, children = "", {}, [], []
    for f, w, v in _fields(data, *span):
        if f == 1:
            name = _text(data, w, v, "a subgraph name")
        elif f == 3:
            ops.append(_text(data, w, v, f"an op name of subgraph '{name}'"))
        elif f == 5:
            _expect(w, 2, f"the attributes of subgraph '{name}'")
            _attr_map(data, v, attrs, f"the attributes of subgraph '{name}'")
        elif f == 10:
            _expect(w, 2, f"a child of subgraph '{name}'")
            children.append(_subgraph(data, v, depth + 1))
    return Subgraph(name, attrs, ops, children)


def parse(data: bytes) -> Graph:
    """The graph in `data` (the bytes of an .xmodel); _Bad on damage, ValueError when it is a
    well-formed protobuf that is not an XIR graph."""
    name, ops, root, attrs = "", OrderedDict(), None, {}
    for f, w, v in _fields(data, 0, len(data)):
        if f == 1:
            _expect(w, 2, "the graph name (field 1)")
            name = _str(data, v, "the graph name")
        elif f == 5:
            _expect(w, 2, "an op (field 5)")
            op = _op(data, v, len(ops))
            if op.name in ops:
                raise _Bad(f"two ops are named '{op.name}'")
            ops[op.name] = op
        elif f == 10:
            _expect(w, 2, "the subgraph tree (field 10)")
            root = _subgraph(data, v, 0)
        elif f == 11:
            _expect(w, 2, "a graph attribute (field 11)")
            _attr_map(data, v, attrs, "the graph attributes")
        elif f == 101:
            _expect(w, 2, "an op definition (field 101)")
            for _ in _fields(data, *v):                       # framing only; not needed here
                pass
    if root is None:
        raise ValueError("it has no subgraph tree (serial_v2.Graph field 10)")
    if not ops:
        raise ValueError("it has no ops (serial_v2.Graph field 5)")
    for op in ops.values():
        for src in op.input_ops():
            if src not in ops:
                raise ValueError(f"op '{op.name}' reads op '{src}', which the graph does not "
                                 f"have")
    seen = set()
    for n in root.ops():
        if n not in ops:
            raise ValueError(f"a subgraph lists op '{n}', which the graph does not have")
        if n in seen:
            raise ValueError(f"op '{n}' is in two subgraphs")
        seen.add(n)
    return Graph(name, ops, root, attrs)


def read(path) -> Graph:
    """The graph of the .xmodel at `path`, or one XmodelError naming the file and the fix."""
    path = Path(path)
    try:
        if path.is_dir():
            raise XmodelError(f"{path} is a folder, not an .xmodel file: give the file "
                              f"(e.g. build/compile/signnet.xmodel)")
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise XmodelError(f"{path} is not a regular file: give the .xmodel file "
                                  f"itself")
            if st.st_size > MAX_FILE:
                raise XmodelError(f"{path}: {st.st_size:,} bytes is more than protobuf (and "
                                  f"xir) can read in one message: not a compiled xmodel")
            data = f.read(st.st_size)          # the file's size, never a declared length
    except FileNotFoundError:
        raise XmodelError(f"{path} does not exist: give the path of a compiled .xmodel "
                          f"(make compile writes build/compile/<name>.xmodel)") from None
    except OSError as e:
        raise XmodelError(f"{path} cannot be read ({e.strerror or e}): check the path and "
                          f"its permissions") from None
    if not data:
        raise XmodelError(f"{path} is empty: {FIX}")
    if data[:4] == b"\x7fELF":
        raise XmodelError(f"{path} is an ELF xmodel of Vitis AI 1.2 or older, not the "
                          f"protobuf xmodel of Vitis AI 1.3+: compile it again with the Vitis "
                          f"AI 3.x image (make compile)")
    try:
        return parse(data)
    except _Bad as e:
        if e.cut:
            raise XmodelError(f"{path} is cut short ({len(data):,} bytes; {e}): the copy is "
                              f"incomplete; {FIX}") from None
        raise XmodelError(f"{path} is not a readable xmodel: not a protobuf in XIR's format "
                          f"({e}): {FIX}") from None
    except ValueError as e:
        raise XmodelError(f"{path} is a protobuf file but not a compiled XIR graph ({e}): "
                          f"give the .xmodel that vai_c wrote (build/compile/<name>.xmodel)") \
            from None
    except RecursionError:                     # cannot happen with MAX_DEPTH; belt and braces
        raise XmodelError(f"{path} is nested too deeply to be an xmodel: {FIX}") from None


# ----------------------------------------------------------------------------- what it means
CLOCK_MHZ = 300.0          # ZCU104 board image: DPUCZDX8G at 300 MHz (600 MHz DSP), UG1354


def peak_ops_per_cycle(dpu_name: Optional[str]) -> Optional[int]:
    """DPUCZDX8G sizes are named by their peak operations per clock cycle: B4096 = 4,096
    (UG1354: B512 ... B4096). None when the name does not say."""
    m = re.search(r"_B(\d+)(?:_|$)", dpu_name or "")
    return int(m.group(1)) if m else None


def _fingerprint_text(fp: Optional[int]) -> Optional[str]:
    return None if fp is None else hex(fp)


def summarize(graph: Graph, clock_mhz: float = CLOCK_MHZ) -> dict:
    """What decides whether a deploy will work: subgraphs in order, the DPU ones' target,
    fingerprint, tensors and cost, and what runs on the CPU between two DPU subgraphs."""
    from dpu_app.dpu import FINGERPRINTS
    children = graph.root.children
    subs, dpus = [], []
    for i, s in enumerate(children):
        names = s.ops()
        types = OrderedDict()
        for n in names:
            t = graph.ops[n].type
            types[t] = types.get(t, 0) + 1
        entry = {"index": i, "name": s.name, "device": s.device, "ops": len(names),
                 "op_types": dict(types)}
        subs.append(entry)
        if s.device != "DPU":
            continue
        fp = s.attrs.get("dpu_fingerprint")
        fp = fp if isinstance(fp, int) and not isinstance(fp, bool) else None
        known = FINGERPRINTS.get(fp) if fp is not None else None
        name = s.attrs.get("dpu_name") if isinstance(s.attrs.get("dpu_name"), str) else None
        work = s.attrs.get("workload")
        work = work if isinstance(work, int) and not isinstance(work, bool) else None
        opc = peak_ops_per_cycle(name)
        ms = (work / (opc * clock_mhz * 1e6) * 1e3) if work is not None and opc else None
        dpus.append({
            "index": i, "subgraph": s.name, "dpu_name": name,
            "fingerprint": _fingerprint_text(fp),
            "fingerprint_known": ({"target": known[0], "vitis_ai": list(known[1]),
                                   "what": known[2]} if known else None),
            "inputs": [t.info() for t in graph.input_tensors(s)],
            "outputs": [t.info() for t in graph.output_tensors(s)],
            "workload": work,
            "peak": {"ops_per_cycle": opc, "clock_mhz": clock_mhz,
                     "ms_per_run": ms} if opc else None,
        })
    between = []
    for a, b in zip(dpus, dpus[1:]):
        mid = [subs[k] for k in range(a["index"] + 1, b["index"])]
        between.append({"after": a["subgraph"], "before": b["subgraph"],
                        "subgraphs": [{"name": m["name"], "device": m["device"],
                                       "op_types": m["op_types"]} for m in mid]})
    return {"graph": graph.name, "subgraphs": subs, "dpu_subgraphs": len(dpus),
            "devices": [s["device"] for s in subs], "dpu": dpus, "between_dpu": between,
            "origin": graph.attrs.get("origin") if isinstance(graph.attrs.get("origin"), str)
            else None}


def describe(path, clock_mhz: float = CLOCK_MHZ) -> dict:
    """summarize(read(path)) plus the file; a graph with no DPU subgraph is an XmodelError."""
    path = Path(path)
    info = summarize(read(path), clock_mhz)
    if not info["subgraphs"]:
        raise XmodelError(f"{path} is an XIR graph that was never partitioned into device "
                          f"subgraphs (a quantizer's xmodel, not a compiled one): compile it "
                          f"with vai_c for the board (make compile)")
    if not info["dpu"]:
        raise XmodelError(f"{path} has no DPU subgraph (devices: "
                          f"{', '.join(info['devices'])}): nothing of it would run on the DPU; "
                          f"compile it with vai_c against the board's arch.json (make compile)")
    info = {"file": str(path), "bytes": path.stat().st_size, **info}
    return info


def read_dpu_io(path) -> dict:
    """{'dpu_subgraphs', 'subgraphs', 'devices', 'input', 'output', 'dpu_fingerprint',
    'dpu_name', 'workload'} of the single DPU subgraph of `path` (what the compile stage and
    the deploy manifest need). More than one DPU subgraph, or more than one input/output
    tensor, is a UserError (the app runs one runner, one in, one out)."""
    path = Path(path)
    info = describe(path)
    if len(info["dpu"]) != 1:
        raise UserError(f"{path.name} has {len(info['dpu'])} DPU subgraphs (devices: "
                        f"{', '.join(info['devices'])}); the app needs exactly one"
                        + _between_text(info))
    d = info["dpu"][0]
    if len(d["inputs"]) != 1 or len(d["outputs"]) != 1:
        raise UserError(f"the DPU subgraph of {path.name} has {len(d['inputs'])} inputs and "
                        f"{len(d['outputs'])} outputs; the app expects one of each")
    for t in (d["inputs"][0], d["outputs"][0]):
        if t["fix_point"] is None:
            raise UserError(f"DPU tensor '{t['name']}' has no fix_point attribute: the xmodel "
                            f"is not a quantized DPU graph")
    return {"dpu_subgraphs": 1, "subgraphs": len(info["subgraphs"]),
            "devices": info["devices"], "input": d["inputs"][0], "output": d["outputs"][0],
            "dpu_fingerprint": d["fingerprint"], "dpu_name": d["dpu_name"],
            "workload": d["workload"]}


def _between_text(info: dict) -> str:
    parts = []
    for b in info["between_dpu"]:
        ops = [f"{t}" for m in b["subgraphs"] for t in m["op_types"]]
        parts.append(", ".join(ops) or "nothing")
    return (f" (on the CPU between them: {'; '.join(parts)})" if parts else "")


# ----------------------------------------------------------------------------- for people
def _ops_text(types: dict) -> str:
    return ", ".join(t if n == 1 else f"{t} x{n}" for t, n in types.items()) or "no ops"


def _tensor_text(t: dict) -> str:
    fp = "no fix_point" if t["fix_point"] is None else f"fix_point {t['fix_point']}"
    return f"{t['name']} {t['shape']} {t['dtype']} {fp}"


def render(info: dict) -> str:
    """describe()'s answer as lines for a person."""
    subs = info["subgraphs"]
    out = [f"{Path(info['file']).name} ({info['bytes']:,} bytes): graph '{info['graph']}', "
           f"{len(subs)} subgraphs: {', '.join(info['devices'])}"]
    width = min(40, max(len(s["name"]) for s in subs))
    for s in subs:
        out.append(f"  #{s['index']} {s['device']:4s} {s['name']:{width}s}  {s['ops']} op"
                   f"{'s' if s['ops'] != 1 else ''}: {_ops_text(s['op_types'])}")
    for d in info["dpu"]:
        out.append(f"DPU subgraph #{d['index']} {d['subgraph']}:")
        out.append(f"  DPU:         {d['dpu_name'] or 'not named (no dpu_name attribute)'}")
        known = d["fingerprint_known"]
        if d["fingerprint"] is None:
            fp = "none recorded (no dpu_fingerprint attribute): the board cannot check it"
        elif known:
            fp = f"{d['fingerprint']} = {known['what']}"
        else:
            fp = f"{d['fingerprint']} (not in this toolchain's table: a custom DPU?)"
        out.append(f"  fingerprint: {fp}")
        for t in d["inputs"]:
            out.append(f"  input:       {_tensor_text(t)}")
        for t in d["outputs"]:
            out.append(f"  output:      {_tensor_text(t)}")
        w, peak = d["workload"], d["peak"]
        if w is None:
            out.append("  workload:    not recorded (no workload attribute)")
        elif peak:
            out.append(f"  workload:    {w:,} operations per run = {peak['ms_per_run']:.4g} ms "
                       f"at the peak of one {peak['ops_per_cycle']:,}-ops/cycle core at an "
                       f"assumed {peak['clock_mhz']:g} MHz (a lower bound: memory traffic and "
                       f"the CPU parts come on top)")
        else:
            out.append(f"  workload:    {w:,} operations per run (peak ops/cycle unknown for "
                       f"this DPU name)")
    n = info["dpu_subgraphs"]
    if n == 1:
        tail = [s["device"] for s in subs[info["dpu"][0]["index"] + 1:]]
        note = (" (the CPU subgraph after it converts the int8 output to float: normal)"
                if tail and set(tail) <= {"CPU"} else "")
        out.append(f"verdict: one DPU subgraph{note}: the app can run it with one runner")
    else:
        for b in info["between_dpu"]:
            mids = "; ".join(f"{m['device']} {m['name']} ({_ops_text(m['op_types'])})"
                             for m in b["subgraphs"]) or "nothing"
            out.append(f"between {b['after']} and {b['before']}: {mids}")
        out.append(f"verdict: split into {n} DPU subgraphs: every run goes DPU -> memory -> "
                   f"CPU -> DPU, one runner per DPU subgraph, and the CPU ops above run in "
                   f"software on the board's ARM cores (usually the slow part); this app runs "
                   f"one DPU runner and refuses it: remove or replace those layers (softmax, "
                   f"an unsupported op, Flatten->Dense; try model.head=gap) and compile again")
    return "\n".join(out)
