#!/usr/bin/env bash
# Build the CPU image as users build it and run the compose file's CPU stack, checked over HTTP:
#   bash scripts/container_test.sh
#
# Uses podman (installed with apt-get where missing and root) or a docker that answers; with
# neither it prints "skipped: no container runtime" and exits 0. Where no image registry answers,
# the python:3.11-slim and redis:7-alpine bases are local stand-ins (scripts/container_base.sh,
# cached in the machine's image store). Package sources come from this machine's pip settings:
# PIP_INDEX_URL (default PyPI), PIP_CERT (a CA bundle pip must trust) and PIP_FIND_LINKS (a
# folder of wheels, e.g. the CPU torch wheel) are handed to the build as build arguments and
# read-only mounts. TORCH_INDEX defaults to PyPI plus that folder when PIP_FIND_LINKS is set, else
# to the Dockerfile's own (download.pytorch.org's CPU index).
# Then scripts/container_stack.py starts and checks the stack. Prints the image size and times.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_common.sh

IMAGE="${CONTAINER_TEST_IMAGE:-fcanet-backend:cpu}"
CVAT_IMAGE="$IMAGE-cvat-test"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

pick_runtime() {
    if command -v podman >/dev/null; then echo podman; return; fi
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker; return; fi
    if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
        log "installing podman, buildah, runc and debootstrap"
        if $SUDO apt-get update -qq >/dev/null 2>&1 \
            && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq podman buildah runc debootstrap >/dev/null 2>&1 \
            && command -v podman >/dev/null; then
            echo podman; return
        fi
    fi
    echo none
}

RUNTIME="$(pick_runtime)"
if [ "$RUNTIME" = none ]; then
    echo "skipped: no container runtime (neither podman nor a running docker, and podman cannot be installed)"
    exit 0
fi
OPTS=(--network host)
if [ "$RUNTIME" = podman ]; then
    OPTS+=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
    if ! podman info >/dev/null 2>&1; then
        echo "skipped: no container runtime (podman is installed but cannot run containers here)"
        exit 0
    fi
fi

# A base image: the local one, else pulled, else a stand-in (podman and debootstrap only).
ensure_base() {
    local tag="$1" kind="$2"
    "$RUNTIME" image inspect "$tag" >/dev/null 2>&1 && return 0
    timeout 60 "$RUNTIME" pull -q "$tag" >/dev/null 2>&1 && return 0
    if [ "$RUNTIME" = podman ] && command -v debootstrap >/dev/null; then
        log "$tag cannot be pulled: building a stand-in"
        bash scripts/container_base.sh "$kind" "$tag"
        return 0
    fi
    log "$tag can neither be found nor pulled"
    return 1
}
ensure_base docker.io/library/python:3.11-slim python
ensure_base docker.io/library/redis:7-alpine redis

BUILD=(--build-arg "PIP_INDEX_URL=${PIP_INDEX_URL:-https://pypi.org/simple}")
if [ -n "${PIP_CERT:-}" ]; then
    BUILD+=(--build-arg PIP_CA_BUNDLE=/run/host-ca.crt)
    [ "$RUNTIME" = podman ] && BUILD+=(--volume "$PIP_CERT:/run/host-ca.crt:ro")
fi
if [ -n "${PIP_FIND_LINKS:-}" ] && [ "$RUNTIME" = podman ]; then
    BUILD+=(--build-arg WHEEL_DIR=/run/wheels --volume "$PIP_FIND_LINKS:/run/wheels:ro"
            --build-arg "TORCH_INDEX=${TORCH_INDEX:-${PIP_INDEX_URL:-https://pypi.org/simple}}")
elif [ -n "${TORCH_INDEX:-}" ]; then
    BUILD+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
fi
[ "$RUNTIME" = podman ] && BUILD+=(--pull=never)

log "building $IMAGE with $RUNTIME (docker/Dockerfile.cpu)"
started=$SECONDS
"$RUNTIME" build "${OPTS[@]}" "${BUILD[@]}" -f docker/Dockerfile.cpu -t "$IMAGE" .
echo "image $IMAGE built in $((SECONDS - started)) s; size $("$RUNTIME" image inspect "$IMAGE" --format '{{.Size}}') bytes"

# The CVAT function's image: nuclio's build adds its SDK on top of the project image; so does this one.
cvat_dir="$(mktemp -d)"
trap 'rm -rf "$cvat_dir"' EXIT
cp constraints.txt "$cvat_dir/"
cat >"$cvat_dir/Containerfile" <<EOF
FROM $IMAGE
ARG PIP_INDEX_URL
ARG PIP_CA_BUNDLE=
COPY constraints.txt /tmp/constraints.txt
USER root
RUN pip install \${PIP_CA_BUNDLE:+--cert "\$PIP_CA_BUNDLE"} --index-url "\$PIP_INDEX_URL" \
    -c /tmp/constraints.txt nuclio-sdk
USER fcanet
EOF
"$RUNTIME" build "${OPTS[@]}" "${BUILD[@]}" -f "$cvat_dir/Containerfile" -t "$CVAT_IMAGE" "$cvat_dir" >/dev/null

exec "$PY" scripts/container_stack.py --runtime "$RUNTIME" --image "$IMAGE" --cvat-image "$CVAT_IMAGE"
