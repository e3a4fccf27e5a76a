"""Listener workers: the OTLP listeners in processes of their own (`receivers.otlp.workers`).

`pool` runs in the gateway process; `process` is each worker; `link` is the
framing between them. See gateway/DESIGN.md, "Using every core".
"""
