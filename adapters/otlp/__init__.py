"""OTLP adapters: OTLP wire bytes to Arrow batches in the unified schema."""
