"""APM adapters: spans (OTLP, Zipkin) to RED series."""
