
# What benchmarks change in the tests' gateway config to measure it as shipped:
# the tests insert ingest_log rows every 50 ms, which would cost a store part per burst.
AS_SHIPPED = {"log_level": "warning", "store": {"batch": {"ingest_log_max_delay": "10s"}}}
