#!/usr/bin/env bash
# Sets up .venv (release build of the extension, test extras) and runs every test and
# benchmark-as-test against real servers: the test session itself starts an embedded
# Postgres with pgvector and a redis-server on loopback, and stops them.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/native -k scan).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh embedded,redis,test,lint

if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing redis-server (Debian package) for the tests"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        echo "error: the tests need redis-server on PATH (Debian/Ubuntu: apt-get install redis-server;" >&2
        echo "       macOS: brew install redis)." >&2
        exit 1
    fi
fi

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "error: pytest collected no tests: that is a failure here, not a pass." >&2
    exit 1
fi
exit "$status"
