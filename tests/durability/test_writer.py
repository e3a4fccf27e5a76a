"""The store writer never dies and never fails silently: batches of any shape are stored,
a batch that cannot be stored is isolated and dead-lettered (live or on replay), and
readiness names a writer that is not making progress."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid

import pyarrow as pa
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.gateway.batch import Batch
from telemetry_gateway.gateway.spool.spool import Spool
from telemetry_gateway.schema import POINTS
from tests.adapters.otlp.helpers import context, finalized
from tests.durability.test_durability import PB, wait_for
from tests.receivers.otlp_requests import post

pytestmark = pytest.mark.integration


def histogram_request(service: str, unit: str, n: int) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = service
    metric = rm.scope_metrics.add().metrics.add(name="http.server.duration", unit=unit)
    metric.histogram.aggregation_temporality = 1
    now = time.time_ns()
    for i in range(n):
        dp = metric.histogram.data_points.add(time_unix_nano=now, start_time_unix_nano=now - 10**9, count=3, sum=7.0,
                                              explicit_bounds=[5.0, 10.0], bucket_counts=[1, 1, 1])
        dp.attributes.add(key="i").value.string_value = str(i)
    return request.SerializeToString()


def readyz(gw) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(gw.admin_url + "/readyz", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_rescaled_and_plain_batches_in_one_insert_are_all_stored(start_gateway):
    # A histogram in ms (rescaled to s, as the JS SDK sends) beside one in s and a gauge,
    # all within one batch delay: they go into one insert.
    gw = start_gateway({"store": {"batch": {"max_delay": "1s"}}})
    service = f"shapes_{uuid.uuid4().hex[:8]}"
    for unit in ("ms", "s", "ms"):
        assert post(gw.http_url, "/v1/metrics", histogram_request(service, unit, 5), PB)[0] == 200
    rows = gw.wait_rows(f"SELECT unit, sum FROM telemetry.metric_points WHERE service_name = '{service}'", 15)
    assert len(rows) == 15
    assert sorted({(r["unit"], r["sum"]) for r in rows}) == [("s", 0.007), ("s", 7)]
    assert readyz(gw)[0] == 200


def test_readiness_names_the_writer_that_cannot_store_and_recovers(start_gateway):
    gw = start_gateway(faults=True)
    gw.fault("store-down")
    assert post(gw.http_url, "/v1/metrics", histogram_request("stalled", "s", 3), PB)[0] == 200
    code, text = wait_for(lambda: (r := readyz(gw))[0] == 503 and r)
    assert code == 503
    assert "default/metric_points: no insert has succeeded" in text and "the store is down" in text
    assert "insert into default/metric_points failed" in gw.log()
    gw.clear_fault("store-down")
    assert wait_for(lambda: readyz(gw)[0] == 200)
    assert len(gw.wait_rows("SELECT 1 FROM telemetry.metric_points WHERE service_name = 'stalled'", 3)) == 3


def _batch(service: str, bad: bool) -> Batch:
    rows = PointRows(AttributeSets())
    for i in range(4):
        rows.add(time_ns=time.time_ns(), name="spooled", kind="gauge", value=float(i), attributes={"i": str(i)},
                 resource={"service.name": service})
    table = finalized(rows.finish(), context(time.time_ns())).table
    if bad:
        # Spooled by a broken release: a column no cast can bring into the table's shape.
        index = table.schema.get_field_index("value")
        table = table.set_column(index, "value", pa.array([[1]] * table.num_rows, pa.list_(pa.int64())))
    return Batch.local(POINTS, table)


async def _spool(path, batches: list[Batch]) -> None:
    spool = Spool(path)
    spool.open()
    spool.start(asyncio.get_running_loop())
    for batch in batches:
        await spool.append_batch(batch, lambda b: None)
    await spool.close()


def test_a_spooled_batch_that_cannot_be_inserted_is_dead_lettered_and_the_rest_replayed(start_gateway):
    gw = start_gateway()
    assert gw.stop() == 0
    asyncio.run(_spool(gw.workdir / "data" / "spool", [_batch("replay_ok", False), _batch("replay_bad", True),
                                                         _batch("replay_ok", False)]))
    gw.start()
    assert len(gw.wait_rows("SELECT 1 FROM telemetry.metric_points WHERE service_name = 'replay_ok'", 8)) == 8
    assert wait_for(lambda: gw.metric("gateway_dead_letter_batches_total") == 1)
    assert "moved to the dead-letter area" in gw.log() and "do not fit table metric_points" in gw.log()
    assert readyz(gw)[0] == 200
    # The writer goes on: new data is stored after the poison batch.
    assert post(gw.http_url, "/v1/metrics", histogram_request("after_poison", "s", 2), PB)[0] == 200
    assert len(gw.wait_rows("SELECT 1 FROM telemetry.metric_points WHERE service_name = 'after_poison'", 2)) == 2
