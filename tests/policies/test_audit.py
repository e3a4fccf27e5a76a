"""Audit rows: aggregated writes, one row per read, and nothing lost when the sink refuses them."""

from __future__ import annotations

import asyncio

import pytest

from telemetry_gateway.gateway.audit import Audit
from telemetry_gateway.gateway.batch import Caller, Provenance
from telemetry_gateway.gateway.errors import Throttled
from telemetry_gateway.gateway.self_metrics import SelfMetrics


def test_writes_are_counted_per_key_and_reads_get_a_row_each():
    audit = Audit(SelfMetrics())
    caller = Caller("http", "10.0.0.1", "", "acme-writer")
    provenance = Provenance("otlp_metrics", "otlp", "x", caller, "a" * 16, 0, "acme", "eu")
    for _ in range(3):
        audit.write_decided(provenance, 10, {}, {"eu"}, "v1")
    audit.read_decided(Caller("admin", "10.0.0.2", "", "analyst"), "acme", "eu", "refused", "no", "SELECT 1", "v1")
    [batch] = audit.take("us")
    writes = [r for r in batch.records if r["action"] == "write"]
    assert [(r["requests"], r["items"]) for r in writes] == [(3, 30)]
    reads = [r for r in batch.records if r["action"] == "read"]
    assert len(reads) == 1 and "SELECT" not in str(reads[0]) and len(reads[0]["statement_hash"]) == 16
    assert audit.take("us") == []


def test_rows_the_sink_refuses_go_out_again_with_the_next_round():
    audit = Audit(SelfMetrics())
    audit.write_refused("otlp_metrics", Caller("http", "10.0.0.1"), "the bearer token is not valid", policy_version="v1")
    first = audit.take("eu")
    audit.restore(first)
    audit.write_refused("otlp_metrics", Caller("http", "10.0.0.1"), "the bearer token is not valid", policy_version="v1")
    [again] = audit.take("eu")
    assert [r["requests"] for r in again.records] == [1, 1]


def test_the_pipeline_gives_audit_rows_back_when_the_sink_throttles(tmp_path):
    from telemetry_gateway.gateway.config import GatewayConfig
    from telemetry_gateway.gateway.pipeline import IngestPipeline

    pipeline = IngestPipeline(GatewayConfig.model_validate({"store": {"path": str(tmp_path)}}), stores=None,
                              telemetry=SelfMetrics())

    async def refuse(batches):
        raise Throttled("spool full")

    pipeline.sink.keep = refuse
    pipeline.audit.write_refused("otlp_metrics", Caller("http", "10.0.0.1"), "required", policy_version="v1")
    with pytest.raises(Throttled):
        asyncio.run(pipeline.flush_audit())
    assert [r["reason"] for b in pipeline.audit.take("default") for r in b.records] == ["required"]
