#!/usr/bin/env bash
# Build a local stand-in for a public base image where no image registry answers:
#   bash scripts/container_base.sh python [TAG]   (default TAG docker.io/library/python:3.11-slim)
#   bash scripts/container_base.sh redis  [TAG]   (default TAG docker.io/library/redis:7-alpine)
#
# Debian bookworm ships Python 3.11 (and Redis 7): debootstrap a minimal root file system once
# (localhost/bookworm-py:base), then make /usr/local a virtualenv so `python` and `pip` lie in
# /usr/local/bin as in the official python image, or add redis-server. Needs podman, debootstrap
# and root; an image that already exists is kept (one machine's cache).
set -euo pipefail
KIND="${1:?python or redis}"
case "$KIND" in
    python) TAG="${2:-docker.io/library/python:3.11-slim}" ;;
    redis) TAG="${2:-docker.io/library/redis:7-alpine}" ;;
    *) echo "unknown kind $KIND (python or redis)" >&2; exit 2 ;;
esac
ROOTFS_TAG=localhost/bookworm-py:base
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PODMAN_OPTS=(--runtime runc --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

if podman image exists "$TAG"; then
    echo "stand-in $TAG already built" >&2
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! podman image exists "$ROOTFS_TAG"; then
    echo "debootstrap of Debian bookworm ($MIRROR) for $ROOTFS_TAG" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work/rootfs" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
    # What the official slim images leave out too: documentation, manual pages, translations, apt's caches.
    rm -rf "$work"/rootfs/usr/share/{doc,man,info,locale}/* "$work"/rootfs/var/cache/apt/* "$work"/rootfs/var/lib/apt/lists/*
    tar -C "$work/rootfs" -c . | podman import - "$ROOTFS_TAG" >/dev/null
    rm -rf "$work/rootfs"
fi
if [ "$KIND" = python ]; then
    cat >"$work/Containerfile" <<DOCKERFILE
FROM $ROOTFS_TAG
RUN python3 -m venv /usr/local && /usr/local/bin/pip --version
ENV LANG=C.UTF-8
CMD ["python3"]
DOCKERFILE
else
    cat >"$work/Containerfile" <<DOCKERFILE
FROM $ROOTFS_TAG
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data
WORKDIR /data
CMD ["redis-server"]
DOCKERFILE
fi
echo "building stand-in $TAG" >&2
podman build --pull=never "${PODMAN_OPTS[@]}" -f "$work/Containerfile" -t "$TAG" "$work" >&2
