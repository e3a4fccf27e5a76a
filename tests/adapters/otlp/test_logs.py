from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.otlp.logs import decode_request, logs_to_arrow
from telemetry_gateway.schema import LOGS, arrow_schema
from tests.adapters.otlp.helpers import NS, TESTDATA, context, finalized
from tests.rows import check_golden, plain_rows

NOW = 1_800_000_000 * NS


def adapt(raw: bytes, received_ns: int = NOW):
    ctx = context(received_ns)
    return finalized(logs_to_arrow(decode_request(raw), ctx.adapt, AttributeSets()), ctx)


def sdk_bytes() -> bytes:
    return (TESTDATA / "sdk_logs.binpb").read_bytes()


def sdk_received_ns() -> int:
    strict = ExportLogsServiceRequest.FromString(sdk_bytes())
    return strict.resource_logs[0].scope_logs[0].log_records[0].observed_time_unix_nano + NS


def test_sdk_logs_match_golden_rows():
    result = adapt(sdk_bytes(), sdk_received_ns())
    assert result.outcome.rejected_count == 0
    assert result.table.schema == arrow_schema(LOGS)
    check_golden(plain_rows(result.table), TESTDATA / "sdk_logs.expected.json")


def test_sdk_logs_fields():
    rows = plain_rows(adapt(sdk_bytes(), sdk_received_ns()).table)
    assert [(r["severity_text"], r["severity_number"], r["body"]) for r in rows] == [
        ("INFO", 9, "payment accepted"),
        ("WARN", 13, "card declined: insufficient funds"),
        ("ERROR", 17, "gateway timeout"),
    ]
    assert rows[0]["attributes"]["order.id"] == "A-1001" and rows[0]["attributes"]["amount"] == "12.5"
    assert rows[1]["attributes"]["attempt"] == "2"
    assert {r["service_name"] for r in rows} == {"checkout"}
    assert {r["scope_name"] for r in rows} == {"checkout.payments"}


def log_request(records: list[dict]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for r in records:
        record = scope.log_records.add(
            time_unix_nano=r.get("time", 0), observed_time_unix_nano=r.get("observed", 0),
            trace_id=r.get("trace_id", b""), span_id=r.get("span_id", b""),
        )
        record.body.string_value = r.get("body", "x")
    return request


def test_missing_times_fall_back_and_are_flagged():
    raw = log_request([
        {"time": NOW - NS, "body": "has time"},
        {"observed": NOW - 2 * NS, "body": "observed only"},
        {"body": "no time at all"},
    ]).SerializeToString()
    result = adapt(raw)
    rows = plain_rows(result.table)
    assert [(r["body"], r["time"], r["quality_flags"]) for r in rows] == [
        ("has time", NOW - NS, []),
        ("observed only", NOW - 2 * NS, ["time_from_observed"]),
        ("no time at all", NOW, ["time_from_received"]),
    ]
    assert result.outcome.rejected_count == 0


def test_ids_are_hex_and_wrong_lengths_rejected():
    raw = log_request([
        {"time": NOW, "trace_id": bytes(range(16)), "span_id": bytes(range(8)), "body": "ok"},
        {"time": NOW, "trace_id": b"\x01\x02", "body": "short trace id"},
    ]).SerializeToString()
    result = adapt(raw)
    [row] = plain_rows(result.table)
    assert row["trace_id"] == "000102030405060708090a0b0c0d0e0f" and row["span_id"] == "0001020304050607"
    assert result.outcome.reasons() == {"trace_id is 2 bytes, not 16": 1}


def test_invalid_utf8_body_rejects_only_that_record():
    raw = log_request([{"time": NOW, "body": "fine"}, {"time": NOW, "body": "BROKEN"}]).SerializeToString()
    result = adapt(raw.replace(b"BROKEN", b"BR\xffKEN"))
    assert [r["body"] for r in plain_rows(result.table)] == ["fine"]
    assert result.outcome.rejected_count == 1
    assert "not valid UTF-8" in result.outcome.message("log records")


def test_future_records_rejected():
    raw = log_request([{"time": NOW + 7200 * NS}, {"time": NOW}]).SerializeToString()
    result = adapt(raw)
    assert result.table.num_rows == 1
    assert result.outcome.reasons() == {"log time more than 3600s in the future": 1}


def test_kvlist_body_stored_as_json():
    request = log_request([{"time": NOW}])
    body = request.resource_logs[0].scope_logs[0].log_records[0].body
    body.Clear()
    kv = body.kvlist_value.values.add(key="event")
    kv.value.string_value = "login"
    [row] = plain_rows(adapt(request.SerializeToString()).table)
    assert row["body"] == '{"event":"login"}'
