"""Listeners bound what a connection may hold: idle and half-sent connections are closed,
past the cap new ones get 503, and hostile bodies cannot stall the other listeners."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import urllib.request

import pytest

from tests.receivers.otlp_requests import post

pytestmark = pytest.mark.integration
LIMITS = {"max_connections": 4, "idle_timeout": "1s", "request_timeout": "1s"}


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    from tests.gateway_process import GatewayProcess

    gw = GatewayProcess(tmp_path_factory.mktemp("tight"), {"receivers": {"otlp": {"http": {"connections": LIMITS}}}}).start()
    yield gw
    assert gw.stop() == 0


def connect(gw) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.http_port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_an_idle_connection_is_closed(tight):
    with connect(tight) as sock:
        assert read_all(sock) == b""  # closed by the server, having sent nothing


def test_a_body_shorter_than_its_content_length_gets_408(tight):
    with connect(tight) as sock:
        sock.sendall(b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                     b"Content-Length: 10000000\r\n\r\n0123456789")
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1s" in answer
        read_all(sock)  # then the server closes the connection (else this times out)


def test_past_the_connection_cap_new_connections_get_503_and_the_admin_listener_answers(tight):
    held = [connect(tight) for _ in range(LIMITS["max_connections"])]
    try:
        time.sleep(0.2)
        with connect(tight) as extra:
            assert read_all(extra).startswith(b"HTTP/1.1 503")
        with urllib.request.urlopen(tight.admin_url + "/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        for sock in held:
            sock.close()
    # The server notices the closed connections and takes new ones again.
    from tests.durability.test_durability import wait_for

    assert wait_for(lambda: _status(tight) != 503, timeout=10)


def _status(gw) -> int:
    with connect(gw) as sock:
        sock.sendall(b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            return int(read_all(sock).split()[1])
        except ConnectionResetError:
            return 503  # refused at the cap before our request was read: closed with a reset


def test_a_gzip_body_of_many_members_is_refused_at_once(tight):
    bomb = gzip.compress(b"") * 160_000
    code, _, body = post(tight.http_url, "/v1/metrics", bomb,
                         {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert code == 400 and b"more than 64 members" in body


def test_listeners_answer_while_a_large_request_is_decoded(gateway):
    from tests.receivers.otlp_requests import gauge_request

    points = [{"value": float(i), "attrs": {"i": str(i), "k": "v" * 20}} for i in range(250_000)]
    body = gauge_request("big_request", points).SerializeToString()
    answered_during: list[float] = []
    result: dict = {}

    def big() -> None:
        result["answer"] = post(gateway.http_url, "/v1/metrics", body, {"Content-Type": "application/x-protobuf"})

    sender = threading.Thread(target=big)
    sender.start()
    while sender.is_alive():
        try:
            with urllib.request.urlopen(gateway.admin_url + "/healthz", timeout=30) as r:
                if r.status == 200 and sender.is_alive():
                    answered_during.append(time.monotonic())
        except OSError:
            pass
        time.sleep(0.05)
    assert result["answer"][0] == 200
    # The decode runs off the event loop, so /healthz kept answering while it ran.
    assert len(answered_during) >= 3


def test_clients_that_leave_mid_body_cost_one_warning_line_not_tracebacks(tight):
    for _ in range(20):
        with connect(tight) as sock:
            sock.sendall(b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                         b"Content-Length: 1000\r\n\r\n0123456789")
            time.sleep(0.05)
    with urllib.request.urlopen(tight.admin_url + "/healthz", timeout=5) as r:
        assert r.status == 200
    time.sleep(0.5)
    log = tight.log()
    assert "WARNING telemetry_gateway.gateway.receivers.connections" in log and "client went away mid-body" in log
    assert log.count("client went away mid-body") <= 2  # rate-limited: one line per interval
    assert "Traceback" not in log and " ERROR " not in log


def test_grpc_closes_silent_connections_and_caps_them(start_gateway):
    limits = {"max_connections": 3, "idle_timeout": "1s", "request_timeout": "1s"}
    gw = start_gateway({"receivers": {"otlp": {"grpc": {"connections": limits}}}})
    held = [socket.create_connection(("127.0.0.1", gw.grpc_port), timeout=15) for _ in range(3)]
    try:
        # A fourth connection past the cap is closed at once; the held ones, silent, after the handshake timeout.
        with socket.create_connection(("127.0.0.1", gw.grpc_port), timeout=15) as extra:
            assert read_all(extra) == b""  # closed before any handshake
        for sock in held:
            data = read_all(sock)  # GOAWAY, then closed
            assert b"handshake timeout" in data or b"connection idle" in data
    finally:
        for sock in held:
            sock.close()
    import grpc

    from tests.durability.test_durability import METRICS, numbered_request

    with grpc.insecure_channel(gw.grpc_endpoint) as channel:
        assert channel.unary_unary(METRICS)(numbered_request("after_cap", 1), timeout=30) == b""


def test_at_the_descriptor_limit_accept_errors_are_logged_once_and_the_gateway_recovers(tmp_path):
    from tests.gateway_process import GatewayProcess
    from tests.durability.test_durability import send_http

    gw = GatewayProcess(tmp_path, fd_limit=400).start()
    try:
        flood = []
        for _ in range(600):
            try:
                flood.append(socket.create_connection(("127.0.0.1", gw.http_port), timeout=2))
            except OSError:
                break  # the backlog is full: the gateway has run out of descriptors
        time.sleep(3)
        for sock in flood:
            sock.close()
        time.sleep(1)
        assert send_http(gw, "after_flood", 1) == 200
    finally:
        assert gw.stop() == 0
    log = gw.log()
    assert "Too many open files" in log
    assert log.count("socket.accept() out of system resource") <= 2  # not one per attempt


def test_a_client_sending_its_headers_a_byte_at_a_time_is_closed(tight):
    with connect(tight) as sock:
        sock.settimeout(1)
        closed = False
        for byte in b"POST /v1/metrics HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n":
            try:
                sock.sendall(bytes([byte]))
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
            time.sleep(0.2)
    assert closed, "the server waited for the headers as long as the client kept sending"
