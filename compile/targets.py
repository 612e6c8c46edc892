"""DPU targets: which arch.json the compiler gets, and which fingerprint the board expects.

The board refuses an xmodel whose fingerprint differs from its DPU's ("CHECK fingerprint
fail! model_fingerprint ... is un-matched with actual dpu_fingerprint ..."), so the compile
stage checks the fingerprint the compiler reports against this table and fails loudly on a
mismatch (switch off with compile.check_fingerprint=false, or compile for the exact board
with compile.board=custom compile.fingerprint=<what `xdputil query` prints on the board>).

Sources:
- arch.json location `/opt/vitis_ai/compiler/arch/DPUCZDX8G/<BOARD>/arch.json`, BOARD in
  ZCU102, ZCU104, KV260: Vitis AI 3.x images; Vitis-AI-Tutorials compile scripts.
- ZCU104 / ZCU102 / KV260 images carry DPUCZDX8G_ISA1_B4096 (UG1354, DPU-PYNQ prj_config;
  a KV260 compile log prints "Target architecture: DPUCZDX8G_ISA1_B4096_..." in
  Vitis-AI-Tutorials PyTorch-ResNet18).
- 0x101000056010407 for ISA1_B4096 with the 3.0 board images (3.5 reuses them): the board
  reports it in https://github.com/Xilinx/Vitis-AI/issues/1195 and `xir subgraph` shows it in
  https://github.com/Xilinx/Vitis-AI/issues/1214; fingerprint failures: Vitis-AI #263, #975,
  #1072, Vitis-AI-Tutorials #117.
- 0x101000016010407 for 2.5-era images: `xdputil query` on the official 2.5 KV260 image,
  copied from a public serial-console log (tests/fixtures/board/, with its source).
- A custom target is an arch.json holding only {"fingerprint": "0x..."} (a KV260 guide
  compiles with exactly that after reading `xdputil query`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from dpu_app.dpu import expected_fingerprint as _app_expected
from toolchain.errors import ConfigError, UserError

DPU_B4096 = "DPUCZDX8G_ISA1_B4096"


@dataclass(frozen=True)
class Board:
    key: str          # config value (compile.board)
    arch_name: str    # folder under <arch_dir>
    dpu: str          # DPU target name the board image carries


BOARDS: Dict[str, Board] = {
    "zcu104": Board("zcu104", "ZCU104", DPU_B4096),
    "zcu102": Board("zcu102", "ZCU102", DPU_B4096),
    "kv260": Board("kv260", "KV260", DPU_B4096),
}


_FP_RE = re.compile(r"^0x[0-9a-f]{1,16}$")


def normalize_fingerprint(value, key: str = "compile.fingerprint") -> str:
    """'0x...' hex, at most 64 bits, not zero -> canonical lower-case '0x...' without padding.
    Anything else is a ConfigError naming the key."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = hex(value)
    elif isinstance(value, str):
        text = value.strip().lower()
    else:
        raise ConfigError(f"config key '{key}': expected a hex string like 0x101000056010407, "
                          f"got {value!r}")
    if not _FP_RE.match(text) or int(text, 16) == 0:
        raise ConfigError(f"config key '{key}': {value!r} is not a DPU fingerprint: expected "
                          f"0x followed by 1-16 hex digits, not zero (the board prints its own "
                          f"with `xdputil query`, e.g. 0x101000056010407)")
    return hex(int(text, 16))


def expected_fingerprint(dpu: str, vitis_ai_version: str) -> Optional[str]:
    """The known fingerprint for a DPU target and release ('3.5', '3.5.0', ...), or None
    (the one table is the app's: dpu_app/dpu.py)."""
    fp = _app_expected(dpu, vitis_ai_version)
    return None if fp is None else hex(fp)


@dataclass(frozen=True)
class Target:
    board: str                 # zcu104 | zcu102 | kv260 | custom
    arch_json: Path            # what -a gets
    dpu: Optional[str]         # expected DPU target name (None for custom: the compiler says)
    fingerprint: Optional[str]  # expected fingerprint (None: unknown, cannot check)
    custom: bool = False


def validate(ccfg) -> Optional[str]:
    """Check board/fingerprint without touching files; the normalized custom fingerprint."""
    if ccfg.board == "custom":
        if ccfg.fingerprint is None:
            raise ConfigError("compile.board=custom needs compile.fingerprint=0x... (run "
                              "`xdputil query` on the board and copy its DPU fingerprint)")
        return normalize_fingerprint(ccfg.fingerprint)
    if ccfg.fingerprint is not None:
        raise ConfigError(f"compile.fingerprint is only used with compile.board=custom "
                          f"(board is {ccfg.board}): drop it, or set compile.board=custom")
    return None


def resolve_target(ccfg, stage_dir: Path) -> Target:
    """Pick the arch.json for the configured board. For `custom`, write
    `{"fingerprint": ...}` to `<stage_dir>/arch.json` (validated first)."""
    fp = validate(ccfg)
    if ccfg.board == "custom":
        arch = Path(stage_dir) / "arch.json"
        arch.parent.mkdir(parents=True, exist_ok=True)
        arch.write_text(json.dumps({"fingerprint": fp}) + "\n")
        return Target("custom", arch, None, fp, custom=True)
    board = BOARDS[ccfg.board]
    arch = Path(ccfg.arch_dir) / board.arch_name / "arch.json"
    if not arch.is_file():
        root = Path(ccfg.arch_dir)
        have = sorted(p.name for p in root.iterdir() if (p / "arch.json").is_file()) \
            if root.is_dir() else []
        where = (f"{root} has: {', '.join(have)}" if have else
                 f"{root} does not exist or holds no <BOARD>/arch.json")
        raise UserError(f"no arch.json for {board.arch_name} at {arch} ({where}); set "
                        f"compile.arch_dir to the image's DPUCZDX8G arch folder, or use "
                        f"compile.board=custom with the board's fingerprint")
    return Target(board.key, arch, board.dpu,
                  expected_fingerprint(board.dpu, ccfg.vitis_ai_version))


def split_target_arch(arch: str) -> Tuple[str, Optional[str]]:
    """'DPUCZDX8G_ISA1_B4096_0101000056010407' -> ('DPUCZDX8G_ISA1_B4096', '0x101000056010407').
    A name without a 16-hex-digit suffix (older releases) -> (name, None)."""
    head, _, tail = arch.rpartition("_")
    if head and re.fullmatch(r"[0-9a-fA-F]{16}", tail):
        return head, hex(int(tail, 16))
    return arch, None
