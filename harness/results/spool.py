"""The spool: batches the results server did not take, on disk, in order, until it takes them.

The writer appends a batch here when a send fails (server down, a send timed out, the queue
full) and replays the oldest batch first once the server answers again, so points arrive in
the order they were written and none is lost while the disk holds.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["Spool"]

_SPOOL_HEADER = "# harness-spool points={points} bytes={size}\n"
_SPOOL_HEADER_RE = re.compile(rb"^# harness-spool points=(\d+) bytes=(\d+)\n$")


class Spool:
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
