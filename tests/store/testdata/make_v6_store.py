"""Write the store `v6_store.tar.gz` and its rows `v6_rows.jsonl` with the release of schema version 6.

Run from the repository root with that release's package first on the path:

    git worktree add /tmp/v6 dfc2163
    mkdir -p /tmp/v6pkg/telemetry_gateway
    for d in gateway adapters schema; do ln -s /tmp/v6/$d /tmp/v6pkg/telemetry_gateway/$d; done
    PYTHONPATH=/tmp/v6pkg .venv/bin/python tests/store/testdata/make_v6_store.py

`tests/store/test_layout_migration.py` opens the store with this release and
checks that `metric_points` still gives these rows.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import AcceptWindow
from telemetry_gateway.adapters.otlp.metrics import decode_request, metrics_to_arrow
from telemetry_gateway.gateway.batch import Caller, Provenance
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.gateway.store.embedded import EmbeddedStore
from telemetry_gateway.schema import POINTS
from telemetry_gateway.schema.migrations import latest_version

HERE = Path(__file__).parent
SDK_PAYLOAD = HERE.parent.parent / "adapters" / "otlp" / "testdata" / "sdk_metrics.binpb"
NS = 1_000_000_000
RECEIVED = 1_800_000_000 * NS
DATABASE = "telemetry"


def every_kind(at_ns: int, description: str, service: str = "checkout", counting_since: int = 0) -> bytes:
    """One OTLP metrics request with a point or two of each of the five kinds."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = service
    rm.resource.attributes.add(key="host.name").value.string_value = "eu-1"
    scope = rm.scope_metrics.add()
    scope.scope.name, scope.scope.version = "shop", "1.2"
    gauge = scope.metrics.add(name="queue.depth", unit="{item}", description=description)
    for i, queue in enumerate(("a", "b")):
        dp = gauge.gauge.data_points.add(time_unix_nano=at_ns - i * NS, as_int=10 + i)
        dp.attributes.add(key="queue").value.string_value = queue
    total = scope.metrics.add(name="orders", unit="{order}", description=description)
    total.sum.is_monotonic, total.sum.aggregation_temporality = True, 2
    dp = total.sum.data_points.add(time_unix_nano=at_ns, start_time_unix_nano=counting_since or RECEIVED - 600 * NS,
                                    as_double=42.5)
    dp.attributes.add(key="country").value.string_value = "fr"
    hist = scope.metrics.add(name="latency", unit="ms", description=description)
    hist.histogram.aggregation_temporality = 1
    dp = hist.histogram.data_points.add(time_unix_nano=at_ns, start_time_unix_nano=at_ns - 10 * NS, count=6, sum=90.0,
                                        min=1.0, max=40.0, explicit_bounds=[5.0, 25.0], bucket_counts=[2, 3, 1])
    dp.attributes.add(key="route").value.string_value = "/pay"
    expo = scope.metrics.add(name="size", unit="By", description=description)
    expo.exponential_histogram.aggregation_temporality = 1
    dp = expo.exponential_histogram.data_points.add(time_unix_nano=at_ns, start_time_unix_nano=at_ns - 10 * NS,
                                                     count=5, sum=31.0, scale=1, zero_count=1)
    dp.positive.offset, dp.negative.offset = 2, -1
    dp.positive.bucket_counts.extend([1, 2])
    dp.negative.bucket_counts.extend([1])
    summary = scope.metrics.add(name="gc.pause", unit="s", description=description)
    dp = summary.summary.data_points.add(time_unix_nano=at_ns, count=4, sum=0.8)
    for q, v in ((0.5, 0.1), (0.99, 0.4)):
        quantile = dp.quantile_values.add()
        quantile.quantile, quantile.value = q, v
    return request.SerializeToString()


def batch(raw: bytes, received_ns: int, batch_id: str, sets: AttributeSets):
    provenance = Provenance("otlp_metrics", "otlp", "grpc:127.0.0.1", Caller("grpc", "127.0.0.1"), batch_id,
                            received_ns, "default", "default")
    window = AcceptWindow(max_age_ns=10 * 365 * 86400 * NS, max_future_ns=10 * 365 * 86400 * NS)
    adapted = metrics_to_arrow(decode_request(raw), sets)
    finalizer = Finalizer(window)
    import pyarrow as pa

    return pa.concat_tables([finalizer.finish(d, provenance, adapted.outcome) for d in adapted.drafts])


def main() -> None:
    assert latest_version() == 6, "run this with the release of schema version 6 first on PYTHONPATH"
    sets = AttributeSets()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        store = EmbeddedStore("default", DATABASE, data)
        store.open()
        requests = [
            (SDK_PAYLOAD.read_bytes(), RECEIVED, "1f0e2d3c4b5a69788796a5b4c3d2e1f0"),
            (every_kind(RECEIVED - NS, ""), RECEIVED, "00112233445566778899aabbccddeeff"),
            # The same series a minute later, now described: each point keeps its own description.
            (every_kind(RECEIVED + 59 * NS, "described later"), RECEIVED + 60 * NS, "ffeeddccbbaa99887766554433221100"),
        ]
        for i, (raw, received, batch_id) in enumerate(requests):
            store.insert_group(POINTS, batch(raw, received, batch_id, sets), f"{i + 1:032x}")
        out = store.execute(f"SELECT * FROM {DATABASE}.metric_points ORDER BY series_id, time, kind",
                            fmt="JSONEachRow")
        (HERE / "v6_rows.jsonl").write_bytes(out)
        store.close()
        shutil.rmtree(data / "chdb" / "data" / "system", ignore_errors=True)  # query logs: not needed, large
        with tarfile.open(HERE / "v6_store.tar.gz", "w:gz") as tar:
            tar.add(data, arcname="data")
    print(f"{len(out.splitlines())} rows; {(HERE / 'v6_store.tar.gz').stat().st_size} bytes")


if __name__ == "__main__":
    main()
