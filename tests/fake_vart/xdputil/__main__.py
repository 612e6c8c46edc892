"""`python3 -m xdputil query` on the emulated board: prints the real capture of a Vitis AI 3.0
board (tests/fixtures/board/xdputil_query_zcu102_vai3.0.json: its glog lines on stderr, its
JSON on stdout), with the DPU fingerprint set to FAKE_BOARD_FINGERPRINT when that is given, so
that the app's fingerprint check and the fake vart's agree on one board."""
import json
import os
import sys
from pathlib import Path

CAPTURE = Path(__file__).resolve().parents[2] / "fixtures" / "board" / \
    "xdputil_query_zcu102_vai3.0.json"

if sys.argv[1:] != ["query"]:
    sys.stderr.write("emulated xdputil: only 'query' is emulated\n")
    sys.exit(1)
cap = json.loads(CAPTURE.read_text())
out = cap["stdout"]
fp = os.environ.get("FAKE_BOARD_FINGERPRINT")
if fp:
    out = out.replace('"fingerprint":"0x101000056010407"', f'"fingerprint":"{fp}"')
sys.stderr.write(cap["stderr"])
sys.stdout.write(out)
sys.exit(int(cap.get("exit_code") or 0))
