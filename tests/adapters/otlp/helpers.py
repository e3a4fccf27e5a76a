from __future__ import annotations

from pathlib import Path

from telemetry_gateway.adapters.base import AcceptWindow, IngestContext

TESTDATA = Path(__file__).parent / "testdata"
NS = 1_000_000_000


def context(received_ns: int, **overrides) -> IngestContext:
    values = dict(source_kind="otlp", source_id="test", batch_id="b" * 32, received_ns=received_ns, window=AcceptWindow())
    values.update(overrides)
    return IngestContext(**values)
