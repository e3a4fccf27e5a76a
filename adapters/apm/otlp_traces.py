"""OTLP traces: span facts for the RED series (`adapters.apm.red`), and span rows when spans are kept."""

from __future__ import annotations

from telemetry_gateway.adapters.apm.red import CONSUMER, SERVER, STATUS_ERROR, SpanFact, is_error, status_class
from telemetry_gateway.adapters.apm.spanrows import SpanRows
from telemetry_gateway.adapters.base import AdaptResult, Outcome
from telemetry_gateway.adapters.otlp import wire
from telemetry_gateway.adapters.attributes import AttributeSets, InvalidAttributes, service_name

decode_request = wire.TracesRequest.FromString
HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")
ROUTE_KEYS = ("http.route",)


def _first(keys: tuple[str, ...], values: tuple[str, ...], wanted: tuple[str, ...]) -> str | None:
    found = dict(zip(keys, values))
    for key in wanted:
        if found.get(key):
            return found[key]
    return None


def span_facts(request, sets: AttributeSets) -> tuple[list[SpanFact], int]:
    """(facts of request-handling spans, spans refused for bad content)."""
    sets.begin()
    facts: list[SpanFact] = []
    refused = 0
    for rs in request.resource_spans:
        try:
            resource = sets.id_of(tuple(rs.resource.attributes))
        except InvalidAttributes:
            refused += sum(len(ss.spans) for ss in rs.scope_spans)
            continue
        service = service_name(sets.keys[resource], sets.values[resource])
        for ss in rs.scope_spans:
            for span in ss.spans:
                handled = span.kind in (SERVER, CONSUMER) or (span.kind == 0 and not span.parent_span_id)
                if not handled:
                    continue
                if not valid_ids(span.trace_id, span.span_id):
                    refused += 1
                    continue
                try:
                    keys, values = sets.decode(tuple(span.attributes))
                    name = span.name.decode("utf-8")
                except (InvalidAttributes, UnicodeDecodeError):
                    refused += 1
                    continue
                http = _first(keys, values, HTTP_STATUS_KEYS)
                failed = span.status.code == STATUS_ERROR
                facts.append(SpanFact(
                    service, _first(keys, values, ROUTE_KEYS) or name, status_class(http, failed),
                    is_error(http, failed), span.start_time_unix_nano, span.end_time_unix_nano, span.trace_id.hex(),
                ))
    return facts, refused




def valid_ids(trace_id: bytes, span_id: bytes) -> bool:
    """16- and 8-byte ids, not all zero (OTLP calls all-zero ids invalid)."""
    return len(trace_id) == 16 and len(span_id) == 8 and any(trace_id) and any(span_id)


KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS = {0: "unset", 1: "ok", 2: "error"}


def spans_to_arrow(request, sets: AttributeSets) -> AdaptResult:
    """Every span as a row of `spans` (only when apm.store_spans is on)."""
    outcome = Outcome()
    rows = SpanRows(sets)
    for rs in request.resource_spans:
        try:
            resource = sets.id_of(tuple(rs.resource.attributes))
        except InvalidAttributes:
            outcome.reject("invalid_attributes", "resource attributes are not valid", sum(len(ss.spans) for ss in rs.scope_spans))
            continue
        for ss in rs.scope_spans:
            for span in ss.spans:
                try:
                    text = _span_text(span, ss.scope)
                    attributes = sets.id_of(tuple(span.attributes))
                except (InvalidAttributes, UnicodeDecodeError, ValueError) as exc:
                    outcome.reject("invalid_span", f"span not stored: {type(exc).__name__}")
                    continue
                rows.add(span.start_time_unix_nano, span.end_time_unix_nano, text, attributes, resource)
    return AdaptResult([rows.finish()], outcome)


def _id(raw: bytes, size: int, what: str) -> str:
    if raw and len(raw) != size:
        raise ValueError(f"{what} is {len(raw)} bytes")
    return raw.hex()


def _span_text(span, scope) -> tuple[str, ...]:
    return (
        _id(span.trace_id, 16, "trace_id"), _id(span.span_id, 8, "span_id"), _id(span.parent_span_id, 8, "parent_span_id"),
        span.name.decode("utf-8"), KINDS.get(span.kind, "unspecified"), STATUS.get(span.status.code, "unset"),
        span.status.message.decode("utf-8"), scope.name.decode("utf-8"), scope.version.decode("utf-8"),
    )
