#!/usr/bin/env bash
# Start the backend on a fresh machine with one command:  bash scripts/serve.sh
#
# Creates .venv and installs the runtime dependencies (pyproject.toml, pinned by constraints.txt;
# when changed). Then, for inference:
#   - a Redis answers at REDIS_URL (default redis://127.0.0.1:6379/0): use it;
#   - else redis-server is installed: start one on that port (no persistence) for this run;
#   - else: no queue, inference runs inside the web process.
# Starts the web server (python -m backend serve, port $PORT, default 9090) and, with Redis, two
# workers: one for clicks and auto-annotation (queues $WORKER_QUEUES, default inference,batch) and
# one for fine-tuning (queue training) at low CPU priority with $TRAINING_TORCH_THREADS threads
# (default 1), so clicks keep answering while a model trains. Both use the bundled default model
# until another version is promoted. Connect it in Label Studio (Settings > Model) at
# http://<this-host>:$PORT.
#
# Runs in the foreground; Ctrl-C (or SIGTERM) stops everything it started. If one of its
# processes exits, the others are stopped too. Settings are environment variables
# (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, MODEL_DIR, DEVICE, ...; see backend/config.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_common.sh

HOST="${HOST:-0.0.0.0}"
PORT="${PORT:-9090}"
WORKER_QUEUES="${WORKER_QUEUES:-inference,batch}"
TRAINING_TORCH_THREADS="${TRAINING_TORCH_THREADS:-1}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"

ensure_venv

PIDS=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
stop_all() {
    trap - EXIT
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'log "stopping"; exit 130' INT TERM

if ! redis_answers "$REDIS_URL"; then
    if command -v redis-server >/dev/null; then
        port="$(redis_port "$REDIS_URL")"
        log "no Redis at $REDIS_URL: starting redis-server on 127.0.0.1:$port"
        redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no &
        PIDS+=($!)
        wait_for_redis "$REDIS_URL"
    else
        log "no Redis at $REDIS_URL and no redis-server installed: inference runs in the web process"
        unset REDIS_URL
    fi
fi

if [ -n "${REDIS_URL:-}" ]; then
    "$PY" -m backend worker --queues "$WORKER_QUEUES" &
    PIDS+=($!)
    TORCH_THREADS="$TRAINING_TORCH_THREADS" nice -n 10 "$PY" -m backend worker --queues training &
    PIDS+=($!)
fi
"$PY" -m backend serve --host "$HOST" --port "$PORT" &
PIDS+=($!)
log "backend on http://$HOST:$PORT (Ctrl-C stops it)"

# Exit as soon as any process ends, stopping the rest (via the EXIT trap).
set +e
wait -n
status=$?
log "a process exited (status $status): stopping"
exit "$status"
