#!/usr/bin/env bash
# Install Label Studio (the version the end-to-end tests run against) into its own virtualenv.
#
# Usage: scripts/install_label_studio.sh [VENV_DIR]
#   VENV_DIR defaults to $LABEL_STUDIO_VENV, else <repo>/.cache/label-studio-venv (git-ignored).
#
# Idempotent: an existing venv that already imports the pinned version is reused as is; a broken or
# half-finished one is rebuilt. Concurrent runs are serialised with a lock file. Needs PyPI (about a
# minute on a first install). Prints the venv's python on success.
set -euo pipefail

LS_VERSION=1.23.2
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-${LABEL_STUDIO_VENV:-$REPO_ROOT/.cache/label-studio-venv}}"
PYTHON="${PYTHON:-python3}"

is_ready() {
    [ -f "$VENV/.installed-$LS_VERSION" ] && "$VENV/bin/python" - "$LS_VERSION" <<'PY' >/dev/null 2>&1
import sys
import label_studio
sys.exit(0 if label_studio.__version__ == sys.argv[1] else 1)
PY
}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9

if ! is_ready; then
    echo "installing label-studio==$LS_VERSION into $VENV" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    log="$VENV.pip.log"
    if ! { "$VENV/bin/pip" install --upgrade pip && "$VENV/bin/pip" install "label-studio==$LS_VERSION"; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "pip install of label-studio==$LS_VERSION failed (full log: $log)" >&2
        exit 1
    fi
    touch "$VENV/.installed-$LS_VERSION"
    is_ready || { echo "label-studio $LS_VERSION did not install correctly in $VENV" >&2; exit 1; }
fi
echo "$VENV/bin/python"
