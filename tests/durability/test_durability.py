"""Acknowledged data survives crashes, restarts and store outages, exactly once.

Real gateway processes, real kills, real damaged files; the store faults are
the switches in gateway.testing.faults (test-only, off unless the environment
asks for them).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from telemetry_gateway.gateway.spool.records import DATA, scan
from tests.gateway_process import ROOT
from tests.receivers.otlp_requests import gauge_request, post

pytestmark = pytest.mark.integration

METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
PB = {"Content-Type": "application/x-protobuf"}
POINTS = 50


def numbered_request(service: str, number: int, points: int = POINTS) -> bytes:
    """A request whose points carry req=<number> and seq=<0..points-1>."""
    return gauge_request(service, [
        {"value": float(j), "attrs": {"req": str(number), "seq": str(j)}} for j in range(points)
    ]).SerializeToString()


def send_http(gw, service: str, number: int) -> int:
    return post(gw.http_url, "/v1/metrics", numbered_request(service, number), PB)[0]


def per_request(gw, service: str) -> dict[int, tuple[int, int]]:
    """{req: (rows, distinct seq)} as stored."""
    rows = gw.rows(
        "SELECT attributes['req'] AS r, toString(count()) AS n, toString(uniqExact(attributes['seq'])) AS u "
        f"FROM telemetry.metric_points WHERE service_name = '{service}' GROUP BY r"
    )
    return {int(r["r"]): (int(r["n"]), int(r["u"])) for r in rows}


def wait_for(predicate, timeout: float = 60, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


def settled(gw, service: str, expected_requests: set[int], timeout: float = 60) -> dict[int, tuple[int, int]]:
    return wait_for(lambda: (lambda got: got if expected_requests <= set(got) else None)(per_request(gw, service)), timeout) \
        or per_request(gw, service)


async def load_until_killed(gw, service: str, total: int, kill_after: int) -> tuple[set[int], set[int]]:
    """Send numbered requests from 8 concurrent gRPC senders; SIGKILL the gateway
    after `kill_after` acks. Returns (acknowledged, attempted) request numbers."""
    acked: set[int] = set()
    attempted: set[int] = set()
    numbers = list(range(total))
    killed = asyncio.Event()
    async with grpc.aio.insecure_channel(gw.grpc_endpoint) as channel:
        call = channel.unary_unary(METRICS)

        async def sender() -> None:
            while numbers and not killed.is_set():
                n = numbers.pop(0)
                attempted.add(n)
                try:
                    await call(numbered_request(service, n), timeout=10)
                except grpc.aio.AioRpcError:
                    continue
                acked.add(n)
                if len(acked) >= kill_after and not killed.is_set():
                    killed.set()
                    gw.kill()

        await asyncio.gather(*(sender() for _ in range(8)))
    return acked, attempted


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "two-workers"])
def test_sigkill_under_load_loses_no_acknowledged_point_and_stores_none_twice(start_gateway, workers):
    """With listener workers the gateway process is the one killed: they answer what it had spooled,
    fail what it had not (the senders retry), and exit, leaving the ports to the next start."""
    gw = start_gateway({"store": {"batch": {"max_delay": "100ms", "max_rows": 500}},
                        "receivers": {"otlp": {"workers": workers}}})
    acked, attempted = asyncio.run(load_until_killed(gw, "killed", total=400, kill_after=120))
    assert gw.proc.returncode == -9 and len(acked) >= 120
    gw.start()
    stored = settled(gw, "killed", acked)
    missing = sorted(acked - set(stored))
    assert missing == [], f"acknowledged requests lost: {missing[:20]}"
    assert all(stored[n] == (POINTS, POINTS) for n in acked), "an acknowledged request is incomplete or duplicated"
    assert all(n in attempted and stored[n] == (POINTS, POINTS) for n in stored), "a stored request is partial or duplicated"


@pytest.mark.parametrize("crash_after", ["samples", "series"])
def test_a_crash_between_insert_and_done_stores_the_group_once(start_gateway, crash_after):
    # After `samples`: the group is stored, DONE is not. After `series`: the group's series are
    # described, its points are not.
    gw = start_gateway({"store": {"batch": {"max_delay": "50ms", "max_rows": POINTS}}}, faults=True)
    gw.fault("store-down")
    assert send_http(gw, "crash", 1) == 200 and send_http(gw, "crash", 2) == 200
    # The writer has announced group [1] and keeps retrying; now let the insert
    # through and die right after it, before DONE reaches the spool.
    time.sleep(0.3)
    gw.fault("crash-after-insert", crash_after)
    gw.clear_fault("store-down")
    assert gw.proc.wait(30) == 137
    # Restart with batches large enough that a naive replay would regroup [1, 2]
    # under a new token and store request 1 a second time.
    gw.reconfigure({"store": {"batch": {"max_rows": 100000}}})
    gw.start()
    stored = settled(gw, "crash", {1, 2})
    time.sleep(1)
    assert per_request(gw, "crash") == {1: (POINTS, POINTS), 2: (POINTS, POINTS)}
    # The two requests' points, and their two ingest_log rows unless those were stored before the crash.
    assert gw.metric("gateway_spool_replayed_batches_total") >= 2
    assert stored


def test_a_store_outage_pushes_back_then_everything_acknowledged_arrives(start_gateway):
    gw = start_gateway({"spool": {"max_size_mib": 0.05}, "store": {"retry": {"initial": "50ms", "max": "200ms"}},
                        "limits": {"retry_after": "2s"}}, faults=True)
    gw.fault("store-down")
    acked, refused = [], None
    for n in range(200):
        code, headers, body = post(gw.http_url, "/v1/metrics", numbered_request("outage", n), PB)
        if code == 200:
            acked.append(n)
            continue
        refused = (code, headers, status_pb2.Status.FromString(body).message)
        break
    assert acked and refused is not None, "the spool bound was never reached"
    code, headers, message = refused
    assert code == 429 and headers["retry-after"] == "2"
    assert "the spool holds" in message and "not yet stored" in message
    with grpc.insecure_channel(gw.grpc_endpoint) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(METRICS)(numbered_request("outage", 999), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    details = dict(info.value.trailing_metadata())["grpc-status-details-bin"]
    retry = error_details_pb2.RetryInfo()
    status_pb2.Status.FromString(details).details[0].Unpack(retry)
    assert retry.retry_delay.seconds == 2
    assert wait_for(lambda: gw.metric("gateway_store_errors_total") > 0)
    gw.clear_fault("store-down")
    stored = settled(gw, "outage", set(acked))
    assert stored == {n: (POINTS, POINTS) for n in acked}
    assert send_http(gw, "outage", 1000) == 200  # room again


def deadletter_cli(gw, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "telemetry_gateway.gateway.cli", "deadletter", *args, "--config", str(gw.config_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_poison_batch_goes_to_the_dead_letter_area_and_the_rest_is_stored(start_gateway):
    gw = start_gateway({"store": {"batch": {"max_delay": "500ms"}}}, faults=True)
    gw.fault("reject-service", "poison")
    assert send_http(gw, "healthy", 1) == 200 and send_http(gw, "poison", 2) == 200 and send_http(gw, "healthy", 3) == 200
    assert settled(gw, "healthy", {1, 3}) == {1: (POINTS, POINTS), 3: (POINTS, POINTS)}
    assert wait_for(lambda: gw.metric("gateway_dead_letter_batches_total") == 1)
    assert per_request(gw, "poison") == {}
    listing = deadletter_cli(gw, "list")
    assert listing.returncode == 0 and "1 dead-lettered batch(es)" in listing.stdout
    [entry] = [line for line in listing.stdout.splitlines() if "rows" in line]
    batch_id = entry.split()[0]
    assert f"default/metric_points  {POINTS} rows  fault injected: Code: 117" in entry
    assert gw.metric("gateway_dead_letter_rows_total") == POINTS
    # Still refused: it comes back to the dead-letter area under the id the user listed.
    assert deadletter_cli(gw, "redrive", batch_id).returncode == 0
    assert wait_for(lambda: gw.metric("gateway_dead_letter_batches_total") == 2)
    assert wait_for(lambda: batch_id in deadletter_cli(gw, "list").stdout)
    gw.clear_fault("reject-service")
    redrive = deadletter_cli(gw, "redrive", batch_id)
    assert redrive.returncode == 0, redrive.stderr
    assert settled(gw, "poison", {2}) == {2: (POINTS, POINTS)}
    assert "0 dead-lettered batch(es)" in deadletter_cli(gw, "list").stdout


def test_a_group_refused_after_some_tables_took_it_stores_nothing_twice(start_gateway):
    from tests.store.testdata.make_v6_store import every_kind

    gw = start_gateway({"store": {"batch": {"max_delay": "50ms"}}}, faults=True)
    gw.fault("store-down")
    now = time.time_ns()
    # One group of two requests: every kind from "mixed", gauges from "plain".
    assert post(gw.http_url, "/v1/metrics", every_kind(now - 10**9, "", "mixed", now - 600 * 10**9), PB)[0] == 200
    assert send_http(gw, "plain", 1) == 200
    time.sleep(0.3)
    # `series` and `samples` take the group's share, then `histogram_points` refuses it.
    gw.fault("reject-table", "histogram_points:mixed")
    gw.clear_fault("store-down")
    assert settled(gw, "plain", {1}) == {1: (POINTS, POINTS)}
    assert wait_for(lambda: gw.metric("gateway_dead_letter_batches_total") == 1)

    def kinds() -> dict[str, int]:
        rows = gw.rows("SELECT kind, toString(count()) AS n FROM telemetry.metric_points "
                       "WHERE service_name = 'mixed' GROUP BY kind")
        return {r["kind"]: int(r["n"]) for r in rows}

    assert kinds() == {"gauge": 2, "sum": 1}  # stored once, before the refusal
    time.sleep(1)
    assert per_request(gw, "plain") == {1: (POINTS, POINTS)}
    gw.clear_fault("reject-table")
    assert deadletter_cli(gw, "redrive", "--all").returncode == 0
    # The redrive stores only what the refusal kept back.
    assert wait_for(lambda: kinds() == {"gauge": 2, "sum": 1, "histogram": 1, "exponential_histogram": 1,
                                        "summary": 1}), kinds()
    time.sleep(1)
    assert kinds() == {"gauge": 2, "sum": 1, "histogram": 1, "exponential_histogram": 1, "summary": 1}
    assert per_request(gw, "plain") == {1: (POINTS, POINTS)}


def test_sigterm_with_the_store_down_leaves_the_rest_in_the_spool_and_a_damaged_record_is_cut(start_gateway):
    gw = start_gateway({"shutdown": {"drain_timeout": "1s"}}, faults=True)
    gw.fault("store-down")
    for n in (1, 2, 3):
        assert send_http(gw, "damaged", n) == 200
    started = time.monotonic()
    assert gw.stop() == 0
    assert time.monotonic() - started < 15
    # Damage the second DATA record of the spool on disk.
    segments = sorted((gw.workdir / "data" / "spool").glob("segment-*.spool"))
    data_records = [(seg, offset) for seg in segments for offset, rec in scan(seg.read_bytes()).records
                    if rec.kind == DATA and rec.meta["table"] == "metric_points"]
    assert len(data_records) == 3
    segment, offset = data_records[1]
    raw = bytearray(segment.read_bytes())
    raw[offset + 40] ^= 0xFF
    segment.write_bytes(bytes(raw))
    gw.clear_fault("store-down")
    gw.start()
    assert settled(gw, "damaged", {1, 3}) == {1: (POINTS, POINTS), 3: (POINTS, POINTS)}
    assert gw.metric("gateway_spool_cut_bytes_total") > 0
    assert "checksum mismatch" in gw.log()


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "two-workers"])
def test_the_memory_limiter_pushes_back_and_lets_go_once_the_store_catches_up(start_gateway, workers):
    # 1 MiB: a few requests queued for a store that is down fill it.
    gw = start_gateway({"limits": {"max_memory_mib": 1}, "receivers": {"otlp": {"workers": workers}}}, faults=True)
    gw.fault("store-down")
    codes = [send_http(gw, "memory", n) for n in range(200)]
    assert 429 in codes, "the limiter never pushed back"
    refused = codes.index(429)
    code, headers, body = post(gw.http_url, "/v1/metrics", numbered_request("memory", 999), PB)
    assert code == 429 and "retry-after" in headers
    assert "of a 1 MiB memory limit" in status_pb2.Status.FromString(body).message
    gw.clear_fault("store-down")
    # Once the queue is stored the limiter lets go: it measures what it holds, not RSS.
    assert wait_for(lambda: send_http(gw, "memory", 1000) == 200)
    assert wait_for(lambda: set(per_request(gw, "memory")) >= set(range(refused)) | {1000})


def test_redrive_without_a_running_gateway_inserts_directly(start_gateway):
    gw = start_gateway({"store": {"batch": {"max_delay": "50ms"}}}, faults=True)
    gw.fault("reject-service", "offline")
    assert send_http(gw, "offline", 7) == 200
    assert wait_for(lambda: gw.metric("gateway_dead_letter_batches_total") == 1)
    assert gw.stop() == 0
    result = deadletter_cli(gw, "redrive", "--all")
    assert result.returncode == 0, result.stderr
    query = subprocess.run(
        [sys.executable, "-m", "telemetry_gateway.gateway.cli", "sql", "--config", str(gw.config_path), "--format", "JSONEachRow",
         "SELECT toString(count()) AS n FROM telemetry.metric_points WHERE service_name = 'offline'"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert json.loads(query.stdout) == {"n": str(POINTS)}


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB filesystem: a real full disk (mounting needs root, as CI has)."""
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_spool_disk_answers_503_and_never_hangs_or_kills_the_spool(start_gateway, tiny_disk):
    gw = start_gateway({"spool": {"path": str(tiny_disk / "spool")}}, faults=True)
    gw.fault("store-down")
    # ~280 KB requests: after three the 1 MiB disk has ~200 KB, more than the spool's reserve but less than a request,
    # so the fourth write itself runs out of space (later ones are throttled by the reserve, 429).
    codes = [post(gw.http_url, "/v1/metrics", numbered_request("fulldisk", n, 3000), PB)[0] for n in range(60)]
    assert 503 in codes, codes
    acknowledged = [n for n, code in enumerate(codes) if code == 200]
    assert acknowledged, codes
    assert "spool" in gw.log() and "No space left on device" in gw.log()
    gw.clear_fault("store-down")
    # The spool writer survived the full disk: what was acknowledged is stored.
    assert wait_for(lambda: set(acknowledged) <= set(per_request(gw, "fulldisk")))
