"""What happened to a run's points: the results writer's counters, and the sums they keep."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["WriterStats"]


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
