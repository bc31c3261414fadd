#!/usr/bin/env bash
# The project's image from its own Containerfile, on the base image from
# base-image.sh, with no registry and no network inside the build: the
# dependencies come from a wheelhouse built on the host with its own pip
# settings (index, mirrors, certificates). About 30 s once the base exists.
set -euo pipefail
# shellcheck source=deploy/podman/podman.sh
. "$(dirname "$0")/podman.sh"
repo=$(cd "$PODMAN_DIR/../.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || python=python3

bash "$PODMAN_DIR/base-image.sh"

wheels="$repo/build/wheelhouse"
mkdir -p "$wheels"
# The packages setup.py needs, and the build backend pip's isolated build of
# `pip install .` asks for (pyproject.toml's build-system).
"$python" -m pip wheel --quiet --wheel-dir "$wheels" "$repo" 'setuptools>=61,<82' wheel
rm -f "$wheels"/mothership-*.whl  # the image builds the project from its source

podman build --quiet --network none \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  -v "$wheels:/wheels:ro" \
  -v "$PODMAN_DIR/pip-offline.conf:/etc/pip.conf:ro" \
  -t "$IMAGE" -f "$repo/Containerfile" "$repo" >/dev/null
echo "image $IMAGE: built from Containerfile on $BASE_IMAGE"
