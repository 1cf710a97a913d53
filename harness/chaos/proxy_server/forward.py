"""The fault proxy's data path: one client connection forwarded to the upstream, with the faults
of the current :class:`~harness.chaos.proxy_server.spec.Profile` applied per request.

Why it parses HTTP at all, and only that far: abort, reset and latency are decided *per
request*, so the proxy must know where each request begins on a kept-alive connection. It
reads request heads and skips ``Content-Length`` bodies; responses are never parsed (see the
package docstring for the details and the cost).
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import gevent
from gevent import socket as gsocket

from harness.chaos.proxy_server.messages import read_response
from harness.chaos.proxy_server.rules import MAX_BODY, Decision, Message, ResponseEdit, abort_response, edit_message
from harness.chaos.proxy_server.spec import FaultSpec, Profile, parse_address

__all__ = ["MAX_HEAD", "Proxy"]

log = logging.getLogger(__name__)

#: A request head larger than this turns the connection into plain TCP forwarding.
MAX_HEAD = 64 * 1024
#: Bytes read per recv: large enough for a whole response of most APIs in one go.
_BUF = 65536
#: Seconds of data per paced write under a bandwidth fault (bounds the pacing error).
_PACE_STEP = 0.02
_REQUEST_LINE = re.compile(rb"^[A-Z]{3,10} [^ \r\n]+ HTTP/1\.[01]\r?\n")
_METHOD = re.compile(rb"^[A-Z]{3,10} ")  # a request line cut short by the first read
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
# Either header that says a body follows: one search on the fast path instead of two.
_BODY_HEADER = re.compile(rb"\r\n(?:content-length|transfer-encoding):", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST instead of a FIN


@dataclass
class _Counters:
    requests: int = 0
    aborted: int = 0
    reset: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    connections: int = 0
    active_connections: int = 0
    upstream_errors: int = 0


@dataclass(eq=False)  # identity: kept in a set of open connections
class _Conn:
    client: Any
    up: Any
    #: Seconds the next response's first chunk is held (set per forwarded request); None: none pending.
    pending_delay: float | None = None
    #: The response rules of the request last forwarded (set per request); None: none picked it.
    response_edit: ResponseEdit | None = None
    #: Virtual clocks of the bandwidth buckets (monotonic seconds when each direction is free).
    up_free: float = 0.0
    down_free: float = 0.0
    closed: bool = False


class _Closed(Exception):
    """The connection was reset or aborted with a close on purpose: stop both directions."""


@dataclass(slots=True)
class _Requests:
    """Where the client-to-upstream pump is in the request stream, between two reads."""

    http: bool | None = None  # None: not known until the first bytes
    pending: bytes = b""  # an incomplete head
    body: int = 0  # bytes of the current request body still to pass on (or to skip)
    skip: bool = False  # the current body belongs to an aborted request
    collect: bytearray | None = None  # the current body, read whole for a rule that rewrites it
    held: Decision | None = None  # ... and that request's decision
    head: bytes = b""  # ... and its head


class Proxy:
    def __init__(self, upstream: str, mark: int | None) -> None:
        self.upstream = upstream
        self.up_family, self.up_address = parse_address(upstream)
        self.mark = mark
        self.faults: dict[str, FaultSpec] = {}
        self.profile = Profile()
        self.stats = _Counters()
        self.started = time.monotonic()
        self.listen = ""
        self.conns: set[Any] = set()

    # ------------------------------------------------------------ faults

    def set_fault(self, name: str, spec: FaultSpec) -> bool:
        """Add or replace; True when it was new."""
        new = name not in self.faults
        self.faults[name] = spec
        self.profile = Profile.of(self.faults.values())
        log.info("fault %s %s: %s", name, "added" if new else "replaced", spec)
        return new

    def replace_faults(self, faults: dict[str, FaultSpec]) -> None:
        """Take every fault at once (a worker process, told by the control process)."""
        self.faults = dict(faults)
        self.profile = Profile.of(self.faults.values())

    def delete_fault(self, name: str | None) -> bool:
        """Remove one fault (or all with None); True when something was removed."""
        if name is None:
            found = bool(self.faults)
            self.faults.clear()
        else:
            found = self.faults.pop(name, None) is not None
        self.profile = Profile.of(self.faults.values())
        if found:
            log.info("fault %s removed", name or "(all)")
        return found

    # ------------------------------------------------------------ data path

    def _connect(self) -> Any:
        sock = gsocket.socket(self.up_family, socket.SOCK_STREAM)
        try:
            if self.mark is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            sock.settimeout(10.0)
            sock.connect(self.up_address)
            sock.settimeout(None)
            if self.up_family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return sock

    def handle(self, client: Any, _address: Any) -> None:
        """One client connection: connect upstream, pump both ways until either side is done."""
        self.stats.connections += 1
        try:
            if client.family != socket.AF_UNIX:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up = self._connect()
        except OSError as exc:
            self.stats.upstream_errors += 1
            log.debug("upstream %s: %s", self.upstream, exc)
            client.close()
            return
        conn = _Conn(client, up)
        self.stats.active_connections += 1
        self.conns.add(conn)
        down = gevent.spawn(self._downstream, conn)
        try:
            self._upstream(conn)
        except _Closed:
            down.kill(block=False)
        except OSError:
            pass
        finally:
            try:
                down.join(timeout=None if not conn.closed else 0)
            finally:
                self._close(conn)

    def close_all(self) -> None:
        """Close every open connection (the proxy is stopping)."""
        for conn in list(self.conns):
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self.stats.active_connections -= 1
        conn.closed = True
        for sock in (conn.client, conn.up):
            with contextlib.suppress(OSError):
                sock.close()

    def _reset(self, conn: _Conn) -> None:
        self.stats.reset += 1
        with contextlib.suppress(OSError):
            conn.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
        conn.closed = True
        self._close(conn)
        raise _Closed

    def _send(self, sock: Any, data: bytes | memoryview, conn: _Conn, rate: float, upward: bool) -> None:
        """Write ``data``, paced to ``rate`` bytes/s when a bandwidth fault is active."""
        if not rate:
            sock.sendall(data)
            return
        view = memoryview(data)
        step = max(1024, int(rate * _PACE_STEP))
        for start in range(0, len(view), step):
            chunk = view[start : start + step]
            now = time.monotonic()
            # A chunk is delivered when a link of this rate would have carried it: its own
            # transmission time after the link is free (idle time earns no credit), so a
            # lone small response is slowed too, not only a stream of them.
            free = max(conn.up_free if upward else conn.down_free, now) + len(chunk) / rate
            if free > now:
                gevent.sleep(free - now)
            sock.sendall(chunk)
            if upward:
                conn.up_free = free
            else:
                conn.down_free = free

    def _abort(self, conn: _Conn, status: int, head: bytes) -> bool:
        """Answer the request with ``status``; True when the connection must close after it."""
        self.stats.aborted += 1
        close = head.startswith(b"HTTP/1.0", head.find(b" HTTP/") + 1) or _CLOSE.search(head) is not None
        conn.client.sendall(abort_response(status, close))
        return close

    def _upstream(self, conn: _Conn) -> None:
        """Client to upstream: find each request's head, decide its fate, forward or answer it."""
        client, up, stats = conn.client, conn.up, self.stats
        recv, up_send = client.recv, up.sendall
        state = _Requests()
        while True:
            data = recv(_BUF)
            if not data:
                with contextlib.suppress(OSError):
                    up.shutdown(socket.SHUT_WR)
                return
            stats.bytes_up += len(data)
            profile = self.profile
            if state.http is None:
                state.http = _REQUEST_LINE.match(data) is not None or (
                    b"\n" not in data and _METHOD.match(data) is not None
                )
            if not state.http:
                if not profile.idle:
                    if profile.reset and random.random() < profile.reset:
                        self._reset(conn)
                    conn.pending_delay = profile.delay()
                self._send(up, data, conn, profile.rate, True)
                continue
            # Fast path: one whole request head without a body, no fault active.
            if (
                profile.idle
                and not state.pending
                and not state.body
                and data.endswith(b"\r\n\r\n")
                and data.find(b"\r\n\r\n") == len(data) - 4
                and _BODY_HEADER.search(data) is None
            ):
                stats.requests += 1
                conn.pending_delay = None
                up_send(data)
                continue
            out = self._requests(conn, state, data, profile)
            if out:
                self._send(up, out[0] if len(out) == 1 else b"".join(out), conn, profile.rate, True)

    def _requests(self, conn: _Conn, state: _Requests, data: bytes, profile: Profile) -> list[bytes]:
        """What of ``data`` (after what was pending) goes upstream, request by request: heads with
        their fate decided (reset, abort, delay), bodies passed on or skipped."""
        view = state.pending + data if state.pending else data
        state.pending = b""
        out: list[bytes] = []
        pos, size = 0, len(view)
        while pos < size:
            if state.body:
                take = min(state.body, size - pos)
                if state.collect is not None:
                    state.collect += view[pos : pos + take]
                elif not state.skip:
                    out.append(view[pos : pos + take])
                pos += take
                state.body -= take
                if state.collect is not None and not state.body:
                    out.append(_edited_request(state))
                continue
            end = view.find(b"\r\n\r\n", pos)
            if end < 0:
                state.pending = view[pos:]
                if len(state.pending) > MAX_HEAD:  # not a head we can parse: plain TCP from here on
                    out.append(state.pending)
                    state.pending, state.http = b"", False
                break
            end += 4
            head = view[pos:end]
            pos = end
            self.stats.requests += 1
            length = _CONTENT_LENGTH.search(head)
            chunked = _CHUNKED.search(head) is not None
            state.body = int(length.group(1)) if length and not chunked else 0
            state.skip = False
            decision = None
            if not profile.idle:
                if profile.reset and random.random() < profile.reset:
                    self._reset(conn)
                decision = profile.rules.decide(head) if profile.rules is not None else None
                if decision is not None and decision.reset:
                    self._reset(conn)
                status = next((s for s, p in profile.aborts if random.random() < p), 0)
                status = status or (decision.status if decision is not None else 0)
                if status:
                    if out:
                        self._send(conn.up, b"".join(out), conn, profile.rate, True)
                        out = []
                    if self._abort(conn, status, head) or chunked:
                        conn.closed = True
                        self._close(conn)
                        raise _Closed
                    state.skip = True
                    continue
            conn.pending_delay = profile.delay() if not profile.idle else None
            conn.response_edit = None
            if decision is not None:
                out = self._decided(conn, state, decision, head, chunked, out)
                if state.collect is not None:
                    continue  # the head goes with its rewritten body, once the body is read
            else:
                out.append(head)
            if chunked:  # no reliable boundary after this: plain TCP for the rest
                out.append(view[pos:])
                pos, state.http = size, False
        return out

    def _decided(
        self, conn: _Conn, state: _Requests, decision: Decision, head: bytes, chunked: bool, out: list[bytes]
    ) -> list[bytes]:
        """A request some HTTP rule picked (not aborted): hold it, rewrite it, note its response rules."""
        if decision.delay:
            if out:  # what came before is not held
                self._send(conn.up, b"".join(out), conn, self.profile.rate, True)
                out = []
            gevent.sleep(decision.delay)
        if conn.pending_delay is not None or decision.response_delay:
            conn.pending_delay = (conn.pending_delay or 0.0) + decision.response_delay
        conn.response_edit = decision.response
        if not decision.edits:
            out.append(head)
        elif decision.body and not chunked and state.body <= MAX_BODY:
            state.collect, state.held, state.head = bytearray(), decision, head
            if not state.body:
                out.append(_edited_request(state))
        else:  # the body is not read (chunked or too large): the head's edits only
            out.append(edit_message(Message.parse(head, b""), decision.edits, True).encode(head_only=True))
        return out

    def _edit_response(self, conn: _Conn, edit: ResponseEdit, data: bytes, arrived: float) -> bool:
        """The response beginning with ``data``, read whole, put through the rules that picked its
        request; False when the upstream closed after it."""
        response = read_response(conn.up.recv, data, edit.method)
        self.stats.bytes_down += len(response.raw) - len(data)
        rules = edit.for_code(response.code) if response.head is not None else []
        if not rules:
            conn.client.sendall(response.raw)
            return not response.eof
        assert response.head is not None
        abort = next((rule for rule in rules if rule.status or rule.reset), None)
        if abort is not None and abort.reset:
            self._reset(conn)
        wait = arrived + sum(rule.pause() for rule in rules) - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
        if abort is not None:
            self.stats.aborted += 1
            conn.client.sendall(abort_response(abort.status, response.eof) + response.rest)
        else:
            message = edit_message(Message.parse(response.head, response.body), rules, False)
            conn.client.sendall(message.encode() + response.rest)
        return not response.eof

    def _downstream(self, conn: _Conn) -> None:
        """Upstream to client: hold each response's first chunk for the request's delay; pace bytes."""
        client, up, stats = conn.client, conn.up, self.stats
        recv, send = up.recv, client.sendall
        try:
            while True:
                data = recv(_BUF)
                if not data:
                    break
                arrived = time.monotonic()
                stats.bytes_down += len(data)
                delay, profile = conn.pending_delay, self.profile
                if delay is None and profile.idle:
                    send(data)
                    continue
                if delay is not None:
                    conn.pending_delay = None
                    wait = arrived + delay - time.monotonic()
                    if wait > 0:
                        gevent.sleep(wait)
                edit, conn.response_edit = conn.response_edit, None
                if edit is not None:
                    if not self._edit_response(conn, edit, data, arrived):
                        break
                    continue
                self._send(client, data, conn, profile.rate, False)
        except (OSError, _Closed):
            pass
        finally:
            if not conn.closed:
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_WR)
                # The client may keep its side open; closing here ends the upstream pump too.
                self._close(conn)


def _edited_request(state: _Requests) -> bytes:
    """The held request, its body read whole, rewritten by the rules that picked it."""
    assert state.held is not None and state.collect is not None
    message = edit_message(Message.parse(state.head, bytes(state.collect)), state.held.edits, True)
    state.collect, state.held, state.head = None, None, b""
    return message.encode()
