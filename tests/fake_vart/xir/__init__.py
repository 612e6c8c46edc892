"""Emulation of the XIR Python API (module `xir`): the one fake xir of the test suite.

It reads real .xmodel bytes: a protobuf `serial_v2.Graph` (the schema and its sources are in
xmodel_pb.py), parsed with google.protobuf, then turned into ops, tensors and a subgraph tree
the way xir::v2::Serialize::read does. The tests write their xmodels with the same schema
(tests/vart_emulation.py: write_emulated_xmodel), so what the app and the compile stage read
went through a real serialize/parse round trip, and a file that is not an xmodel is refused by
the protobuf parser, not by a marker this emulation invented.

API kept from the binding (Vitis-AI src/vai_runtime/xir/src/python/wrapper/wrapper.cpp):
  Graph.deserialize(fname) (static); Graph.get_name(), .get_root_subgraph(), .get_ops(),
    .get_op(name), .get_tensor(name), .has_attr/.get_attr/.get_attrs
  Subgraph.get_name(), .is_root, .is_leaf (properties), .has_attr/.get_attr/.get_attrs,
    .get_children() (a set), .get_children_num(), .toposort_child_subgraph() (a list),
    .get_input_tensors() / .get_output_tensors() (SETS), .get_ops(), .get_op_num(),
    .get_parent(), .get_graph()
  Tensor.name, .dims (a fresh list), .ndim, .dtype ("xint8": DataType::to_string lower-cased),
    .producer, .has_attr/.get_attr/.get_attrs, .get_element_num(), .get_data_size()
  Op.get_name(), .get_type(), .get_output_tensor(), .get_input_ops(), .has_attr/.get_attr

What happens on a fault, as in the real library:
  * the file is missing, shorter than 4 bytes, or not a serial_v2 protobuf: the real code
    CHECKs / UNI_LOG_FATAL(XIR_READ_PB_FAILURE), i.e. glog LOG(FATAL), which ABORTS the process
    (UniLog's failure function calls abort(); a user report of the line: Vitis-AI-Tutorials
    #122). No Python `except` runs. Here that is `fatal()` (fake_vart/_fatal.py): it prints
    the glog line and raises EmulatedAbort, a BaseException that `except Exception` does not
    catch; with FAKE_VART_ABORT=1 it really aborts (for tests that run the app as a process).
  * get_attr of a missing attribute: the C++ side fails a CHECK (abort as well): here
    EmulatedAbort too, so code must call has_attr first.
  * ELF xmodels (Vitis AI 1.x) go through elf2xir in the real library: not emulated (fatal).
"""
from __future__ import annotations

from google.protobuf.message import DecodeError

from _fatal import EmulatedAbort, fatal  # noqa: F401  (re-exported for tests)

import xmodel_pb as pb

EMULATED = True
# the DataType enum of the binding
DataType = type("DataType", (), {n: i for i, n in enumerate(pb.DATA_TYPES)})


def _attrs_of(pb_map) -> dict:
    return {k: pb.get_attr(v) for k, v in pb_map.items()}


class _HasAttrs:
    _attrs: dict
    _what: str

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def get_attr(self, name: str):
        if name not in self._attrs:
            fatal("attrs_imp.cpp", f"[XIR_UNDEFINED_ATTR][Undefined attribute!] {self._what} "
                  f"has no attribute {name!r}")
        return self._attrs[name]

    def get_attrs(self) -> dict:
        return dict(self._attrs)


class Tensor(_HasAttrs):
    def __init__(self, msg, producer=None):
        self._name = msg.tensor_name
        self._dims = [int(d) for d in msg.tensor_dim]
        self._dtype = pb.data_type_name(msg.data_type, msg.tensor_bit_width)
        self._bits = int(msg.tensor_bit_width)
        self._attrs = _attrs_of(msg.tensor_attr)
        self._producer = producer
        self._what = f"tensor {self._name}"

    name = property(lambda self: self._name)
    dims = property(lambda self: list(self._dims))              # a fresh list, like pybind
    ndim = property(lambda self: len(self._dims))
    dtype = property(lambda self: self._dtype)
    producer = property(lambda self: self._producer)

    def get_element_num(self) -> int:
        n = 1
        for d in self._dims:
            n *= d
        return n

    def get_data_size(self) -> int:
        return self.get_element_num() * max(1, self._bits // 8)

    def __repr__(self):
        return f"<xir.Tensor named '{self._name}'>"


class Op(_HasAttrs):
    def __init__(self, msg, graph):
        self._name, self._type, self._graph = msg.op_name, msg.op_type, graph
        self._attrs = _attrs_of(msg.op_attr)
        self._what = f"op {self._name}"
        self._inputs = {}
        for arg in msg.args:
            ops = []
            for src in arg.arg_ops:
                if src not in graph._ops:
                    fatal("graph_imp.cpp", f"emulation: op {self._name} reads {src}, which is "
                          f"not defined before it (the real graph does not load either)")
                ops.append(graph._ops[src])
            self._inputs[arg.arg_name] = ops
        self._output = Tensor(msg.output_tensor, producer=self)

    def get_name(self) -> str:
        return self._name

    def get_type(self) -> str:
        return self._type

    def get_output_tensor(self) -> Tensor:
        return self._output

    def get_input_ops(self) -> dict:
        return {k: list(v) for k, v in self._inputs.items()}

    def get_input_tensors(self) -> list:
        return [o.get_output_tensor() for ops in self._inputs.values() for o in ops]

    def get_graph(self):
        return self._graph

    def __repr__(self):
        return f"<xir.Op named '{self._name}'>"


class Subgraph(_HasAttrs):
    def __init__(self, msg, graph, parent=None):
        self._name, self._graph, self._parent = msg.subgraph_name, graph, parent
        self._attrs = _attrs_of(msg.subg_attr)
        self._what = f"subgraph {self._name}"
        self._children = [Subgraph(c, graph, self) for c in msg.subg_child]
        self._own_ops = []
        for name in msg.op_name:
            if name not in graph._ops:
                fatal("subgraph_imp.cpp", f"[XIR_OP_NOT_EXIST] subgraph {self._name} names "
                      f"op {name}, which the graph does not have")
            self._own_ops.append(graph._ops[name])

    def get_name(self) -> str:
        return self._name

    @property
    def is_root(self) -> bool:
        return self._parent is None

    @property
    def is_leaf(self) -> bool:
        return not self._children

    def get_parent(self):
        return self._parent

    def get_graph(self):
        return self._graph

    def get_children(self) -> set:
        return set(self._children)

    def get_children_num(self) -> int:
        return len(self._children)

    def toposort_child_subgraph(self) -> list:
        return list(self._children)                 # written in topological order

    def get_ops(self) -> set:
        if self.is_leaf:
            return set(self._own_ops)
        return set().union(*(c.get_ops() for c in self._children))

    def get_op_num(self) -> int:
        return len(self.get_ops())

    def get_input_tensors(self) -> set:
        """Tensors made outside this subgraph and read inside it (xir's definition)."""
        mine = self.get_ops()
        return {t for op in mine for t in op.get_input_tensors() if t.producer not in mine}

    def get_output_tensors(self) -> set:
        """Tensors made inside and read outside, or read by nobody (graph outputs)."""
        mine = self.get_ops()
        readers = {}
        for op in self._graph._ops.values():
            for t in op.get_input_tensors():
                readers.setdefault(t.name, []).append(op)
        out = set()
        for op in mine:
            t = op.get_output_tensor()
            users = readers.get(t.name, [])
            if not users or any(u not in mine for u in users):
                out.add(t)
        return out

    def __repr__(self):
        return f"<xir.Subgraph named '{self._name}'>"


class Graph(_HasAttrs):
    def __init__(self, msg, path: str):
        self._name = msg.graph_name
        self._what = f"graph {self._name}"
        self.path = path
        self._ops: dict = {}
        for node in msg.op_node:                       # topological order, as written
            if node.op_name in self._ops:
                fatal("graph_imp.cpp", f"[XIR_MULTI_DEFINED_OP] op {node.op_name} twice")
            self._ops[node.op_name] = Op(node, self)
        self._attrs = _attrs_of(msg.graph_attr)
        self._root = Subgraph(msg.subg_root, self)
        if self._root.is_leaf and not msg.subg_root.op_name:
            self._root._own_ops = list(self._ops.values())        # no partition saved

    @staticmethod
    def deserialize(fname: str) -> "Graph":
        """xir::Graph::deserialize: is_elf() reads 4 bytes under a CHECK, then
        v2::Serialize::read parses the whole file as serial_v2.Graph."""
        try:
            with open(fname, "rb") as f:
                data = f.read()
        except OSError:
            data = None
        if data is None or len(data) < 4:
            fatal("graph.cpp", f"Check failed: std::ifstream(filename).read(&magic[0], "
                  f"magic.size()).good() read fail! filename={fname}")
        if data[:4] == b"\x7fELF":
            fatal("elf2xir.cpp", f"emulation: ELF xmodels (Vitis AI 1.x) are not emulated: "
                  f"{fname}")
        msg = pb.Graph()
        try:
            msg.ParseFromString(data)
        except (DecodeError, RuntimeError, ValueError):
            fatal("serialize_v2.cpp", f"[UNILOG][FATAL][XIR_READ_PB_FAILURE][failed to "
                  f"read pb file] file = {fname}")
        return Graph(msg, fname)

    def get_name(self) -> str:
        return self._name

    def get_root_subgraph(self) -> Subgraph:
        return self._root

    def get_ops(self) -> set:
        return set(self._ops.values())

    def get_op(self, name: str):
        return self._ops.get(name)

    def get_op_num(self) -> int:
        return len(self._ops)

    def get_tensor(self, name: str):
        for op in self._ops.values():
            if op.get_output_tensor().name == name:
                return op.get_output_tensor()
        return None

    def toposort(self) -> list:
        return list(self._ops.values())

    def __repr__(self):
        return f"<xir.Graph named '{self._name}'>"


def read_bytes_as_graph(data: bytes, name: str = "<bytes>") -> Graph:
    """deserialize_from_string (the binding has no Python name for it; tests use it)."""
    msg = pb.Graph()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        fatal("serialize_v2.cpp", "[XIR_READ_PB_FAILURE] fail to generate pb struct "
              "from string.")
    return Graph(msg, name)


__all__ = ["Graph", "Subgraph", "Tensor", "Op", "DataType", "EmulatedAbort", "EMULATED"]
