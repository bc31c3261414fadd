#!/usr/bin/env bash
# The project's image from its own Containerfile, on the base images from
# base-image.sh (the final stage's, and the builder stage's with a compiler),
# with no registry and no network inside the build: the dependencies, and what
# the builder compiles with (mypy, setuptools, wheel, the stubs mypy reads),
# come from a wheelhouse built on the host with its own pip settings (index,
# mirrors, certificates). About 75 s once the bases exist, most of it mypyc.
set -euo pipefail
# shellcheck source=deploy/podman/podman.sh
. "$(dirname "$0")/podman.sh"
repo=$(cd "$PODMAN_DIR/../.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || python=python3

bash "$PODMAN_DIR/base-image.sh"
bash "$PODMAN_DIR/base-image.sh" builder

wheels="$repo/build/wheelhouse"
mkdir -p "$wheels"
# The mypy that checks the code here compiles it in the image, when there is one.
mypy=$("$python" -c 'import mypy.version; print("mypy==" + mypy.version.__version__)' 2>/dev/null || echo 'mypy>=1.10')
# The packages setup.py needs, the build backend (pyproject.toml's
# build-system), and what the Containerfile's builder stage installs.
"$python" -m pip wheel --quiet --wheel-dir "$wheels" "$repo" 'setuptools>=61,<82' wheel "$mypy" types-ujson
rm -f "$wheels"/mothership-*.whl  # the image builds the project from its source

# --layers=false: no cached layer per step, so the builder stage (with gcc,
# about 570 MB) leaves no image behind; the image this replaces goes too.
old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
podman build --quiet --network none --layers=false \
  --build-arg BUILDER_IMAGE="$BUILDER_IMAGE" \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  -v "$wheels:/wheels:ro" \
  -v "$PODMAN_DIR/pip-offline.conf:/etc/pip.conf:ro" \
  -t "$IMAGE" -f "$repo/Containerfile" "$repo" >/dev/null
# Kept while a container still uses it (podman refuses then).
if [ -n "$old" ] && [ "$old" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$old" >/dev/null 2>&1 || true
fi
echo "image $IMAGE: built from Containerfile on $BASE_IMAGE (compiled on $BUILDER_IMAGE)"
