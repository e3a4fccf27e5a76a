"""Prometheus remote-write 1.0 messages (prompb/remote.proto, types.proto), built at import.

No generated code: the descriptors are declared here field by field. Label
strings are `bytes`, so one label with invalid UTF-8 costs its series, not the
request, and a series' labels arrive as raw Label encodings, decoded once per
distinct series (`LabelList` parses them). Native histograms (TimeSeries field 4) are parsed and counted
but not mapped.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
_MESSAGES = {
    "Label": [("name", 1, F.TYPE_BYTES, None, False), ("value", 2, F.TYPE_BYTES, None, False)],
    "Sample": [("value", 1, F.TYPE_DOUBLE, None, False), ("timestamp", 2, F.TYPE_INT64, None, False)],
    "Exemplar": [("labels", 1, F.TYPE_MESSAGE, "Label", True), ("value", 2, F.TYPE_DOUBLE, None, False),
                 ("timestamp", 3, F.TYPE_INT64, None, False)],
    "NativeHistogram": [("timestamp", 15, F.TYPE_INT64, None, False)],
    # Labels stay raw (one bytes per Label encoding): a series' labels are a cache key.
    "TimeSeries": [("labels", 1, F.TYPE_BYTES, None, True), ("samples", 2, F.TYPE_MESSAGE, "Sample", True),
                   ("exemplars", 3, F.TYPE_MESSAGE, "Exemplar", True),
                   ("histograms", 4, F.TYPE_MESSAGE, "NativeHistogram", True)],
    "MetricMetadata": [("type", 1, F.TYPE_INT32, None, False), ("metric_family_name", 2, F.TYPE_BYTES, None, False),
                       ("help", 4, F.TYPE_BYTES, None, False), ("unit", 5, F.TYPE_BYTES, None, False)],
    "LabelList": [("labels", 1, F.TYPE_MESSAGE, "Label", True)],
    "WriteRequest": [("timeseries", 1, F.TYPE_MESSAGE, "TimeSeries", True),
                     ("metadata", 3, F.TYPE_MESSAGE, "MetricMetadata", True)],
}
METRIC_TYPES = {0: "unknown", 1: "counter", 2: "gauge", 3: "histogram", 4: "gaugehistogram", 5: "summary", 6: "info", 7: "stateset"}


def _build() -> descriptor_pool.DescriptorPool:
    proto = descriptor_pb2.FileDescriptorProto(name="gateway_prompb.proto", package="prometheus", syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, type_name, repeated in fields:
            field = message.field.add(name=field_name, number=number, type=kind,
                                      label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                field.type_name = f".prometheus.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return pool


_POOL = _build()
WriteRequest = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("prometheus.WriteRequest"))
LabelList = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("prometheus.LabelList"))
Label = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("prometheus.Label"))
