#!/usr/bin/env bash
# Run the whole test suite, installing everything it needs first.
# Usage: bash deploy/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup-venv.sh test
source deploy/setup-peers.sh
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
