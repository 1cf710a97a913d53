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

Transports are tiny (:class:`~harness.results.transports.Transport`): the v1 ``/write`` endpoint
with stdlib urllib (InfluxDB 1.x, which is what Debian ships), the v2 write API through
``influxdb-client`` (InfluxDB 2.x/3.x, 1.8+, and VictoriaMetrics; see :mod:`harness.results.v2`),
and ``NullTransport`` when there is no server at all (:mod:`harness.results.transports`); the
spool file is :mod:`harness.results.spool`.  Secrets (tokens, passwords) never appear in reprs,
logs or exceptions.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from harness.errors import ResultsError, TransportError
from harness.measure.cpu import thread_cpu_seconds
from harness.results._http import redact
from harness.results.lineproto import Point, encode_many
from harness.results.spool import Spool
from harness.results.stats import WriterStats
from harness.results.transports import DEFAULT_TIMEOUT, NullTransport, Transport, secrets_of

__all__ = ["ResultsWriter"]

log = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_BATCH_SIZE = 5000
DEFAULT_MAX_QUEUE_POINTS = 200_000
DEFAULT_BACKOFF_INITIAL = 0.5
# A server that answers again gets its spool back within this many seconds (plus one send); a
# server that stays down costs one refused connection, or one socket timeout, per period.
DEFAULT_BACKOFF_MAX = 5.0


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
        self._spool = Spool(self.spool_path)
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
            error = TransportError(redact(text, secrets_of(self.transport)))
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
