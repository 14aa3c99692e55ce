#!/usr/bin/env bash
# The product's main job on embedded defaults: no API key, no external server, no network
# beyond the first package install. Builds .venv if needed, then runs `semcache demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh embedded
exec .venv/bin/semcache demo "$@"
