#!/usr/bin/env bash
# The base image with no registry: a minimal Debian bookworm (Python 3.11,
# pip, curl for podman's probes, procps) from the machine's own mirror by
# debootstrap, imported into podman. Kept once built (REBUILD=1 redoes it).
# About a minute and 210 MB.
set -euo pipefail
# shellcheck source=deploy/podman/podman.sh
. "$(dirname "$0")/podman.sh"

if [ -z "${REBUILD:-}" ] && podman image exists "$BASE_IMAGE"; then
  echo "base image $BASE_IMAGE: kept (REBUILD=1 builds it again)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

root=$(mktemp -d /var/tmp/mothership-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
mirror=$(debian_mirror)
echo "debootstrap bookworm from $mirror"
# python-is-python3: the Containerfile (like the python images) runs `python`.
debootstrap --variant=minbase --cache-dir="$(debootstrap_cache)" \
  --include=python3,python3-venv,python3-pip,python-is-python3,curl,ca-certificates,procps \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# Debian marks its Python as externally managed (PEP 668); in an image that is
# its own environment, `pip install .` must be allowed as in the python images.
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# Without PATH in the image's config, `podman kube play` finds no `python`.
tar -C "$root" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
echo "base image $BASE_IMAGE: built"
