"""Syslog messages (RFC 5424 and RFC 3164) to rows of `log_records`.

RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`, `-` for nil.
RFC 3164: `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`; it has no year and no
zone, so the receive time's year in UTC is assumed (the year before when that
lands over a day in the future). The same framing with an RFC 3339 timestamp
instead (`<PRI>2026-11-30T09:01:47.942126+00:00 HOST TAG: MSG`) is what
rsyslog's `RSYSLOG_ForwardFormat` and syslog-ng with an `$ISODATE` template send; a
timestamp without a zone is taken as UTC, and digits past microseconds are cut.

Mapping: APP-NAME (or the 3164 TAG) is `service.name`, HOSTNAME `host.name`
(resource); facility, procid, msgid, the format and every structured-data
parameter (`syslog.sd.<id>.<name>`) are attributes. Severities map to OTLP
severity numbers the way the Collector's syslog receiver does (err → ERROR,
warning → WARN, notice → INFO2, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from telemetry_gateway.adapters.base import AdaptContext, AdaptResult, Outcome
from telemetry_gateway.adapters.logrows import LogRows

SEVERITIES = (  # syslog severity -> (OTLP number, text)
    (21, "emerg"), (19, "alert"), (18, "crit"), (17, "err"), (13, "warning"), (10, "notice"), (9, "info"), (5, "debug"),
)
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
              "ntp", "security", "console", "solaris-cron", *(f"local{i}" for i in range(8)))

_PRI = re.compile(rb"^<(\d{1,3})>")
_5424 = re.compile(
    r"^1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) (?P<rest>.*)$", re.S)
_TAIL = r" (?P<host>\S+) (?P<tag>[^\s:\[]+)(?:\[(?P<pid>[^\]]*)\])?:? ?(?P<msg>.*)$"
_3164 = re.compile(r"^(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)" + _TAIL, re.S)
_3164_ISO = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?)" + _TAIL, re.S)
_FRACTION = re.compile(r"(\.\d{6})\d+")
_SD_PARAM = re.compile(r'(\S+?)="((?:[^"\\\]]|\\.)*)"')
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


class InvalidSyslog(ValueError):
    def __init__(self, reason: str, code: str = "malformed") -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class SyslogMessage:
    time_ns: int
    severity: int
    facility: int
    host: str
    app: str
    message: str
    fmt: str
    attributes: dict[str, str] = field(default_factory=dict)


def parse(raw: bytes, received_ns: int) -> SyslogMessage:
    match = _PRI.match(raw)
    if not match or int(match.group(1)) > 191:
        raise InvalidSyslog("no valid <PRI> at the start")
    pri = int(match.group(1))
    try:
        text = raw[match.end():].decode("utf-8").rstrip("\r\n\x00")
    except UnicodeDecodeError as exc:
        raise InvalidSyslog(f"not valid UTF-8 (byte {exc.start + match.end()})", "invalid_utf8") from None
    if text.startswith("1 "):
        return _rfc5424(text, pri)
    if text[:1].isdigit():
        return _rfc3164_iso(text, pri)
    return _rfc3164(text, pri, received_ns)


def _nil(value: str) -> str:
    return "" if value == "-" else value


def _rfc5424(text: str, pri: int) -> SyslogMessage:
    m = _5424.match(text)
    if not m:
        raise InvalidSyslog("RFC 5424 header is incomplete")
    time_ns = 0 if m["ts"] == "-" else _iso_ns(m["ts"], "RFC 5424")
    sd, message = _structured_data(m["rest"])
    attributes = _attributes(pri, "rfc5424", _nil(m["procid"]), _nil(m["msgid"]), sd)
    # rsyslog (and other relays of 3164 messages) keep the space that followed the tag.
    body = message.removeprefix("\ufeff").removeprefix(" ")
    return SyslogMessage(time_ns, pri % 8, pri // 8, _nil(m["host"]), _nil(m["app"]), body, "rfc5424", attributes)


def _structured_data(rest: str) -> tuple[dict[str, str], str]:
    if rest.startswith("-"):
        return {}, rest[2:] if rest.startswith("- ") else rest[1:]
    params: dict[str, str] = {}
    i = 0
    while i < len(rest) and rest[i] == "[":
        end = i + 1
        while end < len(rest) and not (rest[end] == "]" and rest[end - 1] != "\\"):
            end += 1
        if end >= len(rest):
            raise InvalidSyslog("structured data is not closed")
        element = rest[i + 1:end]
        sd_id, _, body = element.partition(" ")
        for name, value in _SD_PARAM.findall(body):
            params[f"{sd_id}.{name}"] = re.sub(r"\\([\"\\\]])", r"\1", value)
        i = end + 1
    return params, rest[i:].removeprefix(" ")


def _iso_ns(text: str, where: str) -> int:
    try:
        stamp = datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSyslog(f"bad {where} timestamp {text[:40]!r}", "invalid_time") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return _ns(stamp)


def _rfc3164_iso(text: str, pri: int) -> SyslogMessage:
    m = _3164_ISO.match(text)
    if not m:
        raise InvalidSyslog("an RFC 3339 timestamp not followed by HOST TAG: MSG")
    attributes = _attributes(pri, "rfc3164", m["pid"] or "", "", {})
    return SyslogMessage(_iso_ns(m["ts"], "RFC 3339"), pri % 8, pri // 8, m["host"], m["tag"], m["msg"], "rfc3164",
                         attributes)


def _rfc3164(text: str, pri: int, received_ns: int) -> SyslogMessage:
    m = _3164.match(text)
    if not m or m["mon"] not in _MONTHS:
        raise InvalidSyslog("neither RFC 5424 nor an RFC 3164 header")
    received = datetime.fromtimestamp(received_ns / 1e9, timezone.utc)
    hh, mm, ss = (int(x) for x in m["time"].split(":"))
    try:
        stamp = datetime(received.year, _MONTHS[m["mon"]], int(m["day"]), hh, mm, ss, tzinfo=timezone.utc)
    except ValueError:
        raise InvalidSyslog(f"bad RFC 3164 date {m['mon']} {m['day']} {m['time']}", "invalid_time") from None
    if _ns(stamp) > received_ns + 86400 * 10**9:
        stamp = stamp.replace(year=received.year - 1)
    attributes = _attributes(pri, "rfc3164", m["pid"] or "", "", {})
    return SyslogMessage(_ns(stamp), pri % 8, pri // 8, m["host"], m["tag"], m["msg"], "rfc3164", attributes)


def _ns(stamp: datetime) -> int:
    return int(stamp.timestamp()) * 10**9 + stamp.microsecond * 1000


def _attributes(pri: int, fmt: str, procid: str, msgid: str, sd: dict[str, str]) -> dict[str, str]:
    out = {"syslog.facility": FACILITIES[pri // 8], "syslog.format": fmt}
    if procid:
        out["syslog.procid"] = procid
    if msgid:
        out["syslog.msgid"] = msgid
    out.update({f"syslog.sd.{k}": v for k, v in sd.items()})
    return out


def syslog_to_arrow(messages: list[bytes], ctx: AdaptContext) -> AdaptResult:
    outcome = Outcome()
    rows = LogRows()
    for raw in messages:
        try:
            msg = parse(raw, ctx.received_ns)
        except InvalidSyslog as exc:
            outcome.reject(exc.code, f"{exc}, in {_sample(raw)}")
            continue
        number, text = SEVERITIES[msg.severity]
        resource = {"service.name": msg.app or "syslog"}
        if msg.host:
            resource["host.name"] = msg.host
        rows.add(time_ns=msg.time_ns, observed_ns=ctx.received_ns, severity=number, severity_text=text,
                 body=msg.message, attributes=msg.attributes, resource=resource, scope="syslog")
    return AdaptResult([rows.finish(ctx.received_ns)], outcome)


def _sample(raw: bytes, limit: int = 80) -> str:
    """The start of a refused message, for the log line that says why it was refused."""
    text = repr(raw[:limit])
    return text + "..." if len(raw) > limit else text
