# Sourced by the scripts here: podman with this directory's containers.conf
# (the machine's /etc/containers is left alone) and the names of the images
# (BUILDER_IMAGE: the base of the Containerfile's builder stage, which compiles).
# shellcheck shell=bash
PODMAN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PODMAN_DIR/containers.conf}"
BASE_IMAGE="${BASE_IMAGE:-localhost/mothership-base:bookworm}"
BUILDER_IMAGE="${BUILDER_IMAGE:-localhost/mothership-builder:bookworm}"
IMAGE="${IMAGE:-localhost/mothership:latest}"

# The machine's own Debian mirror: the first `URIs:` of its deb822 sources,
# else the first `deb` line of sources.list, else Debian's CDN.
debian_mirror() {
  local uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Where debootstrap keeps the .debs it fetched (build/debs), shared by the base
# image and the VM root: the VM root's packages include nearly all the base's,
# and a rebuild of either downloads only what changed on the mirror
# (debootstrap checks each cached file against the mirror's checksum).
debootstrap_cache() {
  local dir
  dir="$(cd "$PODMAN_DIR/../.." && pwd)/build/debs"
  mkdir -p "$dir"
  echo "$dir"
}
