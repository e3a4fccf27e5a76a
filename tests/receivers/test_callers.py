"""Caller identity as each transport sees it, over real TLS with a client certificate.

The gateway's listeners get TLS with the residency issue; these tests serve the
same aiohttp and grpc.aio stacks with mutual TLS to pin down what the caller
helpers read from a real handshake: the peer address and the certificate subject.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import aiohttp
import grpc
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from telemetry_gateway.gateway.batch import Caller
from telemetry_gateway.gateway.receivers.callers import grpc_caller, http_caller, peer_host, stream_caller


def _name(common_name: str, org: str = "acme") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(subject: x509.Name, key, issuer: x509.Name, issuer_key, ca: bool = False, san: str | None = None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_pki(tmp: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(_name("test-ca"), ca_key, _name("test-ca"), ca_key, ca=True)
    files = {"ca": ca}
    for who, san in (("server", "127.0.0.1"), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        files[who] = _cert(_name(f"{who}-edge-7"), key, ca.subject, ca_key, san=san)
        files[f"{who}_key"] = key
    out = {}
    for name, obj in files.items():
        out[name] = tmp / f"{name}.pem"
        out[name].write_bytes(_pem(obj))
    return out


def test_http_caller_reads_peer_and_client_certificate_subject(tmp_path):
    pki = make_pki(tmp_path)

    async def run():
        seen = []

        async def handle(request):
            seen.append(http_caller(request))
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/", handle)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca"])
        server_tls.load_cert_chain(pki["server"], pki["server_key"])
        server_tls.verify_mode = ssl.CERT_OPTIONAL
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            for with_cert in (True, False):
                client_tls = ssl.create_default_context(cafile=pki["ca"])
                if with_cert:
                    client_tls.load_cert_chain(pki["client"], pki["client_key"])
                async with aiohttp.ClientSession() as session:
                    async with session.post(f"https://127.0.0.1:{port}/", data=b"x", ssl=client_tls) as response:
                        assert response.status == 200
        finally:
            await runner.cleanup()
        return seen

    with_cert, without = asyncio.run(run())
    assert with_cert.transport == "http" and with_cert.peer == "127.0.0.1"
    assert with_cert.certificate_subject == "CN=client-edge-7,O=acme" and with_cert.subject == with_cert.certificate_subject
    assert without.certificate_subject == "" and without.peer == "127.0.0.1"


def test_grpc_caller_reads_peer_and_client_certificate_subject(tmp_path):
    pki = make_pki(tmp_path)

    async def run():
        seen = []

        async def echo(request: bytes, context) -> bytes:
            seen.append(grpc_caller(context))
            return request

        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)})])
        credentials = grpc.ssl_server_credentials([(pki["server_key"].read_bytes(), pki["server"].read_bytes())],
                                                  root_certificates=pki["ca"].read_bytes(), require_client_auth=True)
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        try:
            channel_credentials = grpc.ssl_channel_credentials(pki["ca"].read_bytes(), pki["client_key"].read_bytes(),
                                                               pki["client"].read_bytes())
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", channel_credentials) as channel:
                assert await channel.unary_unary("/test.Echo/Call")(b"hi", timeout=10) == b"hi"
        finally:
            await server.stop(None)
        return seen

    (caller,) = asyncio.run(run())
    assert caller.transport == "grpc" and caller.peer == "127.0.0.1"
    assert caller.certificate_subject == "CN=client-edge-7,O=acme"


def test_peer_addresses_lose_their_port_and_stream_sources_split():
    assert peer_host("ipv4:10.0.0.1:5555") == "10.0.0.1"
    assert peer_host("ipv6:[::1]:5555") == "::1"
    assert peer_host("unix:/tmp/s") == "unix:/tmp/s"
    assert stream_caller("syslog-tcp:10.0.0.9") == Caller("syslog-tcp", "10.0.0.9")
    assert stream_caller("syslog-udp:10.0.0.9") == Caller("syslog-udp", "10.0.0.9")
