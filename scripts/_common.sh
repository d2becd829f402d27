# shellcheck shell=bash
# Helpers sourced by scripts/serve.sh and scripts/test.sh (not meant to be run directly).
# Expects the current directory to be the repository root.

VENV_DIR="${VENV_DIR:-.venv}"
PY="$VENV_DIR/bin/python"

log() { echo "[$(basename "$0")] $*" >&2; }

# Create the virtualenv if needed and install the dependencies (pyproject.toml's, plus the extras
# named as arguments, pinned by constraints.txt) when those files changed since the last install.
# The project itself is not installed: the scripts run it from the checkout. With TORCH_INDEX set
# (e.g. https://download.pytorch.org/whl/cpu), torch comes from that index.
ensure_venv() {
    if [ ! -x "$PY" ]; then
        log "creating $VENV_DIR"
        "${PYTHON:-python3}" -m venv "$VENV_DIR"
    fi
    local name="${*:-runtime}"
    local stamp="$VENV_DIR/.requirements-${name// /-}.sha256" want
    want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing the dependencies ($name) into $VENV_DIR"
        if [ -n "${TORCH_INDEX:-}" ]; then
            "$PY" -m pip install --quiet --index-url "$TORCH_INDEX" -c constraints.txt torch
        fi
        "$PY" scripts/dependencies.py "$@" > "$VENV_DIR/.requirements-$name.txt"
        "$PY" -m pip install --quiet -c constraints.txt -r "$VENV_DIR/.requirements-$name.txt"
        echo "$want" > "$stamp"
    fi
}

# Succeeds when a Redis server answers PING at the given URL.
redis_answers() {
    "$PY" - "$1" <<'PY' >/dev/null 2>&1
import sys
import redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

# Port of a redis:// URL (6379 when absent).
redis_port() {
    "$PY" -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).port or 6379)' "$1"
}

# Wait up to 20 s for Redis at the given URL.
wait_for_redis() {
    for _ in $(seq 100); do
        redis_answers "$1" && return 0
        sleep 0.2
    done
    log "Redis did not come up at $1"
    return 1
}
