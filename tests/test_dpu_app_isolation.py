"""dpu_app/ is copied to the board alone: it may import only the standard library, numpy,
cv2, and (in the vart backend) xir/vart, plus its own modules (relative imports or
`dpu_app.*`). The toolchain may import the app; the app never imports the toolchain."""
import ast
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "dpu_app"
ALLOWED_THIRD_PARTY = {"numpy", "cv2", "vart", "xir"}
# host-only backends, imported lazily and only on a PC (never on the board)
HOST_ONLY = {"tensorflow", "vitis_quantizer", "tensorflow_model_optimization", "absl"}


def imports_of(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def test_dpu_app_imports_nothing_from_the_repo():
    stdlib = set(sys.stdlib_module_names)
    ok = stdlib | ALLOWED_THIRD_PARTY | HOST_ONLY | {"__future__", "dpu_app"}
    bad = [f"{p.name}: import {n}" for p in APP.glob("*.py") for n in imports_of(p)
           if n.split(".")[0] not in ok]
    assert not bad, bad


def test_the_check_sees_an_upward_import(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("from toolchain.config import load_config\nimport numpy\nfrom . import y\n")
    assert imports_of(p) == ["toolchain.config", "numpy"]
