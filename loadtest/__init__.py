from telemetry_gateway.gateway.config import BatchConfig

# What benchmarks change in the tests' gateway config to measure it as shipped: the tests insert
# every 50 ms (max_delay) and write ingest_log rows every 50 ms, which costs a store part per burst
# and merges of many tiny parts; and they write RED windows 300 ms after their last span, not 30 s.
_BATCH = BatchConfig()
AS_SHIPPED = {
    "log_level": "warning",
    "store": {"batch": {"max_delay": f"{_BATCH.max_delay}s", "ingest_log_max_delay": f"{_BATCH.ingest_log_max_delay}s"}},
    "apm": {"lateness": "30s"},
}
