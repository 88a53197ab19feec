#!/usr/bin/env bash
# Build a Debian bookworm base image for the Dockerfile without any image registry:
#
#   sudo docker/make-base.sh [TAG]                  # default TAG: kvcache-base:bookworm
#   docker build --build-arg BASE=kvcache-base:bookworm -t kvcache .
#
# debootstrap's minbase (essential packages + apt) from Debian's mirror, brought up to date
# with bookworm-updates and bookworm-security, plus what both Dockerfile stages need of the
# base: python3 (3.11 in bookworm), python3-venv (the Dockerfile's /opt/venv: Debian's own
# python3 refuses `pip install` by PEP 668) and passwd (useradd). The builder stage adds
# the compiler and python3-dev itself. Needs root, debootstrap and a Docker engine; MIRROR
# overrides the mirror (default: the one this machine's apt uses, else deb.debian.org).
#
# CA_CERTS="a.crt b.crt" adds certificate authorities (PEM) to the base's trust store, for a
# network whose TLS to the package index goes through an inspecting proxy: the builder stage's
# pip (Debian's, in the venv) trusts the system store. The final image inherits them too.
set -euo pipefail

TAG=${1:-kvcache-base:bookworm}
SUITE=bookworm
if [ -z "${MIRROR:-}" ]; then
    MIRROR=$(sed -n 's/^URIs: *\(\S*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources \
        2>/dev/null | head -n1)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
SECURITY=${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}

for cert in ${CA_CERTS:-}; do
    [ -r "$cert" ] || { echo "error: CA_CERTS: cannot read $cert" >&2; exit 1; }
done
for tool in debootstrap docker; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "error: debootstrap and chroot need root" >&2; exit 1; }

ROOTFS=$(mktemp -d /tmp/kvcache-base.XXXXXX)
cleanup() {
    mountpoint -q "$ROOTFS/proc" && umount "$ROOTFS/proc"
    rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR"

cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
SOURCES

if [ -n "${CA_CERTS:-}" ]; then
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
    for cert in $CA_CERTS; do
        cp "$cert" "$ROOTFS/usr/local/share/ca-certificates/$(basename "${cert%.*}").crt"
    done
fi

mount -t proc proc "$ROOTFS/proc"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive sh -eu -c '
    apt-get update
    apt-get -y upgrade
    apt-get install -y --no-install-recommends python3 python3-venv passwd ca-certificates
    update-ca-certificates
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log /var/cache/debconf/*-old
'
umount "$ROOTFS/proc"

# The PATH of Debian's own images: the Dockerfile's ENV PATH=/opt/venv/bin:$PATH extends it.
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$TAG"
docker run --rm "$TAG" python3 -c 'import sys, venv; print("base ok:", sys.version.split()[0])'
