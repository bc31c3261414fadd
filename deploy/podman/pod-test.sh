#!/usr/bin/env bash
# `make pod-test`: the image built here (base kept between runs), then
# tests/test_pods.py against real pods on this machine's cgroups. Pods outlive
# the process that starts them, so whatever this run played is taken down on
# any exit, Ctrl-C included, and the run fails if a container is left.
set -euo pipefail
# shellcheck source=deploy/podman/podman.sh
. "$(dirname "$0")/podman.sh"
repo=$(cd "$PODMAN_DIR/../.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}

command -v podman >/dev/null || { echo "podman is missing: apt-get install podman runc debootstrap" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "the pod tests run podman as root" >&2; exit 1; }

export POD_TEST_RUN="${POD_TEST_RUN:-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}"
label="mothership.test/run=$POD_TEST_RUN"
cleanup() {
  status=$?
  trap - EXIT INT TERM
  for pod in $(podman pod ps -q --filter "label=$label"); do
    echo "taking down leftover pod $pod" >&2
    podman pod rm -f -t 5 "$pod" >/dev/null 2>&1 || true
  done
  podman network rm -f "mothership-test-$POD_TEST_RUN" >/dev/null 2>&1 || true
  left=$(podman ps -a -q --filter "label=$label")
  if [ -n "$left" ]; then
    echo "containers left behind: $left" >&2
    status=1
  fi
  exit "$status"
}
trap cleanup EXIT INT TERM

bash "$PODMAN_DIR/image.sh"
cd "$repo"
POD_TESTS=1 IMAGE="$IMAGE" "$python" -m pytest -q -rs -p no:cacheprovider tests/test_pods.py "$@"
