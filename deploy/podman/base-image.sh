#!/usr/bin/env bash
# The base images with no registry: a minimal Debian bookworm (Python 3.11,
# pip, curl for podman's probes, procps) from the machine's own mirror by
# debootstrap, imported into podman. Kept once built (REBUILD=1 redoes it).
# About a minute and 210 MB.
# `base-image.sh builder` makes the Containerfile's builder stage's base: the
# same plus what mypyc's build of the sidecar needs (a C compiler, libc's and
# Python's headers); about a minute more and 446 MB, and never shipped.
# Usage: base-image.sh [builder]
set -euo pipefail
# shellcheck source=deploy/podman/podman.sh
. "$(dirname "$0")/podman.sh"

image=$BASE_IMAGE
# python-is-python3: the Containerfile (like the python images) runs `python`.
packages=python3,python3-venv,python3-pip,python-is-python3,curl,ca-certificates,procps
case "${1:-}" in
  "") ;;
  builder)
    image=$BUILDER_IMAGE
    # libc6-dev is only a Recommends of gcc, which debootstrap does not install.
    packages+=,gcc,libc6-dev,python3-dev ;;
  *) echo "usage: base-image.sh [builder]" >&2; exit 2 ;;
esac

if [ -z "${REBUILD:-}" ] && podman image exists "$image"; then
  echo "base image $image: kept (REBUILD=1 builds it again)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

root=$(mktemp -d /var/tmp/mothership-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
mirror=$(debian_mirror)
echo "debootstrap bookworm from $mirror for $image"
# In two stages, so that dpkg, which installs the packages in the second, skips
# its fsync after every file (the root is a scratch copy until it is imported):
# the builder's base took about a third less time here (noisy: 65-127 s against
# 80-134 s).
unsafe_io="$root/etc/dpkg/dpkg.cfg.d/mothership-unsafe-io"
{ debootstrap --foreign --variant=minbase --cache-dir="$(debootstrap_cache)" --include="$packages" \
    bookworm "$root" "$mirror" \
  && mkdir -p "$(dirname "$unsafe_io")" && echo force-unsafe-io >"$unsafe_io" \
  && chroot "$root" /debootstrap/debootstrap --second-stage; } >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log" "$unsafe_io"
# Debian marks its Python as externally managed (PEP 668); in an image that is
# its own environment, `pip install .` must be allowed as in the python images.
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
# Without PATH in the image's config, `podman kube play` finds no `python`.
tar -C "$root" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
# The image this replaces (REBUILD=1), unless something still uses it.
[ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true
echo "base image $image: built"
