"""Who sent a request, as each transport sees it: peer address and, over TLS, the client certificate subject."""

from __future__ import annotations

from telemetry_gateway.gateway.batch import Caller


def grpc_caller(context) -> Caller:
    """From a grpc.aio ServicerContext: 'ipv4:127.0.0.1:5555' -> '127.0.0.1'."""
    subject = ""
    try:
        auth = context.auth_context() or {}
        names = auth.get("x509_subject_name") or []
        subject = names[0].decode("utf-8", "replace") if names else ""
    except (AttributeError, ValueError):  # no auth context on insecure channels in some grpc versions
        subject = ""
    return Caller("grpc", peer_host(context.peer()), certificate_subject=subject)


def peer_host(peer: str) -> str:
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def http_caller(request) -> Caller:
    """From an aiohttp request; the subject comes from the TLS client certificate, when one was presented."""
    subject = ""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if cert:
        subject = ",".join(f"{k}={v}" for rdn in reversed(cert.get("subject", ())) for k, v in rdn)
    return Caller("http", request.remote or "unknown", certificate_subject=subject)


def stream_caller(source: str) -> Caller:
    """From a syslog source key, 'syslog-tcp:10.0.0.1'."""
    transport, _, peer = source.partition(":")
    return Caller(transport, peer)
