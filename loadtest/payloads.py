"""Pre-encoded OTLP requests for load runs: nothing is built while the clock runs."""

from __future__ import annotations

import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest


def metrics_requests(count: int, points_per_request: int, series: int, attributes: int = 10, metrics: int = 10,
                     first_series: int = 0) -> list[bytes]:
    """`count` requests; points cycle through `series` attribute sets with rising times.

    Each point carries `attributes` string attributes. Series repeat across
    requests as they do in real traffic (every series reports every interval);
    with `series` at least count x points every point brings a new set.
    Sets are numbered from `first_series`, so two calls can draw disjoint ones.
    """
    per_metric = max(1, points_per_request // metrics)
    start = time.time_ns() - 3600 * 1_000_000_000
    out, serial = [], 0
    for r in range(count):
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="service.name").value.string_value = "loadgen"
        rm.resource.attributes.add(key="host.name").value.string_value = f"host-{r % 8}"
        sm = rm.scope_metrics.add()
        sm.scope.name = "loadtest"
        for m in range(metrics):
            metric = sm.metrics.add(name=f"load.metric.{m}", unit="1")
            points = metric.sum.data_points if m % 2 else metric.gauge.data_points
            if m % 2:
                metric.sum.aggregation_temporality = 2
                metric.sum.is_monotonic = True
            for _ in range(per_metric):
                s = first_series + serial % series
                dp = points.add(time_unix_nano=start + serial * 1000, start_time_unix_nano=start, as_double=float(serial))
                for a in range(attributes):
                    dp.attributes.add(key=f"label_{a}").value.string_value = f"value-{a}-{s}"
                serial += 1
        out.append(request.SerializeToString())
    return out


def logs_requests(count: int, records_per_request: int) -> list[bytes]:
    now = time.time_ns() - 60 * 1_000_000_000
    out, serial = [], 0
    for _ in range(count):
        request = ExportLogsServiceRequest()
        rl = request.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = "loadgen"
        scope = rl.scope_logs.add()
        for _ in range(records_per_request):
            record = scope.log_records.add(time_unix_nano=now + serial, severity_number=9, severity_text="INFO")
            record.body.string_value = f'10.0.0.{serial % 250} - - "GET /api/items/{serial} HTTP/1.1" 200 {serial % 5000}'
            record.attributes.add(key="http.route").value.string_value = "/api/items/{id}"
            record.attributes.add(key="http.response.status_code").value.int_value = 200
            serial += 1
        out.append(request.SerializeToString())
    return out
