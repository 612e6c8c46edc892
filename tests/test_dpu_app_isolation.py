"""dpu_app/ is copied to the board alone: it may import only the standard library, numpy,
cv2, and (in the vart backend) xir/vart, plus its own modules."""
import ast
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "dpu_app"
ALLOWED_THIRD_PARTY = {"numpy", "cv2", "vart", "xir"}
# host-only backends, imported lazily and only on a PC (never on the board)
HOST_ONLY = {"tensorflow", "vitis_quantizer", "tensorflow_model_optimization", "absl"}


def test_dpu_app_imports_nothing_from_the_repo():
    own = {p.stem for p in APP.glob("*.py")}
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for path in APP.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top not in own | stdlib | ALLOWED_THIRD_PARTY | HOST_ONLY | {"__future__"}:
                    bad.append(f"{path.name}: import {n}")
    assert not bad, bad
