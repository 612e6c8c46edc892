"""Read the compiled xmodel's DPU subgraph with `xir` (only inside the Vitis AI image).

API as in the xir Python binding (Vitis-AI src/vai_runtime/xir/src/python/wrapper/wrapper.cpp)
and the VART examples:
    g = xir.Graph.deserialize(path)
    subs = g.get_root_subgraph().toposort_child_subgraph()
    dpu = [s for s in subs if s.has_attr("device") and s.get_attr("device").upper() == "DPU"]
    s.get_input_tensors() / s.get_output_tensors() -> tensors with .name .dims .dtype,
    t.get_attr("fix_point"); s.get_attr("dpu_fingerprint") (uint64), s.get_attr("dpu_name").

`xir` is imported only when an xmodel is read, so this module imports anywhere; tests pass a
fake module as `xir_module`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from dpu_app.dpu import xmodel_problem
from toolchain.errors import UserError


def _import_xir():
    try:
        import xir  # noqa: F401  (only in the Vitis AI image / on the board)
    except ImportError:
        raise UserError("reading the xmodel needs the `xir` Python module of the Vitis AI "
                        "image: run the compile stage in the container (make compile "
                        "RUNNER=docker, or python -m toolchain compile inside make shell)") \
            from None
    return xir


def _tensor_info(t) -> dict:
    if not t.has_attr("fix_point"):
        raise UserError(f"DPU tensor '{t.name}' has no fix_point attribute: the xmodel is not "
                        f"a quantized DPU graph")
    return {"name": t.name, "shape": [int(d) for d in t.dims], "dtype": str(t.dtype),
            "fix_point": int(t.get_attr("fix_point"))}


def _sorted(tensors) -> List:
    # the binding returns a set for subgraph tensors: order them by name for stable output
    return sorted(tensors, key=lambda t: t.name)


def read_dpu_io(path, xir_module=None) -> dict:
    """{'dpu_subgraphs', 'subgraphs', 'devices', 'input', 'output', 'dpu_fingerprint',
    'dpu_name'} of the single DPU subgraph of `path`. More than one DPU subgraph, or more
    than one input/output tensor, is a UserError (the app runs one runner, one in, one out)."""
    xir = xir_module or _import_xir()
    path = Path(path)
    why = xmodel_problem(str(path))        # xir aborts the process (glog FATAL) on a bad file
    if why:
        raise UserError(f"{path}: the compiled xmodel could not be read ({why}); see "
                        f"compile.log beside it and compile again")
    try:
        graph = xir.Graph.deserialize(str(path))
    except Exception as e:  # the binding raises plain RuntimeError for a bad file
        raise UserError(f"xir could not read {path}: {str(e).splitlines()[0] if str(e) else e}")
    subs = list(graph.get_root_subgraph().toposort_child_subgraph())
    devices = [s.get_attr("device").upper() if s.has_attr("device") else "?" for s in subs]
    dpu = [s for s, d in zip(subs, devices) if d == "DPU"]
    if len(dpu) != 1:
        raise UserError(f"{path.name} has {len(dpu)} DPU subgraphs (devices: "
                        f"{', '.join(devices) or 'none'}); the app needs exactly one")
    sub = dpu[0]
    ins, outs = _sorted(sub.get_input_tensors()), _sorted(sub.get_output_tensors())
    if len(ins) != 1 or len(outs) != 1:
        raise UserError(f"the DPU subgraph of {path.name} has {len(ins)} inputs and "
                        f"{len(outs)} outputs; the app expects one of each")
    fp: Optional[str] = None
    if sub.has_attr("dpu_fingerprint"):
        fp = hex(int(sub.get_attr("dpu_fingerprint")))
    name = str(sub.get_attr("dpu_name")) if sub.has_attr("dpu_name") else None
    return {"dpu_subgraphs": 1, "subgraphs": len(subs), "devices": devices,
            "input": _tensor_info(ins[0]), "output": _tensor_info(outs[0]),
            "dpu_fingerprint": fp, "dpu_name": name}
