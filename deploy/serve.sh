#!/usr/bin/env bash
# Start the gateway on the embedded store, setting up .venv first when needed.
# Usage: bash deploy/serve.sh [--config FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup-venv.sh
exec .venv/bin/telemetry-gateway serve "$@"
