"""Listener workers (`receivers.otlp.workers`): processes of their own serve the OTLP ports and hand
every request to the gateway process. The receiver suites run against them too (`listener_gateway`);
these tests are about the processes: who listens, a worker that dies, a port already taken, a
gateway process that dies."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.error
import urllib.request

import psutil
import pytest

from telemetry_gateway.gateway.errors import (BadRequest, GatewayError, PayloadTooLarge, PermissionDenied,
                                              RequestTimeout, StoreRejected, StoreUnavailable, Throttled,
                                              Unauthenticated, UnsupportedMediaType)
from telemetry_gateway.gateway.quotas import TenantThrottled
from telemetry_gateway.gateway.receivers import status
from telemetry_gateway.gateway.workers.link import MainLink, error_header, error_of, frame, read_frame
from tests.durability.test_durability import wait_for
from tests.gateway_process import GatewayProcess
from tests.receivers.otlp_requests import gauge_request, post, unique
from tests.receivers.test_remote_write import HEADERS as RW_HEADERS
from tests.receivers.test_remote_write import write_request

pytestmark = pytest.mark.integration

PB = {"Content-Type": "application/x-protobuf"}


def workers_of(gw: GatewayProcess) -> list[psutil.Process]:
    return [p for p in psutil.Process(gw.proc.pid).children()
            if "telemetry_gateway.gateway.workers.process" in " ".join(p.cmdline())]


def listening_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def readiness(gw: GatewayProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(gw.admin_url + "/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def send(gw: GatewayProcess, service: str, n: int = 3) -> int:
    return post(gw.http_url, "/v1/metrics", gauge_request(service, [{"value": float(i)} for i in range(n)])
                .SerializeToString(), PB)[0]


def stored(gw: GatewayProcess, service: str, n: int) -> int:
    rows = gw.wait_rows(f"SELECT value FROM telemetry.metric_points WHERE service_name = '{service}'", n)
    return len(rows)


def test_the_workers_hold_the_ports_and_exit_with_the_gateway(start_gateway):
    gw = start_gateway({"receivers": {"otlp": {"workers": 2}}})
    workers = workers_of(gw)
    assert len(workers) == 2
    ports = {gw.grpc_port, gw.http_port}
    assert all(ports <= listening_ports(w.pid) for w in workers)
    assert not ports & listening_ports(gw.proc.pid), "the gateway process listens on an OTLP port itself"
    service = unique("workers")
    assert send(gw, service) == 200 and stored(gw, service, 3) == 3
    assert gw.stop() == 0
    assert wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), 10)


def test_a_killed_worker_is_reported_and_started_again(start_gateway):
    gw = start_gateway({"receivers": {"otlp": {"workers": 2}}})
    victim = workers_of(gw)[0]
    victim.send_signal(signal.SIGKILL)
    # Not ready while it is down (the restart waits half a second), then ready with two workers again.
    status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(readiness(gw)), 10, 0.05) or readiness(gw)
    assert status == 503 and "listener worker" in body and "exited (code -9)" in body
    assert wait_for(lambda: readiness(gw)[0] == 200, 30)
    assert len(workers_of(gw)) == 2 and victim.pid not in {w.pid for w in workers_of(gw)}
    assert "exited with code -9; starting it again" in gw.log()
    assert gw.metric("gateway_worker_exits_total") == 1
    service = unique("after_restart")
    for _ in range(4):  # connections land on either worker
        assert send(gw, service, 1) == 200
    assert stored(gw, service, 4) == 4


def test_otlp_is_adapted_in_the_workers_and_remote_write_in_the_gateway_process(start_gateway):
    """OTLP metrics and logs go over as finished rows; remote write, whose metadata the gateway process
    remembers between requests, goes over as its payload. Both land the same."""
    gw = start_gateway({"receivers": {"otlp": {"workers": 2}}})
    service = unique("adapted")
    assert send(gw, service) == 200 and stored(gw, service, 3) == 3
    sample = write_request(service, [("up", 1.0, int(time.time() * 1000))])
    code, _, text = post(gw.http_url, "/api/v1/write", sample, RW_HEADERS)
    assert code == 204, text
    assert gw.wait_rows(f"SELECT value FROM telemetry.metric_points WHERE metric_name = 'up' "
                        f"AND service_name = '{service}'", 1) == [{"value": 1.0}]
    text = gw.metrics_text()
    assert 'gateway_worker_requests_total{adapted_in="worker",format="otlp_metrics"} 1.0' in text
    assert 'gateway_worker_requests_total{adapted_in="gateway",format="remote_write"} 1.0' in text


def test_a_port_another_process_holds_stops_the_start(start_gateway, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(RuntimeError) as caught:
            start_gateway({"receivers": {"otlp": {"workers": 2, "grpc": {"endpoint": f"127.0.0.1:{port}"}}}})
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in str(caught.value)


def test_two_gateways_with_workers_never_share_a_port(start_gateway):
    """SO_REUSEPORT would let a second gateway's workers join the first's port: the start refuses."""
    first = start_gateway({"receivers": {"otlp": {"workers": 2}}})
    ports = {"grpc": {"endpoint": first.grpc_endpoint}, "http": {"endpoint": f"127.0.0.1:{first.http_port}"}}
    with pytest.raises(RuntimeError) as caught:
        start_gateway({"receivers": {"otlp": {"workers": 2, **ports}}}, name="second")
    assert f"cannot listen on {first.grpc_endpoint}: Address already in use" in str(caught.value)
    service = unique("first_only")
    assert send(first, service) == 200 and stored(first, service, 3) == 3


def test_the_workers_exit_when_the_gateway_process_is_killed(start_gateway):
    gw = start_gateway({"receivers": {"otlp": {"workers": 2}}})
    workers = workers_of(gw)
    gw.kill()
    gone = wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), 15)
    assert gone, f"workers left behind: {[w.pid for w in workers if w.is_running()]}"
    with socket.socket() as probe:  # the ports are free for the next start
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", gw.grpc_port))


def test_worker_log_lines_name_the_worker(start_gateway):
    gw = start_gateway({"receivers": {"otlp": {"workers": 2}}, "log_level": "info"})
    assert "worker-0 " in gw.log() and "worker-1 " in gw.log()


ERRORS = [BadRequest("bad"), PayloadTooLarge("big"), UnsupportedMediaType("type"), RequestTimeout("late"),
          Unauthenticated("who"), PermissionDenied("no"), StoreUnavailable("down"), StoreRejected("refused"),
          Throttled("slow", 2.5), TenantThrottled("flood", 3.0)]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_crosses_the_link_as_the_same_answer(error):
    back = error_of(json.loads(frame(error_header(error))[8:]))
    assert type(back) is type(error) and str(back) == str(error)
    assert (status.http_status(back), status.grpc_code(back)) == (status.http_status(error), status.grpc_code(error))
    assert status.retry_after(back) == status.retry_after(error)


def test_a_bug_or_a_class_not_of_the_gateway_becomes_an_internal_error():
    bug = error_of(error_header(KeyError("lost")))
    assert type(bug) is GatewayError and "internal error: KeyError" in str(bug) and status.http_status(bug) == 500
    assert type(error_of({"error": "SystemExit", "message": "m"})) is GatewayError
    assert type(error_of({"error": "PartlyStored", "message": "m"})) is GatewayError


async def linked():
    """A worker's link on one end of a socket pair; the gateway process's reader and writer on the other."""
    ours, theirs = socket.socketpair()
    link = MainLink(*await asyncio.open_connection(sock=ours))
    reading = asyncio.create_task(link.run())
    return (link, reading, *await asyncio.open_connection(sock=theirs))


def test_calls_waiting_when_the_gateway_process_goes_away_fail_retryably():
    async def run() -> None:
        link, reading, gateway_reader, gateway_writer = await linked()
        waiting = asyncio.create_task(link.call({"op": "ingest"}, b"payload"))
        header, body = await read_frame(gateway_reader)
        assert (header["op"], body) == ("ingest", b"payload")
        gateway_writer.close()
        with pytest.raises(StoreUnavailable, match="went away"):
            await waiting
        with pytest.raises(StoreUnavailable, match="not answering"):
            await link.call({"op": "admit"})
        await reading

    asyncio.run(run())


def test_an_answer_reaches_the_call_it_belongs_to():
    async def run() -> None:
        link, reading, gateway_reader, gateway_writer = await linked()
        first = asyncio.create_task(link.call({"op": "admit"}))
        second = asyncio.create_task(link.call({"op": "ingest"}, b"x"))
        asked = [(await read_frame(gateway_reader))[0] for _ in range(2)]
        by_op = {h["op"]: h["id"] for h in asked}
        gateway_writer.write(frame({"id": by_op["ingest"], "report": {"accepted": 1, "rejected": 0, "message": ""}}))
        gateway_writer.write(frame({"id": by_op["admit"], **error_header(Unauthenticated("no token"))}))
        assert (await second)["report"]["accepted"] == 1
        with pytest.raises(Unauthenticated, match="no token"):
            await first
        gateway_writer.close()
        await reading

    asyncio.run(run())


def test_adapted_rows_cross_the_link_unchanged():
    from telemetry_gateway.adapters.attributes import AttributeSets
    from telemetry_gateway.adapters.base import AcceptWindow
    from telemetry_gateway.gateway.adapting import Adapted, WorkerAdapter
    from telemetry_gateway.gateway.batch import Caller
    from telemetry_gateway.gateway.components import FORMATS
    from telemetry_gateway.gateway.finalize import Finalizer
    from telemetry_gateway.gateway.tenants import TenantState

    request = gauge_request("crossing", [{"value": 1.5, "attrs": {"k": "v"}}, {"value": 2.0, "time": 0},
                                         {"value": float("nan")}])
    adapter = WorkerAdapter(Finalizer(AcceptWindow()), lambda t: TenantState(t, AttributeSets(), None, None),
                            type("Counters", (), {"rejected": lambda *a: None})())
    adapted = adapter.adapt(FORMATS["otlp_metrics"], request.SerializeToString(), Caller("grpc", "10.0.0.1"), "acme",
                            "otlp-grpc:10.0.0.1")
    back = Adapted.of(json.loads(json.dumps(adapted.header())), adapted.body())
    assert back.rows.schema == adapted.rows.schema and back.rows.num_rows == 2
    assert repr(back.rows.to_pylist()) == repr(adapted.rows.to_pylist())  # repr: the NaN row equals itself
    assert back.outcome == adapted.outcome and back.outcome.rejected_count == 1 and back.outcome.warned
    assert back.received_ns == adapted.received_ns
    assert set(back.rows.column("tenant").to_pylist()) == {"acme"}
