"""InfluxDB line protocol: the one place that turns a result point into text, and back.

:func:`encode` writes a point; :func:`parse` reads back what it wrote (results.lp, a spool file,
a test's fake server). Pure and stdlib-only, so the metrics and verdict code can build points without importing a
client library, and so the same text goes to results.lp, the spool file and every server.

Escaping follows what the servers' parsers actually do (checked against influxd 1.6.7 and
VictoriaMetrics, see tests/test_results.py), not only what the reference page says:

* measurement: ``,`` and space are escaped; tag keys, tag values and field keys: ``,``, ``=``
  and space.  Newlines and carriage returns cannot be carried in these at all (a newline ends
  the line), so they become spaces.
* A backslash in those names is literal when an ordinary character follows it.  Where it would
  merge with what follows into an escape sequence (before ``,`` ``=`` space, before another
  backslash, or at the very end), servers disagree (influxd 1.x keeps ``\\\\`` as two
  characters, VictoriaMetrics and InfluxDB 2.x/3.x read it as one) or cannot parse it at all
  (a trailing backslash escapes the delimiter).  Such a backslash becomes ``/`` so that every
  server stores the same, readable value instead of failing the whole batch.
* A measurement name must not start with ``#``: the line would be a comment and be dropped
  silently, so :func:`encode` refuses it.
* String field values escape ``"`` and ``\\``; newlines are kept (valid inside quotes).
* Integers get the ``i`` suffix; integers outside int64 are sent as floats (the server would
  reject the whole line otherwise); booleans are ``true``/``false``; floats use ``repr``
  (shortest round-tripping form); NaN and infinities are skipped because no server accepts them.
* Tags are sorted by key (the servers' preferred order); empty tag values are dropped (line
  protocol has no empty tag value).  A point left without fields encodes to ``""``: callers
  skip it.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

__all__ = [
    "FieldValue",
    "Point",
    "encode",
    "encode_many",
    "escape_field_key",
    "escape_measurement",
    "escape_tag",
    "parse",
]

FieldValue = float | int | str | bool

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Characters escaped with a backslash, per element of the line.
_MEASUREMENT_SPECIAL = ", "
_KEY_SPECIAL = ",= "
# After a backslash, these characters (plus the escaped ones and the backslash itself) would be
# read as an escape sequence by some server; influxd 1.x unescapes \" in field keys.
_FIELD_KEY_SENSITIVE = '"'

_MEASUREMENT_TABLE = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})
_KEY_TABLE = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})
_STRING_TABLE = str.maketrans({"\\": "\\\\", '"': '\\"'})


class Point(NamedTuple):
    """One InfluxDB point.  ``time_ns`` is Unix time in nanoseconds (the writers send precision=ns).

    A named tuple, so a point read back by :func:`parse` unpacks as
    ``(measurement, tags, fields, time_ns)``.
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int


def _escape_name(text: str, special: str, table: dict[int, str], sensitive: str = "") -> str:
    """Escape a measurement, tag key/value or field key (see the module docstring for why)."""
    if "\\" not in text:
        return text.translate(table)
    ambiguous_next = special + "\\\n\r" + sensitive
    out: list[str] = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("/" if i == last or text[i + 1] in ambiguous_next else "\\")
        else:
            out.append(ch.translate(table))
    return "".join(out)


def escape_measurement(name: str) -> str:
    """Escape a measurement name; refuse names that line protocol cannot carry."""
    if not name:
        raise ValueError("measurement name is empty")
    if name.startswith("#"):
        raise ValueError(f"measurement name {name!r} starts with '#', which line protocol reads as a comment")
    return _escape_name(name, _MEASUREMENT_SPECIAL, _MEASUREMENT_TABLE)


def escape_tag(text: str) -> str:
    """Escape a tag key or tag value."""
    return _escape_name(text, _KEY_SPECIAL, _KEY_TABLE)


def escape_field_key(text: str) -> str:
    """Escape a field key."""
    return _escape_name(text, _KEY_SPECIAL, _KEY_TABLE, _FIELD_KEY_SENSITIVE)


def _field_value(value: object) -> str | None:
    """Render one field value, or None when the value cannot be stored (NaN, infinities)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.translate(_STRING_TABLE) + '"'
    if isinstance(value, numbers.Integral):
        number = int(value)
        if _INT64_MIN <= number <= _INT64_MAX:
            return f"{number}i"
        return repr(float(number))
    if isinstance(value, numbers.Real):
        real = float(value)
        if math.isnan(real) or math.isinf(real):
            return None
        return repr(real)
    kind = type(value).__name__
    raise TypeError(f"field value {value!r} has type {kind}; expected float, int, str or bool")


def encode(point: Point) -> str:
    """Encode a point as one line of line protocol, without the trailing newline.

    Returns ``""`` when the point has no storable field: a line without fields is a parse error
    that would make the server reject the batch, so the caller skips it instead.
    Raises ValueError/TypeError for points that are programming errors (empty names, a
    measurement starting with ``#``, a field of an unsupported type, a non-integer time).
    """
    if isinstance(point.time_ns, bool) or not isinstance(point.time_ns, int):
        raise TypeError(f"time_ns must be an int of nanoseconds, got {point.time_ns!r}")
    fields: list[str] = []
    for key in sorted(point.fields):
        if not key:
            raise ValueError(f"empty field key in measurement {point.measurement!r}")
        rendered = _field_value(point.fields[key])
        if rendered is not None:
            fields.append(f"{escape_field_key(key)}={rendered}")
    if not fields:
        return ""
    parts = [escape_measurement(point.measurement)]
    for key in sorted(point.tags):
        value = point.tags[key]
        if not key:
            raise ValueError(f"empty tag key in measurement {point.measurement!r}")
        if value is None or value == "":
            continue
        parts.append(f"{escape_tag(key)}={escape_tag(str(value))}")
    return f"{','.join(parts)} {','.join(fields)} {point.time_ns}"


def encode_many(points: Iterable[Point]) -> list[str]:
    """Encode several points, leaving out the ones that encode to ``""``."""
    return [line for line in map(encode, points) if line]


# ---------------------------------------------------------------- parsing

# What encode writes: in names a backslash escapes , = and space and is otherwise literal;
# string fields are quoted with \" and \\ escaped and may hold newlines, so a record can span
# several physical lines.
_RECORD = re.compile(
    r"""
    (?P<key>(?:[^\s\\]|\\.)+)[ ]
    (?P<fields>(?:[^=\s\\,]|\\.)+=(?:"(?:[^"\\]|\\.)*"|[^,\s"]+)
        (?:,(?:[^=\s\\,]|\\.)+=(?:"(?:[^"\\]|\\.)*"|[^,\s"]+))*)
    (?:[ ](?P<time>-?\d+))?[ \t\r]*(?:\n|\Z)
    """,
    re.VERBOSE,
)
_FIELD = re.compile(r'((?:[^=\s\\,]|\\.)+)=("(?:[^"\\]|\\.)*"|[^,\s"]+)')
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPED_EQUALS = re.compile(r"(?<!\\)=")
_NAME_ESCAPE = re.compile(r"\\([,= ])")
_STRING_ESCAPE = re.compile(r'\\(["\\])')
_SKIP = re.compile(r"(?:[ \t\r]*\n|#[^\n]*(?:\n|\Z))*")


def _parsed_value(raw: str) -> FieldValue:
    if raw.startswith('"'):
        return _STRING_ESCAPE.sub(r"\1", raw[1:-1])
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith(("i", "u")):
        return int(raw[:-1])
    return float(raw)


def parse(text: str) -> Iterator[Point]:
    """The points of line protocol as :func:`encode` writes them, in file order.

    Blank and ``#`` comment lines are skipped; a point without a timestamp gets 0.  Raises
    ValueError naming the line of the first record that is not line protocol (a results.lp cut
    mid-write, say); the points before it have been yielded.
    """
    pos = 0
    while True:
        skipped = _SKIP.match(text, pos)
        pos = skipped.end() if skipped else pos
        if pos >= len(text):
            return
        match = _RECORD.match(text, pos)
        if match is None:
            line = text.count("\n", 0, pos) + 1
            raise ValueError(f"line {line}: not line protocol: {text[pos : pos + 200].splitlines()[0]!r}")
        pos = match.end()
        head = _UNESCAPED_COMMA.split(match["key"])
        tags: dict[str, str] = {}
        for pair in head[1:]:
            name, value = _UNESCAPED_EQUALS.split(pair, maxsplit=1)
            tags[_NAME_ESCAPE.sub(r"\1", name)] = _NAME_ESCAPE.sub(r"\1", value)
        fields = {_NAME_ESCAPE.sub(r"\1", k): _parsed_value(v) for k, v in _FIELD.findall(match["fields"])}
        yield Point(_NAME_ESCAPE.sub(r"\1", head[0]), tags, fields, int(match["time"] or 0))
