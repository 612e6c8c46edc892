"""Code that runs in the Vitis AI container (Python 3.8 TF2 env) or on the board must parse
and import there: no 3.9+ syntax, no evaluated PEP 585/604 annotations."""
import ast
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTAINER_SIDE = ["toolchain", "model", "quantize", "compile", "dpu_app"]


def py_files():
    for d in CONTAINER_SIDE:
        yield from sorted((REPO / d).rglob("*.py"))


@pytest.mark.parametrize("path", list(py_files()), ids=lambda p: str(p.relative_to(REPO)))
def test_parses_as_python_3_8(path):
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


@pytest.mark.skipif(shutil.which("python3.8") is None, reason="no python3.8 on this machine")
def test_config_loads_under_python_3_8():
    r = subprocess.run(["python3.8", "-c", "import yaml"], capture_output=True)
    if r.returncode != 0:
        pytest.skip("python3.8 has no PyYAML")
    r = subprocess.run(["python3.8", "-c", "from toolchain.config import load_config; "
                        "c = load_config(None, ['compile.fingerprint=0x101000056010407']); "
                        "print(c.compile.fingerprint)"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0x101000056010407"
