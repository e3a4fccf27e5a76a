
# What benchmarks change in the tests' gateway config to measure it as shipped:
# the tests insert ingest_log rows every 50 ms, which would cost a store part per burst, and
# write RED windows 300 ms after their last span instead of 30 s.
AS_SHIPPED = {"log_level": "warning", "store": {"batch": {"ingest_log_max_delay": "10s"}}, "apm": {"lateness": "30s"}}
