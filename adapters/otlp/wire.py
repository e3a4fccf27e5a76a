"""Lenient OTLP message classes used on the hot path.

They are built at import from the descriptors opentelemetry-proto ships, with
two changes that keep the wire format identical:

* every `string` field becomes `bytes`. A strict proto3 parser refuses the
  whole request when one string holds invalid UTF-8; here we parse everything
  and reject only the data point or record that carries the bad text
  (OTLP partial success), decoding strings ourselves.
* every `repeated KeyValue attributes` field becomes `repeated bytes`. Each
  element is then the raw encoding of one KeyValue. Turning ten KeyValue
  messages into Python objects costs about 5 us per point; a tuple of their
  raw bytes is a cache key, so an attribute set seen before is decoded once
  (see `adapters.attributes`).

`MetricsRequestShallow` goes one step further where the compiled walker reads
the request (`adapters.otlp.metrics.decode_received`): gauge and sum data
points are `repeated bytes`, so the parse keeps each point as its encoding
instead of building it, 0.19 -> 0.06 us per point; the walker reads them.

Responses and test clients use the strict classes from opentelemetry-proto.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

_FDP = descriptor_pb2.FieldDescriptorProto
_KEY_VALUE = ".opentelemetry.proto.common.v1.KeyValue"
_ATTRIBUTE_FIELDS = {"attributes", "filtered_attributes"}


def _loosen(message: descriptor_pb2.DescriptorProto) -> None:
    for fld in message.field:
        if fld.type == _FDP.TYPE_STRING:
            fld.type = _FDP.TYPE_BYTES
        elif fld.name in _ATTRIBUTE_FIELDS and fld.type_name == _KEY_VALUE:
            fld.type = _FDP.TYPE_BYTES
            fld.ClearField("type_name")
    for nested in message.nested_type:
        _loosen(nested)


_SHALLOW_POINTS = {"Gauge", "Sum"}


def _keep_points_raw(message: descriptor_pb2.DescriptorProto) -> None:
    if message.name in _SHALLOW_POINTS:
        for fld in message.field:
            if fld.name == "data_points":
                fld.type = _FDP.TYPE_BYTES
                fld.ClearField("type_name")


def _build_pool(shallow: bool = False) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    modules = (
        common_pb2, resource_pb2, metrics_pb2, logs_pb2, trace_pb2,
        metrics_service_pb2, logs_service_pb2, trace_service_pb2,
    )
    for module in modules:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        # KeyValue itself keeps its message-typed value; only its strings loosen.
        for message in proto.message_type:
            _loosen(message)
            if shallow:
                _keep_points_raw(message)
        pool.Add(proto)
    return pool


_POOL = _build_pool()
_SHALLOW_POOL = _build_pool(shallow=True)


def _message(name: str, pool: descriptor_pool.DescriptorPool = _POOL):
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


MetricsRequest = _message("opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest")
MetricsRequestShallow = _message("opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest", _SHALLOW_POOL)
LogsRequest = _message("opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest")
TracesRequest = _message("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest")
KeyValueList = _message("opentelemetry.proto.common.v1.KeyValueList")
AnyValue = _message("opentelemetry.proto.common.v1.AnyValue")
