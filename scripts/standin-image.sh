#!/usr/bin/env bash
# Build (or reuse) a stand-in for the Vitis AI TF2 image, for CI and for trying the docker
# runner on a machine where the real image cannot be pulled.
#
#   scripts/standin-image.sh [TAG]        (root; needs debootstrap, a Docker engine, .venv)
#
# What it is: Debian bookworm (debootstrap --variant=minbase) with python3 + python3-venv, the
# project's requirements/host-lock.txt installed into a venv at the path of the real image's
# conda env (/opt/vitis_ai/conda/envs/vitis-ai-tensorflow2), and a tiny conda.sh shim whose
# `conda activate NAME` sources that venv: the runner's activation works unchanged. It has no
# vai_c_tensorflow2, no xir and no arch.json: compile stops there with its own error line.
#
# Caching: the image carries the label signlang.standin.key = a hash of this script and the
# lock; a run whose key matches the image already tagged TAG does nothing (a second CI run on
# the same machine costs a second or two).
#
# pip: wheels are downloaded on the host by the venv's pip, so the host's pip settings
# (certificate bundle, index mirrors, find-links) apply; pip in the chroot installs them
# with --no-index and never touches the network. debootstrap uses the host's Debian mirror.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-signlang/vitis-ai-standin:local}"
lock="$repo/requirements/host-lock.txt"
py="${STANDIN_PIP_PYTHON:-$repo/.venv/bin/python}"
env_dir=/opt/vitis_ai/conda/envs/vitis-ai-tensorflow2
conda_sh=/opt/vitis_ai/conda/etc/profile.d/conda.sh

die() { echo "error: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "building the stand-in image needs root (debootstrap, chroot): run it as root"
command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
command -v docker >/dev/null || die "the docker CLI is not installed: apt-get install docker.io"
docker version >/dev/null 2>&1 || die "no Docker engine answers (${DOCKER_HOST:-unix:///var/run/docker.sock}): start dockerd"
[ -x "$py" ] || die "$py not found: run 'make setup' first (its pip downloads the wheels with the host's pip settings), or set STANDIN_PIP_PYTHON"

key=$(cat "$0" "$lock" | sha256sum | cut -c1-16)
have=$(docker image inspect --format '{{ index .Config.Labels "signlang.standin.key" }}' "$tag" 2>/dev/null || true)
if [ "$have" = "$key" ]; then
  echo "stand-in image $tag is up to date (key $key)"
  exit 0
fi

mirror="${STANDIN_MIRROR:-}"
if [ -z "$mirror" ]; then   # the host's Debian mirror (deb822 or one-line sources)
  mirror=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$mirror" ] || mirror=$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1 || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

t0=$(date +%s)
work=$(mktemp -d /var/tmp/standin.XXXXXX)
step() { echo "  $(( $(date +%s) - t0 ))s: $*"; }
cleanup() {
  for m in proc dev/pts dev; do umount "$work/rootfs/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
echo "building stand-in image $tag (key $key) in $work: debootstrap bookworm from $mirror"

step "downloading the wheels of requirements/host-lock.txt on the host"
"$py" -m pip download --disable-pip-version-check --no-deps -r "$lock" -d "$work/wheels" \
  >"$work/pip-download.log" 2>&1 \
  || { grep -v "is ignored: it is" "$work/pip-download.log" | tail -20 >&2
       die "pip could not download requirements/host-lock.txt (log above): check access to PyPI"; }

step "debootstrap --variant=minbase bookworm (python3, python3-venv)"
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$work/rootfs" "$mirror" \
  >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above): check access to $mirror"; }

step "installing the lock into $env_dir in the chroot"
mkdir -p "$work/rootfs/tmp/wheels"
cp "$work"/wheels/* "$work/rootfs/tmp/wheels/"
cp "$lock" "$work/rootfs/tmp/host-lock.txt"
mount -t proc proc "$work/rootfs/proc"
# a clean environment in the chroot: none of the host's PIP_* / proxy variables apply there
in_root() { chroot "$work/rootfs" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
in_root /usr/bin/python3 -m venv "$env_dir"
in_root "$env_dir/bin/python" -m pip install --disable-pip-version-check -q \
  --no-index --no-deps --find-links /tmp/wheels -r /tmp/host-lock.txt >"$work/pip.log" 2>&1 \
  || { tail -20 "$work/pip.log" >&2; die "pip could not install the wheels in the chroot (log above)"; }
in_root "$env_dir/bin/python" -c "import yaml, tensorflow, numpy; print('stand-in env: tensorflow', tensorflow.__version__)" 2>/dev/null
umount "$work/rootfs/proc"
rm -rf "$work/rootfs/tmp/wheels" "$work/rootfs/tmp/host-lock.txt" "$work/rootfs/var/cache/apt/archives/"*.deb \
  "$work/rootfs/var/lib/apt/lists/"*

mkdir -p "$(dirname "$work/rootfs$conda_sh")"
cat >"$work/rootfs$conda_sh" <<EOF
# stand-in for Mambaforge's conda.sh (scripts/standin-image.sh): only \`conda activate NAME\`
conda() {
  if [ "\$1" = activate ] && [ -n "\$2" ] && [ -f "/opt/vitis_ai/conda/envs/\$2/bin/activate" ]; then
    . "/opt/vitis_ai/conda/envs/\$2/bin/activate"
    return \$?
  fi
  echo "EnvironmentNameNotFound: Could not find conda environment: \$2" >&2
  return 1
}
EOF

step "docker import"
old_id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
tar -C "$work/rootfs" -c . | docker import \
  --change "LABEL signlang.standin.key=$key" \
  --change "LABEL signlang.standin=scripts/standin-image.sh" \
  --change 'CMD ["bash"]' - "$tag" >/dev/null
# the previous build, now untagged: remove it unless a container still uses it (2 GB each)
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "stand-in image $tag built in $(( $(date +%s) - t0 ))s (key $key)"
