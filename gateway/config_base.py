"""Config types every component shares: the frozen model base, durations, endpoints, connection limits."""

from __future__ import annotations

import re
from typing import Annotated

import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ENDPOINT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


def _seconds(value: object) -> object:
    """'250ms', '30s', '5m', '1h', '14d' or a number of seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 250ms, 30s, 5m, 1h, 14d)")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


def _endpoint(value: object) -> object:
    if not isinstance(value, str) or not _ENDPOINT.match(value):
        raise ValueError(f"not a host:port endpoint: {value!r}")
    if not 0 < int(value.rsplit(":", 1)[1]) < 65536:
        raise ValueError(f"port out of range in {value!r}")
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
Endpoint = Annotated[str, BeforeValidator(_endpoint)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectionLimits(Model):
    """Shared by every listener: how many connections, how long they may idle or dawdle."""

    max_connections: int = Field(1024, gt=0)
    # A connection with no request in progress is closed after this long.
    idle_timeout: Seconds = 120.0
    # A request (its body, for HTTP) must arrive within this long.
    request_timeout: Seconds = 60.0


class TlsConfig(Model):
    """Server TLS for a listener. Files are read at start; a missing or unreadable one stops the start."""

    cert_file: Path
    key_file: Path
    # CA bundle that signs client certificates; with it, clients may present one (mTLS).
    client_ca_file: Path | None = None
    # require: a client without a valid certificate is refused in the handshake;
    # request: one is asked for and verified when presented (token holders need none).
    client_auth: Literal["request", "require"] = "request"

    @model_validator(mode="after")
    def _ca_for_client_auth(self) -> TlsConfig:
        if self.client_auth == "require" and self.client_ca_file is None:
            raise ValueError("client_auth require needs client_ca_file")
        return self

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """Certificate chain, key and client CA bundle, as PEM bytes."""
        ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        return self.cert_file.read_bytes(), self.key_file.read_bytes(), ca

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED if self.client_auth == "require" else ssl.CERT_OPTIONAL
        return context
