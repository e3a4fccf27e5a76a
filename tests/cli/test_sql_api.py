"""The SQL API of a running gateway: refusals are 4xx with the reason, a long read blocks
neither ingestion nor readiness, a read whose client leaves is cancelled, and SIGTERM does
not wait for a read."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

from tests.cli.test_cli import send
from tests.durability.test_durability import wait_for

pytestmark = pytest.mark.integration
SLOW = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 0"


def api(gw, sql: str, fmt: str = "JSONEachRow") -> tuple[int, str]:
    request = urllib.request.Request(gw.admin_url + "/api/v1/sql", data=json.dumps({"sql": sql, "format": fmt}).encode(),
                                     headers={"Authorization": f"Bearer {gw.token()}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def running_slow_reads(gw) -> int:
    code, text = api(gw, "SELECT count() AS n FROM system.processes WHERE query LIKE '%sipHash64(number)%' "
                         "AND query NOT LIKE '%system.processes%'")
    assert code == 200, text
    return int(json.loads(text)["n"])


def test_refusals_and_failures_are_4xx_with_the_reason(start_gateway):
    gw = start_gateway({"admin": {"query": {"max_result_rows": 10}}})
    assert api(gw, "SELECT file('/etc/passwd')") == (403, "function file() reads the host and is not allowed\n")
    code, text = api(gw, "SELECT * FROM file('/proc/self/environ', 'LineAsString')")
    assert code == 403 and "table function file() is not allowed" in text
    code, text = api(gw, "SELECT number FROM numbers(1000)")
    assert code == 400 and "Limit for result exceeded" in text
    code, text = api(gw, "SELECT * FROM telemetry.no_such_table")
    assert code == 400 and "the query failed" in text
    # Any output format the engine lists, not a fixed few; an unknown one says where to look.
    assert api(gw, "SELECT 1 AS a, 'x' AS b", "TSKV") == (200, "a=1\tb=x\n")
    code, text = api(gw, "SELECT 1", "Nope")
    assert code == 403 and "'Nope' is not an output format" in text


def test_a_long_read_blocks_neither_ingestion_nor_readiness_and_stops_at_its_timeout(start_gateway):
    gw = start_gateway({"admin": {"query": {"timeout": "8s"}}})
    outcome: dict = {}
    reader = threading.Thread(target=lambda: outcome.update(result=api(gw, SLOW)))
    reader.start()
    assert wait_for(lambda: running_slow_reads(gw) == 1, timeout=10)
    with urllib.request.urlopen(gw.admin_url + "/readyz", timeout=5) as r:
        assert r.status == 200
    assert send(gw, "during_read", [1.0, 2.0])[0] == 200
    assert len(gw.wait_rows("SELECT 1 FROM telemetry.metric_points WHERE service_name = 'during_read'", 2)) == 2
    assert reader.is_alive(), "the read ended before ingestion was checked"
    reader.join(60)
    code, text = outcome["result"]
    assert code == 400 and "Timeout exceeded" in text


def test_a_read_whose_client_goes_away_is_cancelled(start_gateway):
    gw = start_gateway({"admin": {"query": {"timeout": "300s"}}})
    body = json.dumps({"sql": SLOW, "format": "CSV"}).encode()
    with socket.create_connection(("127.0.0.1", gw.admin_port)) as sock:
        sock.sendall(b"POST /api/v1/sql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + gw.token().encode()
                     + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert wait_for(lambda: running_slow_reads(gw) == 1, timeout=10)
    assert wait_for(lambda: running_slow_reads(gw) == 0, timeout=30)


def test_sigterm_does_not_wait_for_a_running_read(start_gateway):
    gw = start_gateway({"admin": {"query": {"timeout": "300s"}}})
    threading.Thread(target=api, args=(gw, SLOW), daemon=True).start()
    assert wait_for(lambda: running_slow_reads(gw) == 1, timeout=10)
    assert gw.stop(timeout=60) == 0  # stop() kills (-9) what has not exited by then
