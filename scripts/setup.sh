#!/usr/bin/env bash
# Creates .venv with a CPython >= 3.12 and builds the package into it (release build of
# the Rust extension). Idempotent: a second run only rebuilds what changed.
# Usage: scripts/setup.sh [extra,extra,...]   (default: embedded,redis,test,lint,docs)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/find-python.sh

extras="${1:-embedded,redis,test,lint,docs}"
if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: the Rust toolchain (cargo) is needed to build the native extension." >&2
    echo "       Install it from https://rustup.rs and run this again." >&2
    exit 1
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
    echo "==> creating .venv with $("$PY" --version)"
    rm -rf .venv
    "$PY" -m venv .venv
fi
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export PYO3_PYTHON="$VIRTUAL_ENV/bin/python"

echo "==> installing build tools"
python -m pip install --quiet --disable-pip-version-check --upgrade pip "maturin>=1.9,<2"
echo "==> building the native extension (release) and installing fastapi-semcache[$extras]"
maturin develop --release --extras "$extras" --quiet 2>&1 | { grep -v '^Requirement already satisfied' || true; }
python -c 'import semanticcache, semanticcache._native' || {
    echo "error: the build finished but semanticcache._native does not import" >&2
    exit 1
}
echo "==> .venv is ready ($(python --version))"
