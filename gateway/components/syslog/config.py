"""`receivers.syslog`."""

from __future__ import annotations

from pydantic import Field

from telemetry_gateway.gateway.config_base import ConnectionLimits, Endpoint, Model, Seconds, TlsConfig


class SyslogListener(Model):
    enabled: bool = False
    endpoint: Endpoint = "127.0.0.1:5140"
    # TCP only.
    connections: ConnectionLimits = ConnectionLimits()


class SyslogTcpListener(SyslogListener):
    # RFC 5425: syslog over TLS; with a client CA, a client certificate names the sender's principal.
    tls: TlsConfig | None = None


class SyslogConfig(Model):
    """RFC 5424 / RFC 3164 over TCP (octet counting or newline framing) and UDP."""

    tcp: SyslogTcpListener = SyslogTcpListener()
    udp: SyslogListener = SyslogListener()
    max_message_kib: int = Field(64, gt=0, le=16384)
    # Messages are handed to the spool in batches: every flush_interval or max_batch messages.
    flush_interval: Seconds = 0.2
    max_batch: int = Field(2000, gt=0)
