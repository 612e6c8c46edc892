"""Slow checks (make test-all / pytest -m slow): the default config, full size."""
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_default_config_reaches_the_accuracy_target(tmp_path, repo_root):
    r = subprocess.run([sys.executable, "-m", "toolchain", "train", "--build-dir", str(tmp_path),
                        "--set", "train.progress=none", "--set", "runner=host"],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert m["test_images"] == 7172
    assert m["test_accuracy"] >= 0.995, m["test_accuracy"]
