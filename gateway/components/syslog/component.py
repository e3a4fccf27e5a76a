"""Syslog (RFC 5424 and 3164) over TCP and UDP."""

from __future__ import annotations

from telemetry_gateway.adapters.syslog import syslog_to_arrow
from telemetry_gateway.gateway.components.base import Component, Format
from telemetry_gateway.gateway.components.syslog.config import SyslogConfig
from telemetry_gateway.schema import LOGS

FORMAT = Format("syslog", "logs", "log", "syslog message", "syslog messages", LOGS, lambda messages: messages,
                lambda r, ctx, st: syslog_to_arrow(r, ctx), size=lambda messages: sum(map(len, messages)))


def service(config: SyslogConfig, pipeline, metrics, http_routes: list):
    from telemetry_gateway.gateway.components.syslog.receiver import SyslogReceiver

    return [SyslogReceiver(config, pipeline, metrics)]


COMPONENT = Component("syslog", "receivers", SyslogConfig, (FORMAT,), service=service)
