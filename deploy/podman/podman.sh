# Sourced by the scripts here: podman with this directory's containers.conf
# (the machine's /etc/containers is left alone) and the names of the images.
# shellcheck shell=bash
PODMAN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PODMAN_DIR/containers.conf}"
BASE_IMAGE="${BASE_IMAGE:-localhost/mothership-base:bookworm}"
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
