#!/usr/bin/env bash
# pods/shop.yaml with the sidecar added by `mothership inject`, run from the image
# itself (so the image's own copy is what is tested), on standard output. The
# dashboard and the token's Secret are named as in pods/dashboard.yaml;
# tests/test_pods.py names both per run. pod-test-v2.sh runs this on the host for
# the VM, where a container's Python takes a minute to start.
# Usage: inject-shop.sh [IMAGE]
set -euo pipefail
# shellcheck source=deploy/podman/podman.sh
. "$(dirname "$0")/podman.sh"
image=${1:-$IMAGE}
podman run --rm -i --network none "$image" python -m app --mode inject \
  --dashboard http://mothership:8080 --image "$image" --token-secret mothership-tokens/ingest-token \
  --share-process-namespace <"$PODMAN_DIR/pods/shop.yaml"
