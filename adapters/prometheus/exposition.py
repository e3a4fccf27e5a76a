"""A parser for the Prometheus text exposition format (0.0.4) and OpenMetrics text.

The scrape poller spent most of its time in prometheus_client's parsers, which
read label sets a character at a time. This one takes each sample line apart
with string searches and handles escapes only where a label value has a
backslash. Its results are tested against prometheus_client's on real
exporters' pages (`tests/adapters/prometheus/test_exposition.py`):

* samples keep the names the page gives them (a counter `x` declared without
  `_total` stays `x`, as Prometheus stores it);
* a family's type, help and unit are recorded under the name its `# TYPE`
  line gives; a sample outside any declared family records an `unknown`
  family under its own name, as prometheus_client does;
* label values are unescaped (`\\\\`, `\\"`, `\\n`), HELP text too (`\\\\`, `\\n`);
* timestamps are milliseconds in the text format and seconds in OpenMetrics;
  an OpenMetrics exemplar (` # {...} v`) is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from telemetry_gateway.adapters.prometheus.families import FamilyInfo, Sample

_PART_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": (),
}
_VALUES = {"+Inf": float("inf"), "Inf": float("inf"), "-Inf": float("-inf"), "NaN": float("nan")}


class InvalidExposition(ValueError):
    pass


@dataclass
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    families: dict[str, FamilyInfo] = field(default_factory=dict)


def parse_exposition(body: str, scrape_ms: int, openmetrics: bool = False) -> Exposition:
    """Samples (timestamped `scrape_ms` when the page gives none) and family metadata of a page."""
    out = Exposition()
    reader = _Reader(out, openmetrics)
    for number, line in enumerate(body.split("\n"), 1):
        try:
            reader.line(line, scrape_ms)
        except (ValueError, IndexError, OverflowError) as exc:
            raise InvalidExposition(f"line {number}: {exc}: {line[:120]!r}") from None
    return out


class _Reader:
    def __init__(self, out: Exposition, openmetrics: bool) -> None:
        self.out = out
        self.openmetrics = openmetrics
        self.declared: dict[str, dict[str, str]] = {}  # family name -> {"type", "help", "unit"}
        self.current = ""  # the family the last metadata line named

    def line(self, line: str, scrape_ms: int) -> None:
        if not line or line.isspace():
            return
        if line[0] == "#":
            self._comment(line)
            return
        name, labels, rest = _split_sample(line)
        value, timestamp = self._value_and_time(rest)
        self._record_family(name)
        self.out.samples.append(Sample(name, labels, value, scrape_ms if timestamp is None else timestamp))

    def _comment(self, line: str) -> None:
        parts = line.split(None, 3)
        if len(parts) < 3 or parts[1] not in ("TYPE", "HELP", "UNIT"):
            return  # a comment, or `# EOF`
        name = parts[2]
        text = parts[3] if len(parts) > 3 else ""
        meta = self.declared.setdefault(name, {})
        if parts[1] == "TYPE":
            kind = text.strip()
            meta["type"] = "unknown" if kind == "untyped" else kind
        elif parts[1] == "HELP":
            meta["help"] = _unescape_help(text)
        else:
            meta["unit"] = text.strip()
        self.current = name
        self.out.families[name] = FamilyInfo(meta.get("type", "unknown"), meta.get("help", ""), meta.get("unit", ""))

    def _record_family(self, name: str) -> None:
        if name in self.out.families or self._in_current_family(name):
            return
        self.out.families[name] = FamilyInfo("unknown")

    def _in_current_family(self, name: str) -> bool:
        family = self.current
        if not family or not name.startswith(family):
            return False
        suffix = name[len(family):]
        kind = self.declared.get(family, {}).get("type", "unknown")
        return suffix == "" or suffix in _PART_SUFFIXES.get(kind, ())

    def _value_and_time(self, rest: str) -> tuple[float, int | None]:
        if self.openmetrics:
            rest = rest.split(" # ", 1)[0]  # an exemplar
        fields = rest.split()
        if not fields or len(fields) > 2:
            raise ValueError("expected a value and at most a timestamp")
        value = _VALUES.get(fields[0])
        if value is None:
            value = float(fields[0])
        if len(fields) == 1:
            return value, None
        stamp = int(float(fields[1]) * 1000) if self.openmetrics else int(fields[1])
        if not -(2**63) <= stamp * 1_000_000 < 2**63:
            raise ValueError("the timestamp is out of range")
        return value, stamp


def _split_sample(line: str) -> tuple[str, dict[str, str], str]:
    brace = line.find("{")
    space = line.find(" ")
    if brace == -1 or (space != -1 and space < brace):
        if space <= 0:
            raise ValueError("a sample needs a name and a value")
        return line[:space], {}, line[space + 1:]
    name = line[:brace]
    if not name:
        raise ValueError("a sample needs a name")
    labels, end = _labels(line, brace + 1)
    return name, labels, line[end:]


def _labels(line: str, i: int) -> tuple[dict[str, str], int]:
    """Labels from just after `{`; returns them and the index after `}`."""
    labels: dict[str, str] = {}
    while True:
        while line[i] in " ,":
            i += 1
        if line[i] == "}":
            return labels, i + 1
        eq = line.index("=", i)
        key = line[i:eq].strip()
        if line[eq + 1] != '"':
            raise ValueError(f"label {key} has no quoted value")
        start = eq + 2
        end = line.index('"', start)
        while line[end - 1] == "\\" and _escaped(line, end):
            end = line.index('"', end + 1)
        value = line[start:end]
        labels[key] = _unescape_label(value) if "\\" in value else value
        i = end + 1


def _escaped(line: str, quote: int) -> bool:
    """Whether the quote at `quote` follows an odd number of backslashes."""
    count, j = 0, quote - 1
    while line[j] == "\\":
        count += 1
        j -= 1
    return count % 2 == 1


def _unescape_label(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _unescape_help(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "n\\":
            out.append("\n" if text[i + 1] == "n" else "\\")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)
