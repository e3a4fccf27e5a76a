"""Test hooks, never imported unless a test asks: `TELEMETRY_GATEWAY_FAULTS=1` (see `faults`)."""
