#!/usr/bin/env bash
# Run the whole test suite, installing everything it needs first.
# Usage: bash deploy/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup-venv.sh test
source deploy/setup-peers.sh
# The OpenTelemetry JS SDK, a second SDK the tests send with (Node.js and npm come with the machine).
js=tests/clients/js
if [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null 2>&1 || { echo "the JS client tests need Node.js 20+ and npm" >&2; exit 1; }
  npm ci --prefix "$js" --no-audit --no-fund --loglevel=error >&2
fi
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
