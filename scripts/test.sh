#!/usr/bin/env bash
# Run the whole test suite on a fresh machine with one command:  bash scripts/test.sh [pytest args]
#
# Creates .venv and installs the dependencies with the test extras (pyproject.toml, pinned by
# constraints.txt; when changed), makes sure a Redis answers on
# 127.0.0.1:6379 (installs redis-server with apt-get and starts it when missing), installs
# Label Studio for the end-to-end tests into .cache/label-studio-venv (reused when present),
# then runs pytest over tests/ (or over the given pytest arguments). The browser test installs
# chromium and chromium-driver with apt-get when missing (tests/support/browser.py), the container
# test podman (scripts/container_test.sh); each skips with its reason where that cannot be done.
# Needs the PyPI registry (and Debian's for redis-server) on a first run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_common.sh

REDIS_URL_TEST="redis://127.0.0.1:6379"

ensure_venv test cvat

if ! redis_answers "$REDIS_URL_TEST"; then
    if ! command -v redis-server >/dev/null; then
        log "installing redis-server"
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
    fi
    log "starting redis-server on 127.0.0.1:6379"
    redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no --daemonize yes >/dev/null
    wait_for_redis "$REDIS_URL_TEST"
fi

bash scripts/install_label_studio.sh >/dev/null

[ $# -gt 0 ] || set -- tests
exec "$PY" -m pytest -q "$@"
