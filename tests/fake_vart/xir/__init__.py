"""Emulation of the XIR Python API (module `xir`) for tests of dpu_app's vart backend.

Only what the app may use, with the real binding's shapes (Vitis AI 3.x
src/vai_runtime/xir/src/python/wrapper/wrapper.cpp):
  xir.Graph.deserialize(path) -> Graph; Graph.get_root_subgraph(), Graph.get_name()
  Subgraph.get_name(), .is_root, .is_leaf, .has_attr(name), .get_attr(name),
           .get_children(), .toposort_child_subgraph(), .get_input_tensors(), .get_output_tensors()
  Tensor.name, .dims (list of int), .ndim, .dtype ("xint8": lower-cased DataType string),
         .has_attr(name), .get_attr(name), .get_element_num(), .get_data_size()

An "xmodel" here is a JSON file written by tests/vart_emulation.py, not a real xmodel. Asking
for an attribute that does not exist raises (the real one aborts), so the app must check
has_attr first or know that the attribute is there.
"""
from __future__ import annotations

import json

EMULATED = True


class XirError(RuntimeError):
    pass


class Tensor:
    def __init__(self, spec: dict):
        self._name = spec["name"]
        self._dims = [int(d) for d in spec["dims"]]
        self._dtype = spec.get("dtype", "xint8")
        self._attrs = {}
        if "fix_point" in spec and spec["fix_point"] is not None:
            self._attrs["fix_point"] = int(spec["fix_point"])

    name = property(lambda self: self._name)
    dims = property(lambda self: list(self._dims))              # a fresh list, like pybind
    ndim = property(lambda self: len(self._dims))
    dtype = property(lambda self: self._dtype)

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def get_attr(self, name: str):
        if name not in self._attrs:
            raise XirError(f"[XIR_ATTR_UNDEFINED] tensor {self._name} has no attr {name}")
        return self._attrs[name]

    def get_element_num(self) -> int:
        n = 1
        for d in self._dims:
            n *= d
        return n

    def get_data_size(self) -> int:
        width = {"xint8": 1, "int8": 1, "xint16": 2, "float32": 4}.get(self._dtype, 1)
        return self.get_element_num() * width

    def __repr__(self):
        return f"<xir.Tensor named '{self._name}'>"


class Subgraph:
    def __init__(self, spec: dict, children=None, graph=None):
        self._name = spec.get("name", "root")
        self._attrs = {}
        if spec.get("device"):
            self._attrs["device"] = spec["device"]
        self._children = children or []
        self._graph = graph
        self.spec = spec                                         # for the vart emulation
        self._inputs = [Tensor(t) for t in spec.get("inputs", [])]
        self._outputs = [Tensor(t) for t in spec.get("outputs", [])]

    def get_name(self) -> str:
        return self._name

    @property
    def is_root(self) -> bool:
        return self._name == "root"

    @property
    def is_leaf(self) -> bool:
        return not self._children

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def get_attr(self, name: str):
        if name not in self._attrs:
            raise XirError(f"[XIR_ATTR_UNDEFINED] subgraph {self._name} has no attr {name}")
        return self._attrs[name]

    def get_children(self):
        return set(self._children)

    def get_children_num(self) -> int:
        return len(self._children)

    def toposort_child_subgraph(self):
        return list(self._children)

    def get_input_tensors(self):
        return set(self._inputs)

    def get_output_tensors(self):
        return set(self._outputs)

    def get_graph(self):
        return self._graph

    def __repr__(self):
        return f"<xir.Subgraph named '{self._name}'>"


class Graph:
    def __init__(self, data: dict, path: str):
        self._name = data.get("name", "graph")
        self.path = path
        kids = [Subgraph(s, graph=self) for s in data.get("subgraphs", [])]
        self._root = Subgraph({"name": "root"}, kids, graph=self)

    @staticmethod
    def deserialize(fname: str) -> "Graph":
        try:
            with open(fname, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise XirError(f"[XIR_PROTOBUF_FAILURE] cannot deserialize {fname}: {e}") from None
        if not isinstance(data, dict) or data.get("emulated_xmodel") != 1:
            raise XirError(f"[XIR_PROTOBUF_FAILURE] {fname} is not an (emulated) xmodel")
        return Graph(data, fname)

    def get_name(self) -> str:
        return self._name

    def get_root_subgraph(self) -> Subgraph:
        return self._root
