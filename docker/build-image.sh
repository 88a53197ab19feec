#!/usr/bin/env bash
# Build kvcache's images offline when need be: `make image` runs this.
#
#   docker/build-image.sh [TAG]         (default TAG: kvcache:local, the compose file's image)
#
# The Dockerfile's base is python:3.11-slim-bookworm. When that image is neither here nor
# pullable (no registry, as on the dev machines), a Debian bookworm base is built from
# Debian's packages with docker/make-base.sh (debootstrap; installed with apt-get when
# missing) and tagged kvcache-base:bookworm, once; the image is then built on it. Also
# builds kvcache-twemproxy:local (docker/twemproxy: Debian's nutcracker on the same base, for
# docker-compose.cluster.yml), and kvcache-locust:local (EXTRAS=loadtest, compose's `load`
# profile) when LOCUST=1.
# CA certificates in /usr/local/share/ca-certificates (a proxy that inspects TLS to the
# package index) go into the local base, as make-base.sh's CA_CERTS.
set -euo pipefail

cd "$(dirname "$0")/.."
TAG=${1:-kvcache:local}
DEFAULT_BASE=python:3.11-slim-bookworm
LOCAL_BASE=${LOCAL_BASE:-kvcache-base:bookworm}

have() { docker image inspect "$1" >/dev/null 2>&1; }

if have "$DEFAULT_BASE" || docker pull -q "$DEFAULT_BASE" >/dev/null 2>&1; then
    BASE=$DEFAULT_BASE
else
    echo "==> $DEFAULT_BASE cannot be pulled: building on $LOCAL_BASE (Debian's packages)"
    if ! have "$LOCAL_BASE"; then
        if ! command -v debootstrap >/dev/null 2>&1; then
            apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
        fi
        certs=""
        for crt in /usr/local/share/ca-certificates/*.crt; do
            [ -r "$crt" ] && certs="$certs $crt"
        done
        CA_CERTS="${certs# }" docker/make-base.sh "$LOCAL_BASE"
    fi
    BASE=$LOCAL_BASE
fi

start=$(date +%s)
docker build -q --build-arg BASE="$BASE" -t "$TAG" . >/dev/null
echo "==> built $TAG on $BASE in $(($(date +%s) - start)) s:" \
    "$(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%d MB", $1 / 1e6}')"
start=$(date +%s)
docker build -q --build-arg BASE="$BASE" -t kvcache-twemproxy:local docker/twemproxy >/dev/null
echo "==> built kvcache-twemproxy:local in $(($(date +%s) - start)) s"
if [ "${LOCUST:-0}" = 1 ]; then
    docker build -q --build-arg BASE="$BASE" --build-arg EXTRAS=loadtest \
        -t kvcache-locust:local . >/dev/null
    echo "==> built kvcache-locust:local"
fi
