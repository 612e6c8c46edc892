"""What the Vitis AI compiler log says.

vai_c_tensorflow2 / vai_c_tensorflow / vai_c_xir print UNILOG lines (with or without a glog
prefix such as `I20231023 11:48:43.061691   116 compile_pass_manager.cpp:489] `):

    [UNILOG][INFO] Target architecture: DPUCZDX8G_ISA1_B2304_0101000016010405
    [UNILOG][INFO] Graph name: resnet50, with op num: 416
    [UNILOG][INFO] Total device subgraph number 3, DPU subgraph number 1
    [UNILOG][INFO] The compiled xmodel is saved to "/.../deploy.xmodel"
    [UNILOG][INFO] The compiled xmodel's md5sum is 351a68f8..., and has been saved to "..."

Real excerpts live in tests/fixtures/compile/ with their sources.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional

from .targets import split_target_arch

_SUBGRAPHS = re.compile(r"Total device subgraph number (\d+), DPU subgraph number (\d+)")
_TARGET = re.compile(r"Target architecture: (\S+)")
_GRAPH = re.compile(r"Graph name: (.+?), with op num: (\d+)")
_XMODEL = re.compile(r'The compiled xmodel is saved to "([^"]+)"')
_MD5 = re.compile(r"The compiled xmodel's md5sum is ([0-9a-fA-F]{32})")
_LOGDIR = re.compile(r'The compiler log will be dumped at "([^"]+)"')
_ERROR = re.compile(r"\[UNILOG\]\[(FATAL|ERROR)\]|^\s*(Traceback \(most recent call last\)|"
                    r"\w*Error: |\[ERROR\]|[EF]\d{4} )")
_WARNING = re.compile(r"\[UNILOG\]\[WARNING\]|^\s*W\d{4} ")


@dataclass
class CompileLog:
    total_subgraphs: Optional[int] = None
    dpu_subgraphs: Optional[int] = None
    target_arch: Optional[str] = None      # as printed, e.g. DPUCZDX8G_ISA1_B4096_0101000056010407
    target_name: Optional[str] = None      # DPUCZDX8G_ISA1_B4096
    fingerprint: Optional[str] = None      # 0x101000056010407 (None if the line has none)
    graph_name: Optional[str] = None
    op_num: Optional[int] = None
    xmodel: Optional[str] = None
    md5: Optional[str] = None
    compiler_log_dir: Optional[str] = None
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


def parse_log(text: str) -> CompileLog:
    """Parse a whole compiler log. When a line occurs several times, the last one wins."""
    out = CompileLog()
    for line in text.splitlines():
        m = _SUBGRAPHS.search(line)
        if m:
            out.total_subgraphs, out.dpu_subgraphs = int(m.group(1)), int(m.group(2))
            continue
        m = _TARGET.search(line)
        if m:
            out.target_arch = m.group(1)
            out.target_name, out.fingerprint = split_target_arch(m.group(1))
            continue
        m = _GRAPH.search(line)
        if m:
            out.graph_name, out.op_num = m.group(1), int(m.group(2))
            continue
        m = _XMODEL.search(line)
        if m:
            out.xmodel = m.group(1)
            continue
        m = _MD5.search(line)
        if m:
            out.md5 = m.group(1).lower()
            continue
        m = _LOGDIR.search(line)
        if m:
            out.compiler_log_dir = m.group(1)
            continue
        if _ERROR.search(line):
            out.errors.append(line.strip())
        elif _WARNING.search(line):
            out.warnings.append(line.strip())
    return out


def first_error(log: CompileLog, text: str, limit: int = 240) -> str:
    """The most telling line of a failed run, shortened to one line."""
    if log.errors:
        # the last exception line of a traceback says more than "Traceback (...)"
        cands = [e for e in log.errors if not e.startswith("Traceback")]
        line = (cands or log.errors)[-1]
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        line = lines[-1] if lines else "(no output)"
    return line if len(line) <= limit else line[:limit - 3] + "..."
