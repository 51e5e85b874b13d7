#!/usr/bin/env bash
# Make a Debian bookworm base image (python3.11 + pip + venv) without Docker Hub: debootstrap a minimal
# root filesystem from the host's Debian mirror and `docker import` it. Skips when the image exists.
#   tests/images/make_base.sh [IMAGE]          (default visioncompress-base:bookworm; needs root)
set -euo pipefail

IMAGE=${1:-${VC_BASE_IMAGE:-visioncompress-base:bookworm}}
SUITE=${SUITE:-bookworm}
ROOTFS=${ROOTFS:-$(cd "$(dirname "$0")/../.." && pwd)/.cache/images/rootfs-$SUITE}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base image $IMAGE exists"
    exit 0
fi

# The host's Debian mirror (deb822 sources first, then the one-line format), else the public one.
mirror() {
    local url
    url=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
    [ -n "$url" ] || url=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
    echo "${url:-http://deb.debian.org/debian}"
}
MIRROR=${MIRROR:-$(mirror)}
SECURITY=${SECURITY:-$(grep -hsE '^URIs:.*security' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | head -n1 || true)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo  # debootstrap and the root-owned tree it makes need root
$SUDO rm -rf "$ROOTFS"
mkdir -p "$(dirname "$ROOTFS")"
echo "debootstrap $SUITE from $MIRROR into $ROOTFS"
$SUDO nice -n 19 debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR"
# Same layout as the public python images: an apt source, no package lists or caches kept.
printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SECURITY" "$SUITE" \
    | $SUDO tee "$ROOTFS/etc/apt/sources.list" >/dev/null
$SUDO sh -c 'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/archives/*.deb' sh "$ROOTFS"
$SUDO tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$IMAGE"
$SUDO rm -rf "$ROOTFS"
docker image inspect --format '{{.Id}} {{.Size}}' "$IMAGE"
