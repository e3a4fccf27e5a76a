from __future__ import annotations

import pytest

from telemetry_gateway.adapters.syslog import InvalidSyslog, parse, syslog_to_arrow
from telemetry_gateway.adapters.base import AcceptWindow
from tests.adapters.otlp.helpers import NS, context, finalized
from tests.rows import check_golden, plain_rows

RECEIVED = 1_796_000_000 * NS  # 2026-11-29


# Examples from RFC 5424 section 6.5 and RFC 3164 section 5.4.
RFC5424_SD = (b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 '
              b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] \xef\xbb\xbfAn application event log entry')
RFC5424_NIL = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8"
RFC3164 = b"<34>Oct 11 22:14:15 mymachine su[231]: 'su root' failed for lonvick on /dev/pts/8"


def test_rfc5424_with_structured_data_and_bom():
    msg = parse(RFC5424_SD, RECEIVED)
    assert (msg.severity, msg.facility, msg.host, msg.app, msg.fmt) == (5, 20, "mymachine.example.com", "evntslog", "rfc5424")
    assert msg.time_ns == 1065910455003000000
    assert msg.message == "An application event log entry"
    assert msg.attributes == {
        "syslog.facility": "local4", "syslog.format": "rfc5424", "syslog.msgid": "ID47",
        "syslog.sd.exampleSDID@32473.iut": "3", "syslog.sd.exampleSDID@32473.eventSource": "Application",
        "syslog.sd.exampleSDID@32473.eventID": "1011",
    }


def test_rfc5424_with_nil_values():
    msg = parse(RFC5424_NIL, RECEIVED)
    assert msg.app == "su" and msg.message == "'su root' failed for lonvick on /dev/pts/8"
    assert "syslog.procid" not in msg.attributes


def test_rfc3164_takes_the_receive_year():
    msg = parse(RFC3164, RECEIVED)
    assert (msg.severity, msg.facility, msg.host, msg.app, msg.fmt) == (2, 4, "mymachine", "su", "rfc3164")
    assert msg.time_ns == 1791756855 * NS  # 2026-10-11T22:14:15Z
    assert msg.attributes["syslog.procid"] == "231"


def test_rfc3164_in_the_future_means_last_year():
    msg = parse(b"<13>Dec 31 23:59:59 host app: new year", RECEIVED)
    assert msg.time_ns == 1767225599 * NS  # 2025-12-31T23:59:59Z


@pytest.mark.parametrize("stamp, expected_ns", [
    # rsyslog's RSYSLOG_ForwardFormat: microseconds and a zone.
    ("2026-11-30T09:01:47.942126+00:00", 1796029307942126000),
    # syslog-ng's $ISODATE: whole seconds, here with a zone that is not UTC.
    ("2026-11-30T10:01:47+01:00", 1796029307 * NS),
    ("2026-11-30T09:01:47Z", 1796029307 * NS),
    ("2026-11-30T09:01:47.5Z", 1796029307500000000),
    ("2026-11-30T09:01:47.123456789Z", 1796029307123456000),  # past microseconds: cut
    ("2026-11-30T09:01:47", 1796029307 * NS),  # no zone: UTC
])
def test_rfc3164_framing_with_an_rfc3339_timestamp(stamp, expected_ns):
    msg = parse(f"<156>{stamp} vm billing[42]: invoice posted".encode(), RECEIVED)
    assert msg.time_ns == expected_ns
    assert (msg.severity, msg.facility, msg.host, msg.app, msg.message) == (4, 19, "vm", "billing", "invoice posted")
    assert msg.attributes == {"syslog.facility": "local3", "syslog.format": "rfc3164", "syslog.procid": "42"}


@pytest.mark.parametrize("raw, reason, code", [
    (b"no pri at all", "no valid <PRI>", "malformed"),
    (b"<999>1 - - - - - -", "no valid <PRI>", "malformed"),
    (b"<13>1 not-a-time host app - - - msg", "bad RFC 5424 timestamp", "invalid_time"),
    (b"<13>2026-13-45T99:00:00Z host app: msg", "bad RFC 3339 timestamp", "invalid_time"),
    (b"<13>2026-11-30T09:01:47Z", "RFC 3339 timestamp not followed by HOST TAG", "malformed"),
    (b"<13>Feb 31 22:14:15 host app: msg", "bad RFC 3164 date", "invalid_time"),
    (b"<13>garbage", "neither RFC 5424 nor an RFC 3164 header", "malformed"),
    (b"<13>1 2003-10-11T22:14:15Z h a - - [open", "structured data is not closed", "malformed"),
    (b"<13>Oct 11 22:14:15 host app: \xff\xfe", "not valid UTF-8", "invalid_utf8"),
])
def test_malformed_messages_are_refused_with_a_reason(raw, reason, code):
    with pytest.raises(InvalidSyslog, match=reason) as info:
        parse(raw, RECEIVED)
    assert info.value.code == code


def test_rows_keep_the_good_and_count_the_bad():
    ctx = context(1_800_000_000 * NS, source_kind="log", window=AcceptWindow(max_age_ns=10**20))
    result = finalized(syslog_to_arrow([RFC5424_SD, b"junk", RFC3164], ctx.adapt), ctx)
    rows = plain_rows(result.table)
    assert [(r["service_name"], r["severity_text"], r["severity_number"], r["resource_attributes"].get("host.name")) for r in rows] == [
        ("evntslog", "notice", 10, "mymachine.example.com"), ("su", "crit", 18, "mymachine"),
    ]
    assert result.outcome.reasons() == {"no valid <PRI> at the start, in b'junk'": 1}
    assert result.outcome.by_code() == {"malformed": 1}


def test_a_refusal_names_the_start_of_the_message():
    ctx = context(RECEIVED, source_kind="log")
    result = syslog_to_arrow([b"<13>1 yesterday h app - - - " + b"x" * 200], ctx.adapt)
    [reason] = result.outcome.reasons()
    assert reason == "bad RFC 5424 timestamp 'yesterday', in b'<13>1 yesterday h app - - - " + "x" * 52 + "'..."


TESTDATA = __import__("pathlib").Path(__file__).parent / "testdata"


def octet_frames(stream: bytes) -> list[bytes]:
    frames = []
    while stream:
        length, _, rest = stream.partition(b" ")
        frames.append(rest[: int(length)])
        stream = rest[int(length):]
    return frames


def test_recorded_rsyslog_frames_match_golden_rows():
    ctx = context(1_768_500_000 * NS, source_kind="log")  # 2026-01-15, the recording's day
    for name, frames in (
        ("rsyslog_rfc5424_octet", octet_frames((TESTDATA / "rsyslog_rfc5424_octet.bin").read_bytes())),
        ("rsyslog_rfc3164_newline", (TESTDATA / "rsyslog_rfc3164_newline.bin").read_bytes().splitlines()),
    ):
        result = finalized(syslog_to_arrow(frames, ctx.adapt), ctx)
        assert result.outcome.rejected_count == 0
        rows = plain_rows(result.table)
        assert [r["body"] for r in rows] == ["payment failed for order A-7", "retrying gateway call", "order A-7 paid"]
        assert [r["severity_text"] for r in rows] == ["err", "warning", "info"]
        check_golden(rows, TESTDATA / f"{name}.expected.json")
