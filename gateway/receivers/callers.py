"""Who sent a request, as each transport sees it: peer address and, over TLS, the client certificate subject;
and the credentials it presented (bearer token, tenant header), which `gateway.access` checks."""

from __future__ import annotations

from cryptography import x509

from telemetry_gateway.gateway.access import Credentials, bearer
from telemetry_gateway.gateway.batch import Caller

# Which of its tenants a principal acts for, as Grafana Mimir, Loki and Tempo name it.
TENANT_HEADER = "X-Scope-OrgID"


def grpc_caller(context) -> Caller:
    """From a grpc.aio ServicerContext: 'ipv4:127.0.0.1:5555' -> '127.0.0.1'."""
    pem = (context.auth_context() or {}).get("x509_pem_cert") or []
    subject = _subject(x509.load_pem_x509_certificate(pem[0])) if pem else ""
    return Caller("grpc", peer_host(context.peer()), certificate_subject=subject)


def _subject(certificate: x509.Certificate) -> str:
    """RFC 4514, as TLS terminators and ClickHouse show it: 'CN=agent-7,O=acme'."""
    return certificate.subject.rfc4514_string()


def peer_host(peer: str) -> str:
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def http_caller(request) -> Caller:
    """From an aiohttp request; the subject comes from the TLS client certificate, when one was presented."""
    transport = request.transport
    tls = transport.get_extra_info("ssl_object") if transport is not None else None
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    subject = _subject(x509.load_der_x509_certificate(der)) if der else ""
    return Caller("http", request.remote or "unknown", certificate_subject=subject)


def stream_caller(source: str) -> Caller:
    """From a syslog source key, 'syslog-tcp:10.0.0.1', or over TLS with a client certificate,
    'syslog-tcp:10.0.0.1#CN=agent,O=acme'."""
    transport, _, rest = source.partition(":")
    peer, _, subject = rest.partition("#")
    return Caller(transport, peer, certificate_subject=subject)


def stream_subject(ssl_object) -> str:
    """The client certificate subject of a TLS stream (asyncio's `ssl_object`), when one was presented."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return _subject(x509.load_der_x509_certificate(der)) if der else ""


def http_credentials(request) -> Credentials:
    return Credentials(bearer(request.headers.get("Authorization")), request.headers.get(TENANT_HEADER, "").strip())


def grpc_credentials(context) -> Credentials:
    """gRPC metadata keys are lowercase; a repeated key counts as absent rather than picking one."""
    seen: dict[str, list[str]] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            seen.setdefault(key, []).append(value)
    auth, tenant = seen.get("authorization", []), seen.get(TENANT_HEADER.lower(), [])
    return Credentials(bearer(auth[0]) if len(auth) == 1 else "", tenant[0].strip() if len(tenant) == 1 else "")
