"""Choose where a run's results go, and tell the user where they went.

Default local URL with nothing listening: start the embedded InfluxDB 1.x if Debian's
influxd is installed, else keep the results only in ``runs/<run_id>/results.lp`` and say
how to load that file later. Any other URL is used as given; if it is down, the writer
spools and replays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness import paths
from harness.errors import ConfigError
from harness.results._http import split_userinfo
from harness.results.embedded import DEFAULT_URL, EmbeddedInflux, ensure_local_influx, load_command, ping
from harness.results.transports import DEFAULT_TIMEOUT, NullTransport, Transport, V1Transport
from harness.results.writer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_QUEUE_POINTS,
    ResultsWriter,
)
from harness.scenario import Results

__all__ = ["ResultsSink", "open_results", "open_writer"]

Say = Callable[[str], Any]


@dataclass
class ResultsSink:
    writer: ResultsWriter
    url: str | None
    api: str
    database: str
    lp_path: Path
    embedded: EmbeddedInflux | None

    @property
    def shown_url(self) -> str | None:
        """The URL without any user:password@ part: what summaries and the terminal may show."""
        return None if self.url is None else split_userinfo(self.url)[0]

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.shown_url,
            "api": self.api,
            "database": self.database,
            "line_protocol_file": str(self.lp_path),
            "embedded_influxdb": bool(self.embedded and self.embedded.started),
        }

    def after_run(self, say: Say) -> None:
        """Tell the user where the results went; after the writer's close, also what did not arrive."""
        if self.url is None:
            command = load_command(self.lp_path, DEFAULT_URL, self.database)
            say(f"results kept in {self.lp_path} (line protocol); load them into InfluxDB 1.x later with:\n  {command}")
            return
        say(f"results in InfluxDB {self.shown_url} ({self.api}, {self.database}) and {self.lp_path}")
        stats = self.writer.stats()
        if stats.points_pending > 0:
            spool = Path(stats.spool_path)
            text = f"{stats.points_pending} points did not reach InfluxDB (unreachable at the end); they are in {spool}"
            if self.api == "v1":
                text += (
                    f"; load them when it is back with:\n  {load_command(spool, self.shown_url or '', self.database)}"
                )
            say(text)


def open_results(results: Results, url: str, token: str | None, run_dir: Path, say: Say) -> ResultsSink:
    """Open the writer for a run; starts the embedded InfluxDB when that is what the user gets by default."""
    api = results.write_api()
    lp_path = run_dir / "results.lp"
    spool_path = run_dir / "spool.lp"
    embedded = None
    target: str | None = url
    if api == "v1" and url.rstrip("/") == DEFAULT_URL and not ping(url):
        embedded = ensure_local_influx(url, paths.data_dir())
        if embedded is None:
            say(f"no InfluxDB answers at {url} and influxd is not installed: results go to {lp_path} only")
            target = None
        elif embedded.started:
            where = paths.data_dir() / "influxdb"
            say(f"started the embedded InfluxDB 1.x at {url} (pid {embedded.pid}, data in {where})")
    writer = open_writer(
        url=target,
        api=api,
        database=results.database,
        bucket=results.bucket,
        org=results.org,
        token=token,
        lp_path=lp_path,
        spool_path=spool_path,
    )
    return ResultsSink(writer, target, api, results.database, lp_path, embedded)


def open_writer(
    url: str | None,
    api: Literal["v1", "v2"],
    database: str,
    bucket: str | None,
    org: str | None,
    token: str | None,
    lp_path: Path,
    spool_path: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_queue_points: int = DEFAULT_MAX_QUEUE_POINTS,
) -> ResultsWriter:
    """The writer a run uses.  ``url`` None, empty or "none" means no server: results.lp only.

    v1: InfluxDB 1.x ``/write`` into ``database`` (``token`` is sent as ``Authorization: Token``;
    "user:password" works with 1.8+).  v2: the ``influxdb-client`` write API into ``bucket``
    (default: ``database``) of ``org`` (default "-", which InfluxDB 1.8+ ignores).
    """
    transport: Transport
    if not url or url.strip().lower() == "none":
        transport = NullTransport()
    elif api == "v1":
        transport = V1Transport(url, database, token=token, timeout=timeout)
    elif api == "v2":
        from harness.results.v2 import V2Transport

        transport = V2Transport(url, org=org or "-", bucket=bucket or database, token=token or "", timeout=timeout)
    else:
        raise ConfigError(f"unknown InfluxDB API {api!r}: use 'v1' or 'v2'")
    return ResultsWriter(
        transport,
        lp_path,
        spool_path,
        flush_interval=flush_interval,
        batch_size=batch_size,
        max_queue_points=max_queue_points,
    )
