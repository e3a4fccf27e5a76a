"""Zipkin v2 JSON spans (POST /api/v2/spans) to span facts for the RED series.

Zipkin times are microseconds. A span counts when its kind is SERVER or
CONSUMER, or when it has no kind and no parent. Errors: an `error` tag, an
`otel.status_code` of ERROR, or an HTTP status tag of 5xx.
"""

from __future__ import annotations

import json

from telemetry_gateway.adapters.apm.red import SpanFact, is_error, status_class
from telemetry_gateway.adapters.apm.spanrows import SpanRows
from telemetry_gateway.adapters.base import AdaptResult, Outcome
from telemetry_gateway.adapters.attributes import AttributeSets

US = 1_000
# Zipkin instrumentations tag `http.status_code`; OpenTelemetry's Zipkin exporter the current name.
HTTP_STATUS_TAGS = ("http.status_code", "http.response.status_code")


class InvalidSpans(ValueError):
    pass


def decode(body: bytes) -> list:
    try:
        spans = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidSpans(f"body is not JSON: {exc}") from None
    if not isinstance(spans, list):
        raise InvalidSpans("body must be a JSON array of Zipkin v2 spans")
    return spans


def span_facts(spans: list) -> tuple[list[SpanFact], int]:
    facts: list[SpanFact] = []
    refused = 0
    for span in spans:
        try:
            fact = _fact(span)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            refused += 1
            continue
        if fact is not None:
            facts.append(fact)
    return facts, refused


_HEX = frozenset("0123456789abcdef")


def zipkin_id(value, longest: int) -> str:
    """A Zipkin id as lowercase hex, left-padded with zeros as Zipkin does (to 16 digits,
    or 32 for a longer trace id); ValueError unless 1-`longest` hex digits, not all zero."""
    text = str(value).lower()
    if not 0 < len(text) <= longest or not _HEX.issuperset(text) or not text.strip("0"):
        raise ValueError(f"id {text[:40]!r} is not 1-{longest} hex digits, not all zero")
    return text.rjust(16 if len(text) <= 16 else 32, "0")


def service_of(span: dict) -> str:
    # JSON may put any type here; the attribute registry holds text only.
    return str((span.get("localEndpoint") or {}).get("serviceName") or "unknown_service")


def _fact(span: dict) -> SpanFact | None:
    """The span's RED fact, None for spans that do not handle a request; every span
    is checked first, so a malformed client span is refused (and counted) too."""
    trace_id = zipkin_id(span["traceId"], 32)
    zipkin_id(span["id"], 16)
    start = int(span["timestamp"]) * US
    end = start + int(span.get("duration", 0)) * US
    kind = span.get("kind")
    if kind not in ("SERVER", "CONSUMER") and not (kind is None and not span.get("parentId")):
        return None
    tags = span.get("tags") or {}
    status_tag = next((k for k in HTTP_STATUS_TAGS if k in tags), None)
    http = str(tags[status_tag]) if status_tag else None
    failed = "error" in tags or tags.get("otel.status_code") == "ERROR"
    service = service_of(span)
    operation = str(tags.get("http.route") or span.get("name") or "unknown")
    return SpanFact(service, operation, status_class(http, failed), is_error(http, failed), start, end, trace_id)


KINDS = {"SERVER": "server", "CLIENT": "client", "PRODUCER": "producer", "CONSUMER": "consumer"}


def spans_to_arrow(spans: list, sets: AttributeSets) -> AdaptResult:
    """Every Zipkin span as a row of `spans` (only when apm.store_spans is on); tags become attributes."""
    outcome = Outcome()
    rows = SpanRows(sets)
    for span in spans:
        try:
            tags = {str(k): str(v) for k, v in (span.get("tags") or {}).items()}
            start = int(span["timestamp"]) * US
            end = start + int(span.get("duration", 0)) * US
            parent = span.get("parentId")
            ids = [zipkin_id(span["traceId"], 32), zipkin_id(span["id"], 16), zipkin_id(parent, 16) if parent else ""]
            service = service_of(span)
            failed = "error" in tags or tags.get("otel.status_code") == "ERROR"
            text = (*ids, str(span.get("name") or ""), KINDS.get(span.get("kind"), "unspecified"),
                    "error" if failed else "unset", tags.get("error", ""), "zipkin", "")
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            outcome.reject("invalid_span", "span not stored: not a valid Zipkin v2 span")
            continue
        rows.add(start, end, text,
                 sets.id_of_labels(tags), sets.id_of_labels({"service.name": service}))
    return AdaptResult([rows.finish()], outcome)
