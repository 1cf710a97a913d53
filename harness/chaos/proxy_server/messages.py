"""Reading one whole HTTP/1.x response off the upstream socket, for the response rules that rewrite
it (:mod:`.rules`): head, then the body by its framing (``Content-Length``, chunked, or until the
upstream closes), de-chunked. Only a response some rule picked is read this way; every other
byte is forwarded as it arrives."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from harness.chaos.proxy_server.rules import MAX_BODY

__all__ = ["Response", "read_response"]

_MAX_HEAD = 64 * 1024
_BUF = 65536
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Response:
    """One response read off the socket. ``head`` is None when it could not be read whole (too
    large, or not HTTP): then ``raw`` is every byte read, to be forwarded as it is."""

    raw: bytes
    head: bytes | None = None
    code: int = 0
    body: bytes = b""
    rest: bytes = b""  # bytes after the response (a pipelined next one)
    eof: bool = False  # the upstream closed (the body ran to the end of the connection)


class _Reader:
    def __init__(self, recv: Callable[[int], bytes], first: bytes) -> None:
        self.recv, self.buf, self.eof = recv, bytearray(first), False

    def more(self) -> bool:
        if self.eof or len(self.buf) > _MAX_HEAD + MAX_BODY:
            return False
        data = self.recv(_BUF)
        self.eof = not data
        self.buf += data
        return bool(data)

    def find(self, needle: bytes, start: int) -> int:
        while (at := self.buf.find(needle, start)) < 0:
            if not self.more():
                return -1
        return at

    def have(self, end: int) -> bool:
        while len(self.buf) < end:
            if not self.more():
                return False
        return True


def _chunked(reader: _Reader, pos: int) -> tuple[bytes, int] | None:
    """(the de-chunked body, where the response ends) of a chunked body starting at ``pos``."""
    body = bytearray()
    while True:
        line_end = reader.find(b"\r\n", pos)
        if line_end < 0:
            return None
        try:
            size = int(bytes(reader.buf[pos:line_end]).split(b";")[0].strip(), 16)
        except ValueError:
            return None
        pos = line_end + 2
        if size == 0:
            end = reader.find(b"\r\n", pos)  # trailers (usually none) up to a blank line
            while end > pos:
                pos, end = end + 2, reader.find(b"\r\n", end + 2)
            return (bytes(body), end + 2) if end >= 0 else None
        if not reader.have(pos + size + 2) or len(body) + size > MAX_BODY:
            return None
        body += reader.buf[pos : pos + size]
        pos += size + 2


def read_response(recv: Callable[[int], bytes], first: bytes, method: bytes) -> Response:
    """The response that begins with ``first``, read to its end with ``recv``."""
    reader = _Reader(recv, first)
    end = reader.find(b"\r\n\r\n", 0)
    if end < 0 or not reader.buf.startswith(b"HTTP/1."):
        return Response(bytes(reader.buf), eof=reader.eof)
    head = bytes(reader.buf[: end + 4])
    start = end + 4
    try:
        code = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return Response(bytes(reader.buf), eof=reader.eof)
    if method == b"HEAD" or code in (204, 304) or code < 200:
        return Response(bytes(reader.buf), head, code, b"", bytes(reader.buf[start:]), reader.eof)
    if _CHUNKED.search(head):
        done = _chunked(reader, start)
        if done is None:
            return Response(bytes(reader.buf), eof=reader.eof)
        body, stop = done
        return Response(bytes(reader.buf), head, code, body, bytes(reader.buf[stop:]), reader.eof)
    length = _LENGTH.search(head)
    if length is not None:
        size = int(length.group(1))
        if size > MAX_BODY or not reader.have(start + size):
            return Response(bytes(reader.buf), eof=reader.eof)
        stop = start + size
        return Response(bytes(reader.buf), head, code, bytes(reader.buf[start:stop]), bytes(reader.buf[stop:]))
    while reader.more():  # no framing: the body runs until the upstream closes
        pass
    if not reader.eof:
        return Response(bytes(reader.buf))
    return Response(bytes(reader.buf), head, code, bytes(reader.buf[start:]), b"", True)
