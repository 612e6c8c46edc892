#!/usr/bin/env bash
# Create the host virtualenv from the pinned lock, with no dependency resolution
# (an unpinned TF 2.12 install back-tracks through GBs of downloads).
# Usage: scripts/setup-venv.sh VENV_DIR [PYTHON]
set -euo pipefail
venv=${1:?usage: setup-venv.sh VENV_DIR [PYTHON]}
py=${2:-python3.11}
lock="$(cd "$(dirname "$0")/.." && pwd)/requirements/host-lock.txt"

if ! command -v "$py" >/dev/null 2>&1; then
  echo "error: $py not found: the toolchain needs Python 3.11 (TF 2.12 = Vitis AI 3.5's TF);" \
       "install it (Ubuntu 22.04/Debian 12: apt-get install python3.11 python3.11-venv; Ubuntu 20.04:" \
       "add-apt-repository ppa:deadsnakes/ppa first; or pyenv install 3.11) or pass PYTHON=/path/to/python3.11" >&2
  exit 2
fi
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$ver" != "3.11" ]; then
  echo "error: $py is Python $ver, the pinned lock needs 3.11: pass PYTHON=/path/to/python3.11" >&2
  exit 2
fi
# A half-made venv must not look finished: build it, check it, then write the stamp.
# Only ever delete a previous venv (or an empty dir), never whatever VENV= happens to name.
if [ -e "$venv" ] && [ ! -L "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
  echo "error: $venv exists and is not a Python venv; refusing to replace it: pass VENV=<another dir>" >&2
  exit 2
fi
rm -rf "$venv"
cleanup() { rc=$?; if [ $rc -ne 0 ]; then rm -rf "$venv"; echo "error: venv setup failed (exit $rc); nothing was kept, run 'make setup' again" >&2; fi; }
trap cleanup EXIT
echo "creating $venv with $py ($("$py" --version 2>&1)) from requirements/host-lock.txt"
if ! venv_out=$("$py" -m venv "$venv" 2>&1); then
  printf '%s\n' "$venv_out" | tail -3 >&2
  trap - EXIT; rm -rf "$venv"
  echo "error: $py cannot create a venv (no ensurepip): install python3.11-venv (apt-get install" \
       "python3.11-venv) and run 'make setup' again" >&2
  exit 2
fi
log="$venv/pip-install.log"
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-deps -r "$lock" >"$log" 2>&1; then
  grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -20 >&2
  echo "error: pip could not install requirements/host-lock.txt (see above); check the network" \
       "access to PyPI and run 'make setup' again" >&2
  exit 1
fi
TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" - <<'PY'
import numpy, tensorflow, cv2, yaml, docker, matplotlib, pytest, vitis_quantizer  # noqa: F401
import tensorflow_model_optimization  # noqa: F401
assert numpy.__version__ == "1.24.3", numpy.__version__
assert tensorflow.__version__ == "2.12.1", tensorflow.__version__
print(f"ok: tensorflow {tensorflow.__version__}, numpy {numpy.__version__}, opencv {cv2.__version__}")
PY
touch "$venv/.installed"
