"""What the app knows about the board's DPU: fingerprints, and `xdputil query`.

The board refuses an xmodel whose DPU fingerprint differs from its own, and VART does so by
aborting the process (SIGABRT, exit status 134) before any Python `except` runs. So the app
compares the xmodel's fingerprint with the board's *before* it creates a runner, and the
toolchain compares them before it deploys (toolchain -> this module; one table).

Sources: the board prints 0x101000056010407 for DPUCZDX8G_ISA1_B4096 on the Vitis AI 3.0 image
(Vitis-AI issue #1195; `xir subgraph` shows it in #1214), which 3.5 reuses; 2.5-era images
report 0x101000016010407; fingerprint failures: Vitis-AI #263, #975, #1072, Tutorials #117.
Real `xdputil query` captures are in tests/fixtures/board/.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass

# fingerprint -> (DPU target, Vitis AI releases whose board images carry it, description)
FINGERPRINTS = {
    0x101000056010407: ("DPUCZDX8G_ISA1_B4096", ("3.0", "3.5"),
                        "DPUCZDX8G_ISA1_B4096 of the Vitis AI 3.0 board images, which 3.5 "
                        "reuses"),
    0x101000016010407: ("DPUCZDX8G_ISA1_B4096", ("2.5",),
                        "DPUCZDX8G_ISA1_B4096 of Vitis AI 2.5-era board images"),
    0x1000020F6014407: ("DPUCZDX8G_ISA0_B4096_MAX_BG2", ("1.4", "2.0"),
                        "DPUCZDX8G_ISA0_B4096_MAX_BG2 of Vitis AI 1.x/2.0-era board images"),
    0x101000016010406: ("DPUCZDX8G_ISA1_B3136", ("2.5",),
                        "DPUCZDX8G_ISA1_B3136 of Vitis AI 2.5-era Kria images"),
}
# The 3.0 image's /usr/bin/xdputil is a shell wrapper around `python3 -m xdputil` (Vitis-AI
# issue #1215); older images only had the module (VART README: "obtain fingerprint of DPU:
# python3 -m xdputil query"), so fall back to it.
XDPUTIL_QUERY = ("if command -v xdputil >/dev/null 2>&1; then xdputil query; "
                 "else python3 -m xdputil query; fi")


def expected_fingerprint(dpu: str, vitis_ai_version: str) -> int | None:
    """The fingerprint board images of a release carry for a DPU target ('3.5.0' -> '3.5')."""
    short = ".".join(str(vitis_ai_version).split(".")[:2])
    for fp, (target, releases, _) in FINGERPRINTS.items():
        if target == dpu and short in releases:
            return fp
    return None


def describe_fingerprint(fp: int) -> str:
    entry = FINGERPRINTS.get(fp)
    return entry[2] if entry else "a DPU configuration this toolchain does not know " \
                                  "(custom hardware?)"


@dataclass
class DpuInfo:
    fingerprints: list        # one per DPU core, in cu order
    archs: list               # "DPUCZDX8G_ISA1_B4096", ...
    ip_version: str | None    # "v4.1.0"
    vai_version: str | None   # "3.0.0" from libvart-runner.so's version string
    raw: dict


def json_object(text: str) -> dict | None:
    """The first JSON object in text (stdout may carry log lines around it)."""
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = dec.raw_decode(text, i)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def to_int(fp) -> int | None:
    try:
        return int(str(fp).strip(), 16) if isinstance(fp, str) else int(fp)
    except (TypeError, ValueError):
        return None


def parse_xdputil_query(text: str) -> DpuInfo:
    """Parse `xdputil query` output (Vitis AI 2.5/3.0 layout: "DPU IP Spec", "VAI Version",
    "kernels": [{"DPU Arch", "fingerprint", "IP Type", "cu_name", ...}]). Kernels that are not
    a DPU (fingerprint 0x0 / empty "DPU Arch", e.g. the softmax or pre-processing CUs) are
    skipped. Raises ValueError when there is no JSON or no DPU kernel."""
    obj = json_object(text or "")
    if obj is None:
        raise ValueError("no JSON object in the output")
    fps, archs = [], []
    for k in obj.get("kernels") or []:
        if not isinstance(k, dict):
            continue
        fp = to_int(k.get("fingerprint"))
        if not fp or (k.get("IP Type") not in (None, "DPU")) or not k.get("DPU Arch", "x"):
            continue
        fps.append(fp)
        archs.append(str(k.get("DPU Arch") or ""))
    if not fps:
        raise ValueError("no DPU kernel with a fingerprint in the output")
    spec = obj.get("DPU IP Spec") or {}
    vart = str((obj.get("VAI Version") or {}).get("libvart-runner.so", ""))
    m = re.search(r"Version:\s*(\d+\.\d+(?:\.\d+)?)", vart)
    return DpuInfo(fps, archs, spec.get("IP version"), m.group(1) if m else None, obj)


def local_dpu(timeout: float = 60.0) -> DpuInfo | None:
    """This board's DPU from `xdputil query`; None when xdputil is missing or says nothing
    usable (the caller then cannot check, and says so)."""
    if shutil.which("xdputil") is None and shutil.which("python3") is None:
        return None
    try:
        proc = subprocess.run(["sh", "-c", XDPUTIL_QUERY], capture_output=True, text=True,
                              timeout=timeout)
        return parse_xdputil_query(proc.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def xmodel_problem(path: str) -> str | None:
    """Why `path` cannot be a compiled xmodel, or None when it may be one.

    xir.Graph.deserialize does not raise on a file it cannot parse: it logs
    UNI_LOG_FATAL(XIR_READ_PB_FAILURE), glog's LOG(FATAL), which aborts the process (SIGABRT;
    Vitis-AI serialize_v2.cpp, UniLog.hpp). So look first, without protobuf (not on the board
    image): an .xmodel is one protobuf message (xir's serial_v2.Graph) whose top-level fields
    follow each other to the last byte, one of them the subgraph tree (field 10). A damaged
    copy (cut short, or another file renamed) fails this walk."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if data[:4] == b"\x7fELF":
        return None                      # a Vitis AI 1.x ELF xmodel: xir converts those itself
    n, pos, fields = len(data), 0, set()

    def varint(p):
        value = shift = 0
        while True:
            if p >= n:
                raise EOFError
            b = data[p]
            p += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value, p
            shift += 7
            if shift > 63:
                raise ValueError

    try:
        while pos < n:
            tag, pos = varint(pos)
            field, wire = tag >> 3, tag & 7
            if field == 0 or wire not in (0, 1, 2, 5):
                raise ValueError
            if wire == 0:
                _, pos = varint(pos)
            else:
                size, pos = (8, pos) if wire == 1 else (4, pos) if wire == 5 else varint(pos)
                pos += size
            if pos > n:
                raise EOFError
            fields.add((field, wire))
    except EOFError:
        return "it is cut short: the copy is incomplete"
    except ValueError:
        return "it is not a protobuf xmodel"
    if (10, 2) not in fields:
        return "it has no subgraphs: not a compiled xmodel"
    return None
