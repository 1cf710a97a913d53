"""The results writer: every point of a run goes to results.lp and, in batches, to InfluxDB.

Why it is shaped this way:

* A run must never slow down or stall because the results server is slow or gone, so
  :meth:`ResultsWriter.write` only encodes and appends to a bounded in-memory queue; a daemon
  thread does all network and most disk I/O.
* A run must never lose a point, so every point is appended to ``results.lp`` (the offline copy
  of the run, loadable later with one ``curl``), and a batch the server did not take goes to a
  spool file that is replayed, in order and before newer batches, once the server answers again.
* Memory stays bounded: when the queue is full, new points go straight to the spool on disk.
* Shutdown is bounded: :meth:`ResultsWriter.close` returns within about ``timeout`` even when
  the server black-holes packets, because every send carries a socket timeout no longer than
  the time left.

Transports are tiny (:class:`Transport`): the v1 ``/write`` endpoint with stdlib urllib (InfluxDB
1.x, which is what Debian ships), the v2 write API through ``influxdb-client`` (InfluxDB 2.x/3.x,
1.8+, and VictoriaMetrics; see :mod:`harness.results.v2`), and :class:`NullTransport` when there
is no server at all.  Secrets (tokens, passwords) never appear in reprs, logs or exceptions.
"""

from __future__ import annotations

import base64
import collections
import enum
import json
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal, Protocol, runtime_checkable

from harness.errors import ConfigError, ResultsError
from harness.measure.cpu import thread_cpu_seconds
from harness.results._http import REDACTED, http_request, redact, split_userinfo
from harness.results.influxql import quote_identifier
from harness.results.lineproto import Point, encode_many

__all__ = [
    "NullTransport",
    "ResultsWriter",
    "Transport",
    "TransportError",
    "V1Transport",
    "WriterStats",
    "open_writer",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_BATCH_SIZE = 5000
DEFAULT_MAX_QUEUE_POINTS = 200_000
DEFAULT_BACKOFF_INITIAL = 0.5
# A server that answers again gets its spool back within this many seconds (plus one send); a
# server that stays down costs one refused connection, or one socket timeout, per period.
DEFAULT_BACKOFF_MAX = 5.0

# 4xx answers that say "try again later" rather than "this data is wrong".
_RETRYABLE_4XX = frozenset({404, 408, 425, 429})
_DROPPED_RE = re.compile(r"dropped=(\d+)")


class TransportError(ResultsError):
    """A batch was not accepted.

    ``permanent`` means resending the same bytes cannot help (a 4xx such as a parse error, a
    field type conflict or missing permissions): the writer reports it and moves on instead of
    retrying forever.  Otherwise (connection refused, timeout, 5xx, 404 database-not-found) the
    batch is spooled and retried.  ``rejected`` is how many points the server said it dropped
    when it knows (InfluxDB 1.x "partial write ... dropped=N").
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status: int | None = None,
        rejected: int | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.rejected = rejected


@runtime_checkable
class Transport(Protocol):
    """Sends one batch of line protocol (lines separated by newlines) to a server."""

    timeout: float

    def send(self, lines: str, timeout: float | None = None) -> None:
        """Send or raise :class:`TransportError`.  ``timeout`` (seconds) overrides the default."""
        ...

    def describe(self) -> str:
        """Where the points go, for logs and the run summary, without secrets."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class NullTransport:
    """No server: the run's points only go to results.lp (load it into InfluxDB later)."""

    timeout: float = 0.0

    def send(self, lines: str, timeout: float | None = None) -> None:
        return None

    def describe(self) -> str:
        return "none (results.lp only)"

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "NullTransport()"


def error_text(status: int, body: bytes) -> str:
    """The server's own explanation from an error body (InfluxDB answers {"error": "..."})."""
    text = body.decode("utf-8", "replace").strip()
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        for key in ("error", "message"):
            if isinstance(decoded.get(key), str):
                text = decoded[key]
                break
    if len(text) > 500:
        text = text[:500] + "..."
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def classify_status(status: int, message: str) -> TransportError:
    """Turn a non-2xx status into a TransportError that says whether retrying can help."""
    permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX
    match = _DROPPED_RE.search(message)
    rejected = int(match.group(1)) if match else None
    return TransportError(message, permanent=permanent, status=status, rejected=rejected)


class V1Transport:
    """InfluxDB 1.x ``POST /write?db=...&precision=ns`` with stdlib urllib.

    Credentials go in headers (Basic for username/password, ``Token`` for a token as InfluxDB
    1.8+ and the 2.x v1-compatibility API expect), never in the query string, so they cannot
    leak through a logged URL.
    """

    def __init__(
        self,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retention_policy: str | None = None,
    ) -> None:
        if not database:
            raise ConfigError("the InfluxDB v1 writer needs a database name")
        base, url_user, url_password = split_userinfo(url)
        self.url = base
        self.database = database
        self.retention_policy = retention_policy
        self.username = username if username is not None else url_user
        self._password = password if password is not None else url_password
        self._token = token
        self.timeout = float(timeout)
        self._secrets = tuple(s for s in (self._password, self._token) if s)
        self._headers: dict[str, str] = {}
        if self._token:
            self._headers["Authorization"] = f"Token {self._token}"
        elif self.username is not None:
            raw = f"{self.username}:{self._password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        self._write_url = f"{self.url}/write?{urllib.parse.urlencode(params)}"
        self._database_checked = False

    def __repr__(self) -> str:
        password = REDACTED if self._password else None
        token = REDACTED if self._token else None
        return (
            f"V1Transport(url={self.url!r}, database={self.database!r}, username={self.username!r}, "
            f"password={password!r}, token={token!r}, timeout={self.timeout!r})"
        )

    def describe(self) -> str:
        return f"InfluxDB v1 {self.url} db={self.database}"

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _post(self, url: str, body: bytes, timeout: float | None, content_type: str) -> tuple[int, bytes]:
        headers = dict(self._headers)
        headers["Content-Type"] = content_type
        try:
            return http_request("POST", url, body=body, headers=headers, timeout=timeout or self.timeout)
        except OSError as err:
            raise TransportError(self._redact(f"{self.describe()}: unreachable: {err}")) from None

    def ensure_database(self, timeout: float | None = None) -> None:
        """``CREATE DATABASE`` (a no-op when it exists), so a fresh server needs no setup."""
        statement = f"CREATE DATABASE {quote_identifier(self.database)}"
        body = urllib.parse.urlencode({"q": statement}).encode()
        status, payload = self._post(f"{self.url}/query", body, timeout, "application/x-www-form-urlencoded")
        if status >= 300:
            raise classify_status(status, self._redact(f"{self.describe()}: {error_text(status, payload)}"))
        try:
            results = json.loads(payload or b"{}").get("results", [])
        except ValueError:
            results = []
        for result in results:
            if isinstance(result, dict) and result.get("error"):
                message = self._redact(f"{self.describe()}: create database: {result['error']}")
                raise TransportError(message, permanent=True, status=status)

    def _ensure_database_once(self, timeout: float | None) -> None:
        """Create the database before the first write.

        influxd answers a write to a missing database with 404 before reading the body and
        closes the connection, so a large first batch fails with a broken pipe instead of a
        clean 404; creating the database first avoids that.  A permanent refusal (a user
        without admin rights, a server without CREATE DATABASE) is not fatal: the database
        may exist already, and the write itself will say if it does not.
        """
        if self._database_checked:
            return
        try:
            self.ensure_database(timeout)
        except TransportError as err:
            if not err.permanent:
                raise
            log.debug("could not create database %s: %s", self.database, err)
        self._database_checked = True

    def send(self, lines: str, timeout: float | None = None) -> None:
        self._ensure_database_once(timeout)
        body = lines.encode("utf-8")
        status, payload = self._post(self._write_url, body, timeout, "text/plain; charset=utf-8")
        if status == 404:
            # The database was dropped since: create it again and resend once; a later 404 is
            # retried with backoff.
            self.ensure_database(timeout)
            status, payload = self._post(self._write_url, body, timeout, "text/plain; charset=utf-8")
        if 200 <= status < 300:
            return
        raise classify_status(status, self._redact(f"{self.describe()}: {error_text(status, payload)}"))

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class WriterStats:
    """What happened to a run's points; goes into summary.json.

    * ``points_total``: points handed to :meth:`ResultsWriter.write` (all are in results.lp).
    * ``points_written``: accepted by the server, directly or after a replay.
    * ``points_spooled``: written to the spool file (server down, a send timed out, queue full);
      a point is spooled at most once.
    * ``points_replayed``: read back from the spool and accepted by the server (included in
      written).
    * ``points_rejected``: refused by the server for good (4xx); still in results.lp.
    * ``points_dropped``: in neither the server nor the spool (only when a disk write failed).
    * ``points_pending``: still in the spool file at close; replay by loading results.lp.
    * ``points_inherited``: already in the spool file when the writer opened it (an earlier
      run's leftovers; always 0 for a run, whose spool file is its own).
    * ``queue_peak_points`` / ``queue_max_points``: the most points ever held in memory, and
      the bound beyond which they go to the spool file instead.

    Exact after close, whatever happened to the server meanwhile:

    * ``points_total + points_inherited == points_written + points_rejected + points_pending
      + points_dropped``
    * ``points_spooled + points_inherited == points_replayed + points_pending + (spooled points
      refused for good, which are part of points_rejected)``

    So a run during which the server went away and came back, and refused nothing, ends with
    ``points_written == points_total``, ``points_replayed == points_spooled`` and
    ``points_pending == points_dropped == 0``.
    """

    points_total: int = 0
    points_written: int = 0
    points_spooled: int = 0
    points_replayed: int = 0
    points_rejected: int = 0
    points_dropped: int = 0
    points_pending: int = 0
    points_inherited: int = 0
    queue_peak_points: int = 0
    queue_max_points: int = 0
    transport: str = ""
    lp_path: str = ""
    spool_path: str = ""
    last_error: str | None = None
    cpu_s: float = 0.0  # CPU seconds the writer thread used
    close_s: float = 0.0  # how long close() took (bounded by its timeout, plus a quarter second)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_SPOOL_HEADER = "# harness-spool points={points} bytes={size}\n"
_SPOOL_HEADER_RE = re.compile(rb"^# harness-spool points=(\d+) bytes=(\d+)\n$")


class _Spool:
    """Batches the server did not take, on disk, in order.

    Each batch is framed by a comment line ``# harness-spool points=N bytes=M`` (comments are
    legal line protocol, so the file can still be posted to ``/write`` by hand) followed by the
    batch's M bytes.  The frame keeps point counts exact and keeps a string field containing a
    newline in one piece.  Replay advances a read offset; the file is truncated once everything
    is replayed and rewritten without the replayed prefix at close.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self._offset = 0
        self.pending_points = 0
        if path.exists() and path.stat().st_size > 0:
            self.pending_points = sum(item[0] for item in self._scan(0))

    def append(self, lines: list[str]) -> None:
        body = ("\n".join(lines) + "\n").encode("utf-8")
        header = _SPOOL_HEADER.format(points=len(lines), size=len(body)).encode("ascii")
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as spool:
                spool.write(header + body)
                spool.flush()
            self.pending_points += len(lines)

    def _scan(self, offset: int) -> Iterable[tuple[int, bytes, int]]:
        """Yield (points, body, next_offset) from ``offset``; tolerate a torn or foreign tail."""
        with open(self.path, "rb") as spool:
            spool.seek(offset)
            while True:
                header = spool.readline()
                if not header:
                    return
                match = _SPOOL_HEADER_RE.match(header)
                if match is None:
                    # Not our frame (hand-edited, or a crash mid-header): send the rest as is.
                    rest = header + spool.read()
                    points = sum(1 for ln in rest.splitlines() if ln.strip() and not ln.startswith(b"#"))
                    yield points, rest, spool.tell()
                    return
                points, size = int(match.group(1)), int(match.group(2))
                body = spool.read(size)
                if len(body) < size:  # torn write at the end (crash, disk full)
                    points = sum(1 for ln in body.splitlines() if ln.strip())
                yield points, body, spool.tell()

    def peek(self) -> tuple[int, bytes, int] | None:
        """The oldest batch not yet replayed, or None."""
        with self.lock:
            if self.pending_points <= 0 or not self.path.exists():
                return None
            for item in self._scan(self._offset):
                return item
            return None

    def consume(self, next_offset: int, points: int) -> None:
        """Mark the batch ending at ``next_offset`` as delivered."""
        with self.lock:
            self._offset = next_offset
            self.pending_points = max(0, self.pending_points - points)
            if self.path.exists() and self._offset >= self.path.stat().st_size:
                with open(self.path, "r+b") as spool:
                    spool.truncate(0)
                self._offset = 0
                self.pending_points = 0

    def compact(self) -> None:
        """Leave only undelivered batches on disk; remove the file when nothing is left."""
        with self.lock:
            if not self.path.exists():
                return
            if self.pending_points <= 0 or self._offset >= self.path.stat().st_size:
                self.path.unlink()
                self._offset = 0
                return
            if self._offset == 0:
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(self.path, "rb") as src, open(tmp, "wb") as dst:
                src.seek(self._offset)
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(tmp, self.path)
            self._offset = 0


class _Outcome(enum.Enum):
    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"
    ABANDONED = "abandoned"


class ResultsWriter:
    """Batched, non-blocking, spooling writer of result points (see the module docstring).

    The accounting invariants of :class:`WriterStats` hold after :meth:`close`, even when
    close() gives up on a send that is still waiting for a black-holed server: close() then
    spools that batch itself and the writer thread, when its socket finally times out, changes
    nothing (if the late send did succeed, replaying the spool later rewrites identical points,
    which InfluxDB treats as the same points).
    """

    def __init__(
        self,
        transport: Transport,
        lp_path: Path,
        spool_path: Path,
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_queue_points: int = DEFAULT_MAX_QUEUE_POINTS,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
    ) -> None:
        if batch_size < 1 or max_queue_points < batch_size:
            raise ValueError("need 1 <= batch_size <= max_queue_points")
        self.transport = transport
        self.lp_path = Path(lp_path)
        self.spool_path = Path(spool_path)
        self.flush_interval = float(flush_interval)
        self.batch_size = int(batch_size)
        self.max_queue_points = int(max_queue_points)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._offline = isinstance(transport, NullTransport)

        self.lp_path.parent.mkdir(parents=True, exist_ok=True)
        self._lp: IO[str] | None = open(self.lp_path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._lp_lock = threading.Lock()
        self._spool = _Spool(self.spool_path)
        self._inherited = self._spool.pending_points

        self._cond = threading.Condition()
        self._queue: collections.deque[str] = collections.deque()
        self._queue_peak = 0
        self._closing = False
        self._close_deadline: float | None = None

        # Guards what the writer thread owns (the batch in flight) against close() giving up
        # on the thread; everything that changes the outcome of a batch happens under it.
        self._commit_lock = threading.Lock()
        self._inflight: list[str] | None = None
        self._inflight_in_lp = False
        self._abandoned = False

        self._stats_lock = threading.Lock()
        self._total = 0
        self._written = 0
        self._spooled = 0
        self._replayed = 0
        self._rejected = 0
        self._dropped = 0
        self._last_error: str | None = None

        self._backoff = backoff_initial
        self._retry_at = 0.0
        self._server_down = False
        self._final: WriterStats | None = None
        self._cpu_s = 0.0
        self._close_s = 0.0
        self._thread = threading.Thread(target=self._run, name="harness-results-writer", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"ResultsWriter(transport={self.transport!r}, lp_path={str(self.lp_path)!r})"

    # ---------------------------------------------------------------- caller side

    def write(self, points: Iterable[Point]) -> None:
        """Queue points for writing; never waits for the network.

        Encoding happens here so that a malformed point (a programming error) raises in the
        caller, where the traceback is useful.  When the queue is full, the points are appended
        to results.lp and the spool file right away instead (bounded memory).
        """
        lines = encode_many(points)
        if not lines:
            return
        with self._cond:
            if self._closing:
                raise ResultsError("the results writer is closed")
            with self._stats_lock:
                self._total += len(lines)
            if len(self._queue) + len(lines) <= self.max_queue_points:
                self._queue.extend(lines)
                self._queue_peak = max(self._queue_peak, len(self._queue))
                if len(self._queue) >= self.batch_size:
                    self._cond.notify_all()
                return
        self._write_lp(lines)
        self._spool_lines(lines)

    def stats(self) -> WriterStats:
        """A snapshot of the counters (live progress, and the result of :meth:`close`)."""
        with self._stats_lock:
            return WriterStats(
                points_total=self._total,
                points_written=self._written,
                points_spooled=self._spooled,
                points_replayed=self._replayed,
                points_rejected=self._rejected,
                points_dropped=self._dropped,
                points_pending=self._spool.pending_points,
                points_inherited=self._inherited,
                queue_peak_points=self._queue_peak,
                queue_max_points=self.max_queue_points,
                transport=self.transport.describe(),
                lp_path=str(self.lp_path),
                spool_path=str(self.spool_path),
                last_error=self._last_error,
                cpu_s=round(self._cpu_s, 3),
                close_s=round(self._close_s, 3),
            )

    def close(self, timeout: float = 5.0) -> WriterStats:
        """Flush, try the spool once more, and return the final stats within about ``timeout``.

        Points that could not reach the server by then stay in the spool file (and, like every
        point, in results.lp); ``points_pending`` says how many.  Calling close() again returns
        the same stats.
        """
        if self._final is not None:
            return self._final
        began = time.monotonic()
        timeout = max(0.0, timeout)
        with self._cond:
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + 0.25)
        with self._commit_lock:
            stuck = self._thread.is_alive()
            inflight: list[str] = []
            inflight_in_lp = True
            if stuck:
                # A send started before close() is still waiting for its socket timeout.
                self._abandoned = True
                inflight = self._inflight or []
                inflight_in_lp = self._inflight_in_lp
                self._inflight = None
        if stuck:
            log.warning("results server did not answer within %.1fs; leaving the rest in %s", timeout, self.spool_path)
            with self._cond:
                queued = list(self._queue)
                self._queue.clear()
            unlogged = queued if inflight_in_lp else inflight + queued
            if unlogged:
                self._write_lp(unlogged)
            if inflight or queued:
                self._spool_lines(inflight + queued)
            self._spool.compact()
        else:
            try:
                self.transport.close()
            except Exception as err:  # closing connections must not hide the run's stats
                self._note_error(f"closing {self.transport.describe()}: {type(err).__name__}")
        self._close_lp()
        self._close_s = time.monotonic() - began
        self._final = self.stats()
        return self._final

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- writer thread

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._cpu_s = thread_cpu_seconds()

    def _loop(self) -> None:
        next_flush = time.monotonic() + self.flush_interval
        while not self._abandoned:
            with self._cond:
                while not self._closing and len(self._queue) < self.batch_size:
                    remaining = next_flush - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                closing = self._closing
                with self._commit_lock:
                    if self._abandoned:
                        return
                    count = min(self.batch_size, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(count)]
                    # From here until it is sent or spooled, the batch is "in flight".
                    self._inflight = batch or None
                    self._inflight_in_lp = False
                more = bool(self._queue)
            if not more:
                next_flush = time.monotonic() + self.flush_interval
            try:
                if batch:
                    self._write_lp(batch)
                    self._inflight_in_lp = True
                    self._deliver(batch)
                elif not closing and not self._offline:
                    self._replay()
            except Exception as err:  # a bug here must not silently stop all writing
                log.exception("results writer: unexpected error")
                self._note_error(f"unexpected error in the results writer: {type(err).__name__}: {err}")
                with self._commit_lock:
                    self._inflight = None
                    if batch and not self._abandoned:
                        self._spool_lines(batch)
            if closing and not more:
                break
        if self._abandoned:
            return
        try:
            if not self._offline:
                self._replay(force=True)
        except Exception as err:
            log.exception("results writer: unexpected error during the final replay")
            self._note_error(f"unexpected error in the results writer: {type(err).__name__}: {err}")
        with self._commit_lock:
            if not self._abandoned:
                self._spool.compact()

    def _note_error(self, message: str) -> None:
        with self._stats_lock:
            self._last_error = message

    def _write_lp(self, lines: list[str]) -> None:
        """Append to results.lp; a failure is reported but does not stop delivery to the server."""
        with self._lp_lock:
            if self._lp is None:
                return
            try:
                self._lp.write("\n".join(lines) + "\n")
                self._lp.flush()
            except OSError as err:
                log.error("cannot append to %s: %s", self.lp_path, err)
                self._note_error(f"cannot append to {self.lp_path}: {err}")

    def _close_lp(self) -> None:
        with self._lp_lock:
            if self._lp is not None:
                try:
                    self._lp.close()
                except OSError as err:
                    self._note_error(f"cannot close {self.lp_path}: {err}")
                self._lp = None

    def _spool_lines(self, lines: list[str]) -> None:
        """Append a batch to the spool; if even the disk fails, the points are counted dropped."""
        if self._offline or not lines:
            return
        # Frames of at most one batch, so a replay never sends a body larger than a batch.
        for start in range(0, len(lines), self.batch_size):
            chunk = lines[start : start + self.batch_size]
            try:
                self._spool.append(chunk)
            except OSError as err:
                log.error("cannot append %d points to the spool %s: %s", len(chunk), self.spool_path, err)
                with self._stats_lock:
                    self._dropped += len(chunk)
                    self._last_error = f"cannot append to the spool {self.spool_path}: {err}"
                continue
            with self._stats_lock:
                self._spooled += len(chunk)

    def _deliver(self, lines: list[str]) -> None:
        """Send a fresh batch, but only after the spool is empty, so batches arrive in order."""
        if self._offline:
            with self._commit_lock:
                self._inflight = None
            return
        outcome = _Outcome.FAILED
        if self._replay():
            outcome = self._try_send("\n".join(lines) + "\n", len(lines))
        with self._commit_lock:
            if self._abandoned:  # close() has spooled the batch in flight already
                return
            self._inflight = None
            if outcome is _Outcome.FAILED:
                self._spool_lines(lines)

    def _replay(self, force: bool = False) -> bool:
        """Send spooled batches oldest first; True once the spool is empty.

        Between failures it waits out the backoff (``force`` ignores it, for the one last try at
        close) so that an unreachable server costs one timeout per backoff period, not one per batch.
        """
        if self._spool.pending_points <= 0:
            return True
        if not force and time.monotonic() < self._retry_at:
            return False
        while (item := self._spool.peek()) is not None:
            points, body, next_offset = item
            outcome = self._try_send(body.decode("utf-8", "replace"), points, spool_offset=next_offset)
            if outcome in (_Outcome.FAILED, _Outcome.ABANDONED):
                return False
        return self._spool.pending_points <= 0

    def _send_timeout(self) -> float | None:
        """The socket timeout for the next send: the transport's, cut to what close() allows."""
        timeout = self.transport.timeout or DEFAULT_TIMEOUT
        deadline = self._close_deadline
        if deadline is None:
            return timeout
        remaining = deadline - time.monotonic()
        if remaining < 0.05:
            return None
        return min(timeout, remaining)

    def _try_send(self, body: str, points: int, spool_offset: int | None = None) -> _Outcome:
        """Send one batch and account for it in one step under the commit lock.

        ``spool_offset``: the batch is the oldest spool frame, which ends there.  Once the
        server has taken it (or refused it for good) the frame is consumed and its accepted
        points are counted as replayed together with written, so close() giving up on the
        thread in between can neither count them twice nor leave them counted but pending.
        """
        timeout = self._send_timeout()
        if timeout is None:  # closing and out of time: leave it for the spool
            return _Outcome.FAILED
        error: TransportError | None = None
        try:
            self.transport.send(body, timeout=timeout)
        except TransportError as err:
            error = err
        except Exception as err:  # client libraries raise their own types; treat as unreachable
            text = f"{self.transport.describe()}: {type(err).__name__}: {err}"
            error = TransportError(redact(text, _secrets_of(self.transport)))
        with self._commit_lock:
            if self._abandoned:
                return _Outcome.ABANDONED
            if error is not None:
                outcome, accepted = self._failed(error, points)
            else:
                outcome, accepted = _Outcome.SENT, points
                with self._stats_lock:
                    self._written += points
            if spool_offset is not None and outcome is not _Outcome.FAILED:
                self._spool.consume(spool_offset, points)
                with self._stats_lock:
                    self._replayed += accepted
        if outcome is not _Outcome.SENT:
            return outcome
        if self._server_down:
            log.info("results server %s answers again", self.transport.describe())
        self._server_down = False
        self._backoff = self._backoff_initial
        self._retry_at = 0.0
        return _Outcome.SENT

    def _failed(self, err: TransportError, points: int) -> tuple[_Outcome, int]:
        """Account for a batch the server did not take; returns the outcome and the points it kept."""
        message = str(err)
        if err.permanent:
            rejected = points if err.rejected is None else min(points, err.rejected)
            log.error("results server refused %d of %d points: %s", rejected, points, message)
            with self._stats_lock:
                self._rejected += rejected
                self._written += points - rejected
                self._last_error = message
            return _Outcome.REJECTED, points - rejected
        if not self._server_down:
            log.warning("results server unavailable (%s); spooling to %s", message, self.spool_path)
        self._server_down = True
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_max)
        self._note_error(message)
        return _Outcome.FAILED, 0


def _secrets_of(transport: Transport) -> tuple[str, ...]:
    secrets = getattr(transport, "_secrets", ())
    return tuple(s for s in secrets if isinstance(s, str) and s)


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
