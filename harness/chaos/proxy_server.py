"""The fault proxy: a gevent TCP/HTTP forwarder with faults switched on and off over HTTP.

Shaped like Toxiproxy: one listen address forwards to one upstream, and a small control API
adds and removes faults while traffic flows, so connections already open (Locust keeps them
alive) feel a fault the moment it is added and stop feeling it the moment it is removed.

Why it parses HTTP at all, and only that far: abort, reset and latency are decided *per
request*, so the proxy must know where each request begins on a kept-alive connection. It
reads request heads (request line and headers up to the blank line) and skips
``Content-Length`` bodies; responses are never parsed. A connection whose first bytes are
not an HTTP/1.x request line is forwarded as plain TCP, and every chunk the client sends
counts as a "request" there. A request body sent with ``Transfer-Encoding: chunked`` (or a
head larger than :data:`MAX_HEAD`) switches that connection to plain TCP for the rest of
its life rather than risking a wrong request boundary. Pipelined requests are forwarded
but decided as one.

What each fault does (several may be active; they compose):

* ``proxy.latency``: the first chunk of each response is held ``latency`` +/- ``jitter``
  seconds (uniform) after it arrives from upstream; the rest of the response follows
  unpaced, so a large response is delayed once, not per chunk. Latencies of several faults
  add up.
* ``proxy.bandwidth``: every write in either direction is paced to ``rate`` bits/s per
  connection, as a link of that rate would carry it: each chunk (20 ms of data at most) is
  sent after its own transmission time once the link is free, so a lone small response is
  slowed too; no credit is saved while idle. The lowest rate wins.
* ``proxy.reset``: a share of requests is answered by closing the client connection with
  ``SO_LINGER`` 0, which sends a TCP RST; the upstream connection is closed too.
* ``proxy.abort``: a share of HTTP requests is answered by the proxy with ``status`` and a
  short body at once (a latency fault does not delay it), the request (and its body) is
  never forwarded, and the connection stays usable.

With no fault active, a chunk read from one side is written to the other as it is, after
one ``find`` for the end of the head and one regular expression for ``Content-Length``:
see ``benchmarks/proxy.py`` for what that costs.

With ``mark``, every upstream socket carries ``SO_MARK`` so that an nftables redirect of the
service's port (the transparent mode of :mod:`harness.chaos.proxy`) can exempt the proxy's
own connections to the service and not loop them back into the proxy.

Control API (JSON; ``control`` is ``host:port`` or ``unix:/path``):

* ``GET /health``: ``{"status": "ok", "listen", "upstream", "faults", "requests", "aborted",
  "reset", "bytes", "bytes_up", "bytes_down", "connections", "active_connections",
  "upstream_errors", "uptime"}``
* ``GET /faults``: ``{"faults": {name: {"kind": ..., params...}}}``
* ``PUT /faults/<name>`` with ``{"kind": "proxy.latency", "latency": 0.05, "jitter": 0}``
  (or ``proxy.bandwidth`` ``rate``, ``proxy.reset`` ``percent``, ``proxy.abort`` ``status``
  ``percent``): 201 when created, 200 when it replaced a fault of that name (so PUT twice
  is one fault), 400 with ``{"error": ...}`` when invalid.
* ``DELETE /faults/<name>``: 204, or 404 when there is no such fault (clients treat both as
  done). ``DELETE /faults`` removes every fault.

This module imports only gevent and the standard library, and does not monkey-patch:
``harness proxy`` and ``python -m harness.chaos.proxy_server`` call :func:`serve`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
from gevent import socket as gsocket
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

__all__ = ["KINDS", "MAX_HEAD", "FaultSpec", "main", "parse_address", "serve", "validate"]

log = logging.getLogger(__name__)

LATENCY, BANDWIDTH, RESET, ABORT = "proxy.latency", "proxy.bandwidth", "proxy.reset", "proxy.abort"
KINDS = (LATENCY, BANDWIDTH, RESET, ABORT)
#: A request head larger than this turns the connection into plain TCP forwarding.
MAX_HEAD = 64 * 1024
#: Bytes read per recv: large enough for a whole response of most APIs in one go.
_BUF = 65536
#: Seconds of data per paced write under a bandwidth fault (bounds the pacing error).
_PACE_STEP = 0.02
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,299}$")
_REQUEST_LINE = re.compile(rb"^[A-Z]{3,10} [^ \r\n]+ HTTP/1\.[01]\r?\n")
_METHOD = re.compile(rb"^[A-Z]{3,10} ")  # a request line cut short by the first read
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
# Either header that says a body follows: one search on the fast path instead of two.
_BODY_HEADER = re.compile(rb"\r\n(?:content-length|transfer-encoding):", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST instead of a FIN

FaultSpec = dict[str, Any]


# ---------------------------------------------------------------- addresses and fault specs


def parse_address(text: str) -> tuple[int, Any]:
    """``(family, sockaddr)`` of ``host:port``, ``[v6]:port`` or ``unix:/path``; ``ValueError`` otherwise."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError(f"'{text}': a unix address needs a path, e.g. unix:/run/proxy.sock")
        return socket.AF_UNIX, path
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{text}' is not host:port, e.g. 127.0.0.1:8474")
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, (host[1:-1], int(port))
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host or "0.0.0.0", int(port))


def _format_address(family: int, address: Any) -> str:
    if family == socket.AF_UNIX:
        return f"unix:{address}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def _number(spec: dict[str, Any], key: str, default: float | None, low: float, high: float) -> float:
    value = spec.get(key, default)
    if value is None:
        raise ValueError(f"'{key}' is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"'{key}' must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


def validate(spec: Any) -> FaultSpec:
    """The normalised fault of a PUT body; ``ValueError`` saying what is wrong.

    Kinds may be given short (``latency``) or as in scenarios (``proxy.latency``). Times are
    seconds, ``rate`` bits/s, ``percent`` 0 (exclusive) to 100.
    """
    if not isinstance(spec, dict):
        raise ValueError("a fault is a JSON object with 'kind' and its parameters")
    kind = str(spec.get("kind", ""))
    kind = kind if kind.startswith("proxy.") else f"proxy.{kind}"
    allowed = {
        LATENCY: {"latency", "jitter"},
        BANDWIDTH: {"rate"},
        RESET: {"percent"},
        ABORT: {"status", "percent"},
    }.get(kind)
    if allowed is None:
        raise ValueError(f"unknown kind {spec.get('kind')!r}; one of {', '.join(KINDS)}")
    extra = set(spec) - allowed - {"kind"}
    if extra:
        raise ValueError(f"{kind} takes {', '.join(sorted(allowed))}, not {', '.join(sorted(extra))}")
    if kind == LATENCY:
        return {
            "kind": kind,
            "latency": _number(spec, "latency", None, 0, 3600),
            "jitter": _number(spec, "jitter", 0.0, 0, 3600),
        }
    if kind == BANDWIDTH:
        return {"kind": kind, "rate": int(_number(spec, "rate", None, 8, 1e12))}
    percent = _number(spec, "percent", 100.0 if kind == RESET else None, 0, 100)
    if percent <= 0:
        raise ValueError("'percent' must be above 0")
    if kind == RESET:
        return {"kind": kind, "percent": percent}
    status = spec.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"'status' must be an HTTP status from 100 to 599, not {status!r}")
    return {"kind": kind, "status": status, "percent": percent}


@dataclass(frozen=True)
class _Profile:
    """Every active fault folded into what the hot path reads: replaced whole on each change."""

    idle: bool = True
    latency: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0  # bytes/s; 0 = unlimited
    reset: float = 0.0  # probability per request
    aborts: tuple[tuple[int, float], ...] = ()  # (status, probability), tried in order

    @classmethod
    def of(cls, faults: Iterable[FaultSpec]) -> _Profile:
        latency = jitter = 0.0
        rates: list[float] = []
        keep = 1.0
        aborts: list[tuple[int, float]] = []
        empty = True
        for spec in faults:
            empty = False
            if spec["kind"] == LATENCY:
                latency += spec["latency"]
                jitter += spec["jitter"]
            elif spec["kind"] == BANDWIDTH:
                rates.append(spec["rate"] / 8.0)
            elif spec["kind"] == RESET:
                keep *= 1 - spec["percent"] / 100
            else:
                aborts.append((spec["status"], spec["percent"] / 100))
        return cls(empty, latency, jitter, min(rates, default=0.0), 1 - keep, tuple(aborts))

    def delay(self) -> float:
        if not self.latency and not self.jitter:
            return 0.0
        return max(0.0, self.latency + random.uniform(-self.jitter, self.jitter))


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
    #: Virtual clocks of the bandwidth buckets (monotonic seconds when each direction is free).
    up_free: float = 0.0
    down_free: float = 0.0
    closed: bool = False


class _Closed(Exception):
    """The connection was reset or aborted with a close on purpose: stop both directions."""


# ---------------------------------------------------------------- the proxy


class _Proxy:
    def __init__(self, upstream: str, mark: int | None) -> None:
        self.upstream = upstream
        self.up_family, self.up_address = parse_address(upstream)
        self.mark = mark
        self.faults: dict[str, FaultSpec] = {}
        self.profile = _Profile()
        self.stats = _Counters()
        self.started = time.monotonic()
        self.listen = ""
        self.conns: set[Any] = set()

    # ------------------------------------------------------------ faults

    def set_fault(self, name: str, spec: FaultSpec) -> bool:
        """Add or replace; True when it was new."""
        new = name not in self.faults
        self.faults[name] = spec
        self.profile = _Profile.of(self.faults.values())
        log.info("fault %s %s: %s", name, "added" if new else "replaced", spec)
        return new

    def delete_fault(self, name: str | None) -> bool:
        """Remove one fault (or all with None); True when something was removed."""
        if name is None:
            found = bool(self.faults)
            self.faults.clear()
        else:
            found = self.faults.pop(name, None) is not None
        self.profile = _Profile.of(self.faults.values())
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
        body = f"harness fault proxy: aborted with {status}\n".encode()
        reason = _REASONS.get(status, "Fault")
        response = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"X-Harness-Fault: abort\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n"
        ).encode() + body
        conn.client.sendall(response)
        return close

    def _upstream(self, conn: _Conn) -> None:
        """Client to upstream: find each request's head, decide its fate, forward or answer it."""
        client, up, stats = conn.client, conn.up, self.stats
        recv, up_send = client.recv, up.sendall
        http: bool | None = None
        pending = b""  # an incomplete head
        body = 0  # bytes of the current request body still to pass on (or to skip)
        skip = False  # the current body belongs to an aborted request
        while True:
            data = recv(_BUF)
            if not data:
                with contextlib.suppress(OSError):
                    up.shutdown(socket.SHUT_WR)
                return
            stats.bytes_up += len(data)
            profile = self.profile
            if http is None:
                http = _REQUEST_LINE.match(data) is not None or (b"\n" not in data and _METHOD.match(data) is not None)
            if not http:
                if not profile.idle:
                    if profile.reset and random.random() < profile.reset:
                        self._reset(conn)
                    conn.pending_delay = profile.delay()
                self._send(up, data, conn, profile.rate, True)
                continue
            # Fast path: one whole request head without a body, no fault active.
            if (
                profile.idle
                and not pending
                and not body
                and data.endswith(b"\r\n\r\n")
                and data.find(b"\r\n\r\n") == len(data) - 4
                and _BODY_HEADER.search(data) is None
            ):
                stats.requests += 1
                conn.pending_delay = None
                up_send(data)
                continue
            view = pending + data if pending else data
            pending = b""
            out: list[bytes] = []
            pos, size = 0, len(view)
            while pos < size:
                if body:
                    take = min(body, size - pos)
                    if not skip:
                        out.append(view[pos : pos + take])
                    pos += take
                    body -= take
                    continue
                end = view.find(b"\r\n\r\n", pos)
                if end < 0:
                    pending = view[pos:]
                    if len(pending) > MAX_HEAD:  # not a head we can parse: plain TCP from here on
                        out.append(pending)
                        pending, http = b"", False
                    break
                end += 4
                head = view[pos:end]
                pos = end
                stats.requests += 1
                length = _CONTENT_LENGTH.search(head)
                chunked = _CHUNKED.search(head) is not None
                body = int(length.group(1)) if length and not chunked else 0
                skip = False
                if not profile.idle:
                    if profile.reset and random.random() < profile.reset:
                        self._reset(conn)
                    status = next((s for s, p in profile.aborts if random.random() < p), 0)
                    if status:
                        if out:
                            self._send(up, b"".join(out), conn, profile.rate, True)
                            out = []
                        if self._abort(conn, status, head) or chunked:
                            conn.closed = True
                            self._close(conn)
                            raise _Closed
                        skip = True
                        continue
                conn.pending_delay = profile.delay() if not profile.idle else None
                out.append(head)
                if chunked:  # no reliable boundary after this: plain TCP for the rest
                    out.append(view[pos:])
                    pos, http = size, False
            if out:
                self._send(up, out[0] if len(out) == 1 else b"".join(out), conn, profile.rate, True)

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
                self._send(client, data, conn, profile.rate, False)
        except OSError:
            pass
        finally:
            if not conn.closed:
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_WR)
                # The client may keep its side open; closing here ends the upstream pump too.
                self._close(conn)

    # ------------------------------------------------------------ control API

    def health(self) -> dict[str, Any]:
        s = self.stats
        return {
            "status": "ok",
            "listen": self.listen,
            "upstream": self.upstream,
            "faults": len(self.faults),
            "requests": s.requests,
            "aborted": s.aborted,
            "reset": s.reset,
            "bytes": s.bytes_up + s.bytes_down,
            "bytes_up": s.bytes_up,
            "bytes_down": s.bytes_down,
            "connections": s.connections,
            "active_connections": s.active_connections,
            "upstream_errors": s.upstream_errors,
            "uptime": round(time.monotonic() - self.started, 3),
        }

    def control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")

        def answer(status: str, payload: Any = None) -> list[bytes]:
            body = b"" if payload is None else json.dumps(payload).encode() + b"\n"
            headers = [("Content-Length", str(len(body)))]
            if payload is not None:
                headers.append(("Content-Type", "application/json"))
            start_response(status, headers)
            return [body]

        if path == "/health" and method == "GET":
            return answer("200 OK", self.health())
        if path == "/faults":
            if method == "GET":
                return answer("200 OK", {"faults": self.faults})
            if method == "DELETE":
                self.delete_fault(None)
                return answer("204 No Content")
            return answer("405 Method Not Allowed", {"error": "GET or DELETE"})
        if not path.startswith("/faults/"):
            return answer("404 Not Found", {"error": f"no such resource {path}"})
        name = path[len("/faults/") :]
        if not _NAME.match(name):
            return answer("400 Bad Request", {"error": f"bad fault name {name!r}"})
        if method == "GET":
            found = self.faults.get(name)
            return answer("200 OK", {name: found}) if found else answer("404 Not Found", {"error": "no such fault"})
        if method == "DELETE":
            return answer("204 No Content") if self.delete_fault(name) else answer("404 Not Found", {"error": "none"})
        if method != "PUT":
            return answer("405 Method Not Allowed", {"error": "GET, PUT or DELETE"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if not 0 < length <= 65536:
                raise ValueError("a JSON body of at most 64 KiB is required")
            spec = validate(json.loads(environ["wsgi.input"].read(length)))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return answer("400 Bad Request", {"error": str(exc)})
        created = self.set_fault(name, spec)
        return answer("201 Created" if created else "200 OK", {name: spec})


# ---------------------------------------------------------------- serving


def _listener(address: str, backlog: int) -> Any:
    family, sockaddr = parse_address(address)
    sock = gsocket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sockaddr)
            sock.bind(sockaddr)
            os.chmod(sockaddr, 0o600)  # the control API changes traffic: its owner only
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def serve(
    listen: str,
    upstream: str,
    control: str,
    *,
    mark: int | None = None,
    on_ready: Callable[[str, str], None] | None = None,
) -> None:
    """Proxy ``listen`` to ``upstream`` with the control API on ``control`` until SIGTERM or SIGINT.

    Addresses are ``host:port`` (port 0 picks a free one), ``[v6]:port``; ``control`` may also
    be ``unix:/path`` (mode 0600, removed on exit). ``on_ready(listen, control)`` is called
    with the bound addresses once both accept connections. Starts with no fault; faults live
    in memory only, so a restarted proxy forwards cleanly. Returns after closing every
    connection; raises ``OSError`` when an address cannot be bound.
    """
    proxy = _Proxy(upstream, mark)
    data_sock = _listener(listen, 1024)
    try:
        control_sock = _listener(control, 64)
    except OSError:
        data_sock.close()
        raise
    proxy.listen = _format_address(data_sock.family, data_sock.getsockname())
    control_name = _format_address(control_sock.family, control_sock.getsockname())
    data_server = StreamServer(data_sock, proxy.handle)
    control_server = WSGIServer(control_sock, proxy.control, log=None, error_log=log)
    stop = gevent.event.Event()
    handlers = []
    if threading.current_thread() is threading.main_thread():
        handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    try:
        data_server.start()
        control_server.start()
        log.info("proxying %s -> %s, control %s, mark %s", proxy.listen, upstream, control_name, mark)
        if on_ready is not None:
            on_ready(proxy.listen, control_name)
        stop.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        data_server.close()  # no new connections; then end the open ones
        for conn in list(proxy.conns):
            proxy._close(conn)
        data_server.stop(timeout=1)
        control_server.stop(timeout=1)
        if control_sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                os.unlink(control_name[len("unix:") :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.chaos.proxy_server", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="host:port clients connect to (port 0: any free port)")
    parser.add_argument("--upstream", required=True, help="host:port of the service")
    parser.add_argument("--control", required=True, help="host:port or unix:/path of the control API")
    parser.add_argument("--mark", type=lambda s: int(s, 0), default=None, help="SO_MARK of upstream sockets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s proxy %(levelname)s %(message)s", stream=sys.stderr)

    def ready(listen: str, control: str) -> None:
        # One line a supervisor (or a human) can read: where the proxy listens and is controlled.
        print(json.dumps({"listen": listen, "control": control, "pid": os.getpid()}), flush=True)

    try:
        serve(args.listen, args.upstream, args.control, mark=args.mark, on_ready=ready)
    except (OSError, ValueError) as exc:
        print(f"harness proxy: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
