"""The read path's guard and limits, on the real engine: every route to a host file is refused,
and a read that runs too long, uses too much memory or returns too much is stopped with a reason."""

from __future__ import annotations

import threading
import time

import pytest

from telemetry_gateway.gateway.admin import run_read
from telemetry_gateway.gateway.errors import QueryFailed, QueryRefused
from telemetry_gateway.gateway.store.reads import ReadLimits

LIMITS = ReadLimits(timeout_s=3, max_memory_bytes=128 << 20, max_result_rows=1000, max_result_bytes=1 << 20)

HOST_ROUTES = {
    "SELECT file('/etc/passwd')": "function file() reads the host",
    "SELECT FILE('/proc/self/environ')": "function FILE() reads the host",
    "WITH file('/etc/passwd') AS x SELECT x": "function file() reads the host",
    "SELECT 1 UNION ALL SELECT length(file('/etc/passwd'))": "function file() reads the host",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')": "table function file() is not allowed",
    "SELECT * FROM numbers(1) WHERE 1 IN (SELECT 1 FROM file('/etc/passwd', 'LineAsString'))": "table function file() is not allowed",
    "SELECT * FROM view(SELECT file('/etc/passwd'))": "function file() reads the host",
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')": "table function url() is not allowed",
    "SELECT * FROM s3('http://127.0.0.1:9/x.csv')": "table function s3() is not allowed",
    "SELECT * FROM executable('cat /etc/passwd', 'LineAsString')": "table function executable() is not allowed",
    "SELECT * FROM Python(rows)": "table function Python() is not allowed",
    "SELECT 1 INTO OUTFILE '/tmp/leak'": "INTO OUTFILE",
    "SELECT 1 FORMAT JSON": "FORMAT",
    "SELECT 1 SETTINGS readonly = 0": "a SETTINGS clause is not allowed",
    "SELECT * FROM (SELECT 1 SETTINGS max_execution_time = 0)": "a SETTINGS clause is not allowed",
    "DROP DATABASE telemetry": "got DropQuery",
    "INSERT INTO t VALUES (1)": "got InsertQuery",
    "SELECT 1; SELECT file('/etc/passwd')": "not one valid SQL statement",
}


@pytest.mark.parametrize("statement", sorted(HOST_ROUTES))
def test_the_guard_refuses_every_route_out_of_the_store(store, statement):
    with pytest.raises(QueryRefused) as info:
        run_read(store, statement, "TSV", LIMITS, "read-test")
    assert HOST_ROUTES[statement] in str(info.value)


def test_reads_of_the_store_pass(store):
    db = store.database
    assert run_read(store, f"SELECT count() FROM {db}.metric_points", "TSV", LIMITS, "r1") == b"0\n"
    assert b"metric_points" in run_read(store, f"SHOW TABLES FROM {db}", "TSV", LIMITS, "r2")
    assert run_read(store, "SELECT sum(number) FROM numbers(10)", "TSV", LIMITS, "r3") == b"45\n"
    # Words that only look like refused clauses inside a string literal are data.
    assert run_read(store, "SELECT 'FORMAT JSON file(x)'", "TSV", LIMITS, "r4") == b"FORMAT JSON file(x)\n"
    assert run_read(store, "SELECT getSetting('readonly')", "TSV", LIMITS, "r5") == b"1\n"


@pytest.mark.parametrize("statement,reason", [
    ("SELECT number FROM numbers(100000)", "Limit for result exceeded"),
    ("SELECT groupArray(number) FROM numbers(100000000)", "memory limit exceeded"),
    ("SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 0", "Timeout exceeded"),
    ("SELECT * FROM no_such_table", "Unknown table"),
])
def test_a_read_past_a_limit_is_stopped_with_the_reason(store, statement, reason):
    with pytest.raises(QueryFailed) as info:
        run_read(store, statement, "TSV", LIMITS, "read-limit")
    assert reason in str(info.value)


def test_cancel_stops_a_running_read(store):
    slow = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 0"
    outcome: dict = {}

    def run():
        try:
            run_read(store, slow, "TSV", ReadLimits(timeout_s=120), "read-to-cancel")
        except QueryFailed as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1)
    store.cancel("read-to-cancel")
    thread.join(30)
    assert not thread.is_alive()
    assert "cancelled" in outcome["error"]


def test_a_long_read_does_not_hold_up_inserts(store):
    slow = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 0"
    thread = threading.Thread(target=lambda: pytest.raises(QueryFailed, run_read, store, slow, "TSV",
                                                         ReadLimits(timeout_s=20), "read-long"))
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    store.execute(f"INSERT INTO {store.database}.schema_migrations (version) VALUES (0)")
    store.ping()
    took = time.monotonic() - started
    store.cancel("read-long")
    thread.join(30)
    # The read runs on a session of its own; were it sharing the insert's, this would wait ~20 s.
    assert took < 5
