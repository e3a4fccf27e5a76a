"""Config types every component shares: the frozen model base, durations, endpoints, connection limits."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

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
