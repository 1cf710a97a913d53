"""harness.results against real servers: influxd 1.6.7 (v1 API, InfluxQL) and VictoriaMetrics
(the v2 write API through influxdb-client).  No mocks: what the writers send is read back from
the servers they will meet in production, and every server a test starts is stopped by it."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.errors import ConfigError, ResultsError
from harness.results import (
    InfluxQuery,
    NullTransport,
    Point,
    ResultsWriter,
    TransportError,
    V1Transport,
    WriterStats,
    encode,
    ensure_local_influx,
    load_command,
    open_writer,
    ping,
    stop_local_influx,
)
from harness.results.embedded import config_path, influx_dir
from harness.results.lineproto import parse
from tests.influx_fixtures import InfluxServer, VictoriaMetricsServer, free_port, running_influxd

SECRET = "s3cr3t-T0ken/with+odd=chars"
# An hour ago, on whole milliseconds (VictoriaMetrics keeps milliseconds).
BASE_NS = (time.time_ns() // 1_000_000 - 3_600_000) * 1_000_000


def make_points(n: int, measurement: str = "harness_requests", run_id: str = "run-1") -> list[Point]:
    """n distinct points (distinct timestamps, a few series) with every field type."""
    return [
        Point(
            measurement,
            {"run_id": run_id, "scenario": "smoke", "method": "GET", "name": f"/items/{i % 7}"},
            {"count": i, "p99": i / 8, "failures": i % 3, "saturated": i % 2 == 0},
            BASE_NS + i * 1_000_000,
        )
        for i in range(n)
    ]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    assert check(), f"timed out after {timeout}s waiting for {what}"


def assert_accounted(stats: WriterStats) -> None:
    """Every point handed to the writer is somewhere: server, spool, refused (and in results.lp)."""
    assert stats.points_dropped == 0
    assert (
        stats.points_written + stats.points_rejected + stats.points_pending + stats.points_dropped == stats.points_total
    ), stats


def lp_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def spool_points(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in lp_lines(path) if line and not line.startswith("#"))


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nobody listening: connection refused, immediately."""
    return free_port()


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never answers: sends time out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


# --------------------------------------------------------------------------- line protocol


def P(
    measurement: str = "m",
    tags: dict[str, str] | None = None,
    fields: dict[str, float | int | str | bool] | None = None,
    t: int = 1,
) -> Point:
    return Point(measurement, tags or {}, {"v": 1.0} if fields is None else fields, t)


ENCODE_CASES = [
    (P(fields={"v": 1.5}), "m v=1.5 1"),
    (P(fields={"n": 3, "neg": -7}), "m n=3i,neg=-7i 1"),
    (P(fields={"ok": True, "no": False}), "m no=false,ok=true 1"),
    (P(fields={"z": 1.0, "a": 2.0}), "m a=2.0,z=1.0 1"),
    (P(fields={"s": 'say "hi" \\ bye'}), 'm s="say \\"hi\\" \\\\ bye" 1'),
    (P(fields={"s": "l1\nl2"}), 'm s="l1\nl2" 1'),
    (P(fields={"s": ""}), 'm s="" 1'),
    (P(tags={"b": "2", "a": "1"}), "m,a=1,b=2 v=1.0 1"),
    (P(tags={"a": "", "b": "x"}), "m,b=x v=1.0 1"),
    (P(fields={"v": math.nan, "w": 2.0}), "m w=2.0 1"),
    (P(fields={"v": math.inf, "w": -math.inf}), ""),
    (P(fields={}), ""),
    (P(fields={"big": 2**70}), f"m big={float(2**70)!r} 1"),
    (P(fields={"max": 2**63 - 1, "min": -(2**63)}), f"m max={2**63 - 1}i,min={-(2**63)}i 1"),
    (P(fields={"v": 1e16, "w": 1e-05, "x": 0.1 + 0.2}), "m v=1e+16,w=1e-05,x=0.30000000000000004 1"),
    (P(measurement="my m,x=y"), "my\\ m\\,x=y v=1.0 1"),
    (P(tags={"k ,=": "v ,="}), "m,k\\ \\,\\==v\\ \\,\\= v=1.0 1"),
    (P(fields={'f ,="': 1}), 'm f\\ \\,\\="=1i 1'),
    (P(tags={"path": "C:\\temp"}), "m,path=C:\\temp v=1.0 1"),
    (P(tags={"path": "C:\\"}), "m,path=C:/ v=1.0 1"),
    (P(tags={"t": "a\\,b"}), "m,t=a/\\,b v=1.0 1"),
    (P(tags={"t": "a\\ b"}), "m,t=a/\\ b v=1.0 1"),
    (P(tags={"t": "a\\\\b"}), "m,t=a/\\b v=1.0 1"),
    (P(fields={'k\\"': 1}), 'm k/"=1i 1'),
    (P(tags={"t": "line1\nline2\r"}), "m,t=line1\\ line2\\  v=1.0 1"),
    (P(tags={"t": "ünïcødé ✓"}), "m,t=ünïcødé\\ ✓ v=1.0 1"),
    (P(t=-5), "m v=1.0 -5"),
]


@pytest.mark.parametrize(("point", "expected"), ENCODE_CASES, ids=[repr(c[1]) for c in ENCODE_CASES])
def test_encode(point: Point, expected: str) -> None:
    assert encode(point) == expected


@pytest.mark.parametrize(
    ("point", "error"),
    [
        (P(measurement=""), ValueError),
        (P(measurement="#comment"), ValueError),
        (P(tags={"": "x"}), ValueError),
        (P(fields={"": 1}), ValueError),
        (P(fields={"v": [1]}), TypeError),  # type: ignore[dict-item]
        (P(fields={"v": None}), TypeError),  # type: ignore[dict-item]
        (Point("m", {}, {"v": 1}, True), TypeError),
        (Point("m", {}, {"v": 1}, 1.5), TypeError),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_points_line_protocol_cannot_carry(point: Point, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode(point)


def test_parse_reads_back_what_encode_writes() -> None:
    point = Point(
        "harness_events",
        {"kind": "phase", "name": 'a b,c=d "q" x\\y', "run_id": "r"},
        {"text": 'say "hi"\nback\\slash', "state": "start", "n": 3, "x": 2.5, "ok": True},
        123,
    )
    other = Point("m", {"t": "v"}, {"f": -1}, 7)
    text = "# a comment\n" + encode(point) + "\n\n" + encode(other) + "\n"
    assert list(parse(text)) == [
        (point.measurement, dict(point.tags), dict(point.fields), point.time_ns),
        ("m", {"t": "v"}, {"f": -1}, 7),
    ]
    with pytest.raises(ValueError, match="line 2: not line protocol"):
        list(parse(encode(other) + "\nm,t=v f=\n"))


# (raw tag value, what every server stores) -- see harness.results.lineproto for the backslash rule.
NASTY_TAG_VALUES = [
    ("plain", "plain"),
    ("with space", "with space"),
    ("com,ma", "com,ma"),
    ("equ=als", "equ=als"),
    ("a, b=c d,,==  ", "a, b=c d,,==  "),
    ("quo\"ted'", "quo\"ted'"),
    ("ünïcødé ✓ 日本", "ünïcødé ✓ 日本"),
    ("/api/items?id=1&x=y", "/api/items?id=1&x=y"),
    ("C:\\temp\\new", "C:\\temp\\new"),
    ("#hash", "#hash"),
    ("tab\there", "tab\there"),
    ("trail\\", "trail/"),
    ("a\\ b", "a/ b"),
    ("a\\,b", "a/,b"),
    ("a\\=b", "a/=b"),
    ("a\\\\b", "a/\\b"),
    ("two\nlines", "two lines"),
]
NASTY_STRINGS = ['say "hi"', "back\\slash", "trail\\", '\\"', "multi\nline\r\ntext", "", "ünï ✓", "a,b=c d"]


def test_nasty_values_round_trip_through_influxd(influxd: InfluxServer) -> None:
    db = influxd.create_database("lp_roundtrip")
    transport = V1Transport(influxd.url, db)
    lines = []
    for i, (raw, _) in enumerate(NASTY_TAG_VALUES):
        lines.append(encode(Point("nasty", {"case": str(i), "value": raw}, {"i": i}, BASE_NS + i)))
    for i, text in enumerate(NASTY_STRINGS):
        lines.append(encode(Point("strings", {"case": str(i)}, {"s": text}, BASE_NS + i)))
    numbers = {"f": 0.1 + 0.2, "tiny": 5e-324, "huge": 1.7976931348623157e308, "neg0": -0.0, "e": 1e16}
    ints = {"imax": 2**63 - 1, "imin": -(2**63), "zero": 0}
    lines.append(encode(Point("numbers", {}, {**numbers, **ints, "yes": True, "no": False}, BASE_NS)))
    odd_measurement = "odd m,x=y\\z"
    lines.append(encode(Point(odd_measurement, {"k ,=\\x": "v"}, {'f ,="\\q': 1.5}, BASE_NS)))
    transport.send("\n".join(lines) + "\n")

    rows = influxd.query('SELECT "i", "value" FROM "nasty"', db)
    stored = {row["i"]: row["value"] for row in rows}
    assert stored == {i: expected for i, (_, expected) in enumerate(NASTY_TAG_VALUES)}

    rows = influxd.query('SELECT "s" FROM "strings" GROUP BY "case"', db)
    assert {int(row["case"]): row["s"] for row in rows} == dict(enumerate(NASTY_STRINGS))

    (row,) = influxd.query('SELECT * FROM "numbers"', db)
    for key, value in numbers.items():  # JSON may print an integral float without a point
        assert row[key] == value, (key, row[key], value)
    for key, value in ints.items():
        assert row[key] == value and type(row[key]) is int, (key, row[key], value)
    assert row["yes"] is True and row["no"] is False

    measurements = {r["name"] for r in influxd.query("SHOW MEASUREMENTS", db)}
    assert odd_measurement in measurements
    (row,) = influxd.query('SELECT * FROM "odd m,x=y\\\\z"', db)
    assert row["k ,=\\x"] == "v"
    assert row['f ,="\\q'] == 1.5


# --------------------------------------------------------------------------- v1 writer


def test_v1_writer_writes_every_point_in_batches(influxd: InfluxServer, tmp_path: Path) -> None:
    db = "v1_batches"  # not created beforehand: the writer creates it on the first 404
    n = 12_345
    points = make_points(n)
    writer = open_writer(
        influxd.url,
        "v1",
        db,
        None,
        None,
        None,
        tmp_path / "results.lp",
        tmp_path / "spool.lp",
        batch_size=5000,
        flush_interval=0.2,
    )
    started = time.monotonic()
    for i in range(0, n, 1000):
        writer.write(points[i : i + 1000])
    assert time.monotonic() - started < 1.0, "write() must not wait for the server"
    stats = writer.close(timeout=10)

    assert stats.points_total == n and stats.points_written == n
    assert stats.points_spooled == 0 and stats.points_pending == 0 and stats.points_rejected == 0
    assert_accounted(stats)
    rows = influxd.query('SELECT count("count"), sum("count"), count("saturated") FROM "harness_requests"', db)
    assert rows[0]["count"] == n and rows[0]["sum"] == sum(range(n)) and rows[0]["count_1"] == n
    assert sorted(lp_lines(tmp_path / "results.lp")) == sorted(encode(p) for p in points)
    assert not (tmp_path / "spool.lp").exists()


def test_query_flattens_series_and_group_by_tags(influxd: InfluxServer, tmp_path: Path) -> None:
    db = influxd.create_database("query_shape")
    V1Transport(influxd.url, db).send("\n".join(encode(p) for p in make_points(70)))
    q = InfluxQuery(influxd.url, db)
    rows = q.query('SELECT count("count") FROM "harness_requests" GROUP BY "name"')
    assert {row["name"]: row["count"] for row in rows} == {f"/items/{k}": 10 for k in range(7)}
    assert all(row["time"] == 0 for row in rows)  # epoch=ns: integer times
    (first,) = q.query('SELECT * FROM "harness_requests" ORDER BY time LIMIT 1', epoch="")
    assert first["time"].endswith("Z") and first["run_id"] == "run-1"
    two = q.query('SELECT count("count") FROM "harness_requests"; SELECT max("count") FROM "harness_requests"')
    assert [two[0]["count"], two[1]["max"]] == [70, 69]
    with pytest.raises(ResultsError, match="error parsing query"):
        q.query("SELECT FROM nothing")
    with pytest.raises(ResultsError, match="database not found"):
        InfluxQuery(influxd.url, "no_such_db").query('SELECT * FROM "x"')


def test_server_refusal_is_reported_not_retried(influxd: InfluxServer, tmp_path: Path) -> None:
    """A 4xx (here a field type conflict) is counted as rejected; the rest of the batch lands."""
    db = influxd.create_database("refusal")
    writer = ResultsWriter(V1Transport(influxd.url, db), tmp_path / "results.lp", tmp_path / "spool.lp")
    writer.write([Point("conflict", {}, {"v": 1}, BASE_NS)])  # v is an integer field now
    wait_for(lambda: writer.stats().points_written == 1, 10, "the first point")
    writer.write([Point("conflict", {}, {"v": 1.5}, BASE_NS + 1), Point("conflict", {}, {"w": 2}, BASE_NS + 2)])
    started = time.monotonic()
    stats = writer.close(timeout=5)
    assert time.monotonic() - started < 3
    assert stats.points_rejected == 1 and stats.points_written == 2 and stats.points_spooled == 0
    assert stats.last_error is not None and "field type conflict" in stats.last_error
    assert_accounted(stats)
    assert len(lp_lines(tmp_path / "results.lp")) == 3


def test_unreachable_server_spools_and_close_returns_in_time(closed_port: int, tmp_path: Path) -> None:
    n = 7_000
    spool = tmp_path / "spool.lp"
    writer = open_writer(
        f"http://127.0.0.1:{closed_port}",
        "v1",
        "harness",
        None,
        None,
        None,
        tmp_path / "results.lp",
        spool,
        batch_size=2000,
        flush_interval=0.2,
    )
    writer.write(make_points(n))
    time.sleep(0.5)  # let the writer fail once and start backing off
    started = time.monotonic()
    stats = writer.close(timeout=2)
    assert time.monotonic() - started < 3.0
    assert stats.points_spooled == n and stats.points_pending == n and stats.points_written == 0
    assert stats.points_dropped == 0
    assert_accounted(stats)
    assert stats.last_error is not None and "unreachable" in stats.last_error
    assert spool_points(spool) == n
    assert len(lp_lines(tmp_path / "results.lp")) == n


def test_blackholed_server_close_returns_in_time(blackhole: int, tmp_path: Path) -> None:
    """A server that never answers: the send in flight is abandoned at close, nothing is lost."""
    n = 300
    writer = ResultsWriter(
        V1Transport(f"http://127.0.0.1:{blackhole}", "harness", timeout=5),
        tmp_path / "results.lp",
        tmp_path / "spool.lp",
        flush_interval=0.1,
    )
    writer.write(make_points(n))
    time.sleep(0.5)  # a send with a 5 s socket timeout is now waiting for an answer
    writer.write(make_points(10, run_id="late"))
    started = time.monotonic()
    stats = writer.close(timeout=2)
    assert time.monotonic() - started < 3.0
    assert stats.points_total == n + 10 and stats.points_pending == n + 10 and stats.points_written == 0
    assert_accounted(stats)
    assert spool_points(tmp_path / "spool.lp") == n + 10
    assert len(lp_lines(tmp_path / "results.lp")) == n + 10


def test_spool_is_replayed_when_the_server_comes_up(tmp_path: Path) -> None:
    port = free_port()
    spool = tmp_path / "spool.lp"
    writer = ResultsWriter(
        V1Transport(f"http://127.0.0.1:{port}", "replay"),
        tmp_path / "results.lp",
        spool,
        flush_interval=0.1,
        batch_size=1000,
        backoff_initial=0.1,
        backoff_max=0.5,
    )
    try:
        first = make_points(2_500, run_id="while-down")
        writer.write(first)
        wait_for(lambda: writer.stats().points_spooled == len(first), 10, "points to be spooled")
        assert spool_points(spool) == len(first)
        with running_influxd(tmp_path / "influxd", port=port, rpc_port=free_port()) as server:
            wait_for(lambda: writer.stats().points_replayed == len(first), 20, "the spool to be replayed")
            assert not spool.exists() or spool.stat().st_size == 0
            second = make_points(500, run_id="after")
            writer.write(second)
            stats = writer.close(timeout=5)
            assert stats.points_replayed == len(first) and stats.points_written == len(first) + len(second)
            assert stats.points_pending == 0
            assert_accounted(stats)
            rows = server.query('SELECT count("count") FROM "harness_requests" GROUP BY "run_id"', "replay")
            assert {r["run_id"]: r["count"] for r in rows} == {"while-down": 2_500, "after": 500}
            assert not spool.exists()
    finally:
        writer.close(timeout=1)


def test_spool_left_by_an_earlier_writer_is_replayed(influxd: InfluxServer, closed_port: int, tmp_path: Path) -> None:
    """A run that ended with the server down leaves spool.lp; the next writer on it replays it."""
    spool = tmp_path / "spool.lp"
    down = ResultsWriter(V1Transport(f"http://127.0.0.1:{closed_port}", "x"), tmp_path / "a.lp", spool)
    down.write(make_points(1_200, run_id="earlier"))
    assert down.close(timeout=1).points_pending == 1_200

    db = influxd.create_database("leftover_spool")
    up = ResultsWriter(V1Transport(influxd.url, db), tmp_path / "b.lp", spool, flush_interval=0.1)
    up.write(make_points(10, run_id="now"))
    stats = up.close(timeout=5)
    assert stats.points_replayed == 1_200 and stats.points_written == 1_210 and stats.points_pending == 0
    rows = influxd.query('SELECT count("count") FROM "harness_requests" GROUP BY "run_id"', db)
    assert {r["run_id"]: r["count"] for r in rows} == {"earlier": 1_200, "now": 10}
    assert not spool.exists()


def test_torn_or_hand_written_spool_is_still_replayed(influxd: InfluxServer, tmp_path: Path) -> None:
    """A crash can tear the last spool frame; a user can drop plain line protocol there."""
    spool = tmp_path / "spool.lp"
    whole = [encode(p) for p in make_points(3, run_id="whole")]
    torn = [encode(p) for p in make_points(2, run_id="torn")]
    whole_body = ("\n".join(whole) + "\n").encode()
    torn_body = ("\n".join(torn) + "\n").encode()
    spool.write_bytes(
        f"# harness-spool points=3 bytes={len(whole_body)}\n".encode()
        + whole_body
        + f"# harness-spool points=5 bytes={len(torn_body) + 400}\n".encode()  # cut short
        + torn_body
    )
    db = influxd.create_database("torn_spool")
    stats = ResultsWriter(V1Transport(influxd.url, db), tmp_path / "a.lp", spool).close(timeout=5)
    assert stats.points_replayed == 5 and stats.points_pending == 0
    rows = influxd.query('SELECT count("count") FROM "harness_requests" GROUP BY "run_id"', db)
    assert {r["run_id"]: r["count"] for r in rows} == {"whole": 3, "torn": 2}

    spool.write_text("\n".join(encode(p) for p in make_points(4, run_id="by hand")) + "\n")
    stats = ResultsWriter(V1Transport(influxd.url, db), tmp_path / "b.lp", spool).close(timeout=5)
    assert stats.points_replayed == 4 and not spool.exists()
    assert influxd.count(db, "harness_requests", "count") == 9


def test_full_queue_goes_to_the_spool_not_memory(influxd: InfluxServer, tmp_path: Path) -> None:
    db = influxd.create_database("full_queue")
    writer = ResultsWriter(
        V1Transport(influxd.url, db),
        tmp_path / "results.lp",
        tmp_path / "spool.lp",
        flush_interval=30,  # the queue only drains at a full batch, or at close
        batch_size=100,
        max_queue_points=100,
    )
    points = make_points(1_000)
    for i in range(0, len(points), 40):
        writer.write(points[i : i + 40])
        assert len(writer._queue) <= 100
    # 40 + 40 stay in memory; every later write would exceed the bound and goes to disk.
    assert writer.stats().points_spooled == 920
    stats = writer.close(timeout=10)
    assert stats.points_spooled == 920 and stats.points_replayed == 920
    assert stats.points_written == 1_000 and stats.points_pending == 0
    assert_accounted(stats)
    assert influxd.count(db, "harness_requests", "count") == 1_000
    assert len(lp_lines(tmp_path / "results.lp")) == 1_000


def test_no_server_writes_results_lp_that_loads_later(influxd: InfluxServer, tmp_path: Path) -> None:
    """NullTransport: results.lp only; the command we tell users to run really loads it."""
    lp = tmp_path / "run dir" / "results.lp"
    writer = open_writer(None, "v1", "harness", None, None, None, lp, tmp_path / "spool.lp")
    assert isinstance(writer.transport, NullTransport)
    points = make_points(12_001)
    writer.write(points)
    stats = writer.close()
    assert stats.points_total == 12_001 and stats.points_written == 0 and stats.points_spooled == 0
    assert len(lp_lines(lp)) == 12_001
    done = subprocess.run(
        ["bash", "-c", load_command(lp, influxd.url, "loaded from lp")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert influxd.count("loaded from lp", "harness_requests", "count") == 12_001


# --------------------------------------------------------------------------- v2 writer


def test_v2_writer_against_victoria_metrics(victoria_metrics: VictoriaMetricsServer, tmp_path: Path) -> None:
    n = 3_000
    names = ["/a b", "/c,d", "/e=f", "ünï ✓", "/items/{id}"]
    points = [
        Point(
            "harness_v2",
            {"run_id": "v2run", "name": names[i % len(names)], "empty": ""},
            {"count": i, "p99": i / 4, "saturated": i % 2 == 1},
            BASE_NS + i * 1_000_000,
        )
        for i in range(n)
    ]
    writer = open_writer(
        victoria_metrics.url,
        "v2",
        "harness",
        "results",
        "my-org",
        SECRET,
        tmp_path / "results.lp",
        tmp_path / "spool.lp",
        batch_size=1000,
        flush_interval=0.1,
    )
    writer.write(points)
    stats = writer.close(timeout=10)
    assert stats.points_written == n and stats.points_spooled == 0
    assert_accounted(stats)
    assert SECRET not in repr(writer.transport) and SECRET not in str(stats.to_dict())

    expected: dict[tuple[str, str], dict[int, float]] = {}
    for p in points:
        for field, value in p.fields.items():
            series = expected.setdefault((f"harness_v2_{field}", p.tags["name"]), {})
            series[p.time_ns // 1_000_000] = float(value)
    got: dict[tuple[str, str], dict[int, float]] = {}
    for item in victoria_metrics.export('{__name__=~"harness_v2_.*"}'):
        metric = item["metric"]
        assert set(metric) == {"__name__", "run_id", "name"}, metric  # empty tag dropped
        assert metric["run_id"] == "v2run"
        series = got.setdefault((metric["__name__"], metric["name"]), {})
        series.update(zip(item["timestamps"], item["values"], strict=True))
    assert got == expected


def test_v2_unreachable_spools_and_close_returns_in_time(closed_port: int, tmp_path: Path) -> None:
    writer = open_writer(
        f"http://127.0.0.1:{closed_port}",
        "v2",
        "harness",
        "b",
        "o",
        SECRET,
        tmp_path / "results.lp",
        tmp_path / "spool.lp",
        flush_interval=0.1,
    )
    writer.write(make_points(500))
    time.sleep(0.3)
    started = time.monotonic()
    stats = writer.close(timeout=2)
    assert time.monotonic() - started < 3.0
    assert stats.points_spooled == 500 and stats.points_pending == 500 and stats.points_dropped == 0
    assert stats.last_error is not None and SECRET not in stats.last_error


# --------------------------------------------------------------------------- secrets


class _LeakyHandler(BaseHTTPRequestHandler):
    """A real HTTP server that echoes the Authorization header back in a 500 error body,
    so the test proves the writer's error messages are redacted, not merely lucky."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        body = f'{{"error": "denied for {self.headers.get("Authorization")} on {self.path}"}}'.encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def leaky_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LeakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_tokens_never_appear_in_reprs_or_errors(leaky_server: str, closed_port: int, tmp_path: Path) -> None:
    from harness.results.v2 import V2Transport

    v1 = V1Transport(leaky_server, "db", token=SECRET)
    quoted = urllib.parse.quote(SECRET, safe="")
    basic = V1Transport(f"http://admin:{quoted}@127.0.0.1:{closed_port}", "db")
    v2 = V2Transport(leaky_server, org="o", bucket="b", token=SECRET)
    query = InfluxQuery(leaky_server, "db", token=SECRET)
    for obj in (v1, basic, v2, query):
        assert SECRET not in repr(obj) and "***" in repr(obj), repr(obj)
        assert SECRET not in obj.url and quoted not in obj.url
    errors: list[str] = []
    for transport in (v1, basic, v2):
        with pytest.raises(TransportError) as caught:
            transport.send("m v=1 1\n", timeout=2)
        errors.append(str(caught.value))
        errors.append(repr(caught.value))
    with pytest.raises(ResultsError) as query_error:
        query.query('DROP DATABASE "x"')
    errors.append(str(query_error.value))
    assert "denied for Token ***" in errors[0] and "denied for Token ***" in errors[4]  # echoed back
    for text in errors:
        assert SECRET not in text and quoted not in text, text
    v2.close()

    writer = open_writer(leaky_server, "v1", "db", None, None, SECRET, tmp_path / "r.lp", tmp_path / "s.lp")
    writer.write(make_points(5))
    stats = writer.close(timeout=2)
    assert stats.points_pending == 5 and stats.last_error and SECRET not in str(stats.to_dict())
    assert SECRET not in repr(writer)


def test_open_writer_rejects_unknown_api(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        open_writer("http://127.0.0.1:1", "v3", "db", None, None, None, tmp_path / "r", tmp_path / "s")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- embedded influxd


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_embedded_influx_starts_answers_and_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    pid = None
    try:
        embedded = ensure_local_influx(url, data_dir, rpc_port=free_port())
        assert embedded is not None and embedded.started and embedded.pid is not None
        pid = embedded.pid
        assert ping(url)
        conf = config_path(data_dir)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:3] == [b"-config", str(conf).encode()]
        assert (influx_dir(data_dir) / "influxd.pid").read_text().strip() == str(pid)
        assert os.getsid(pid) != os.getsid(0), "influxd must run in its own session"
        text = conf.read_text()
        assert f'"127.0.0.1:{port}"' in text and "store-enabled = false" in text

        again = ensure_local_influx(url, data_dir)
        assert again is not None and not again.started and again.pid == pid

        V1Transport(url, "embedded").send("m v=1 1\n")
        assert InfluxQuery(url, "embedded").query('SELECT "v" FROM "m"') == [{"time": 1, "v": 1}]

        assert stop_local_influx(data_dir) is True
        assert not _alive(pid) and not ping(url)
        assert stop_local_influx(data_dir) is False
    finally:
        if pid is not None and _alive(pid):
            stop_local_influx(data_dir)
        assert pid is None or not _alive(pid)


def test_embedded_influx_refuses_what_it_must_not_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError):
        ensure_local_influx("http://192.0.2.1:8086", tmp_path)
    with pytest.raises(ConfigError):
        ensure_local_influx("https://127.0.0.1:8086", tmp_path)

    # A pid file naming a process that is not our influxd: never signalled.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        influx_dir(tmp_path).mkdir(parents=True)
        (influx_dir(tmp_path) / "influxd.pid").write_text(f"{sleeper.pid}\n")
        assert stop_local_influx(tmp_path) is False
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait(5)

    # No influxd installed and nothing listening: None, the caller keeps results.lp only.
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert ensure_local_influx(f"http://127.0.0.1:{free_port()}", tmp_path / "other") is None


def test_embedded_influx_reports_a_port_it_cannot_use(tmp_path: Path) -> None:
    """Something that is not InfluxDB holds the port: influxd cannot bind; we say why, and
    leave nothing running."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ResultsError, match="did not answer"):
            ensure_local_influx(f"http://127.0.0.1:{port}", tmp_path, rpc_port=free_port(), start_timeout=8)
    assert not (influx_dir(tmp_path) / "influxd.pid").exists()
