"""An HTTP proxy on loopback in front of influxd that makes writes slow, or never answers them.

For the outage tests: a results server that is slow or hung is the case a writer gets wrong
(a run that waits for it, memory that grows with the backlog, a close() that waits for the
client library's five-minute default), and influxd itself cannot be made slow on demand.

* ``write_delay``: seconds to hold every write (``POST /write``, ``POST /api/v2/write``)
  before passing it on; queries and pings pass at once.
* ``blackhole``: accept every request and never answer it (until the proxy stops), like a
  server stuck in a long pause.
* When the upstream refuses (influxd stopped), the client's connection is reset, as an L4
  load balancer in front of a dead server does.

Both settings may be changed while the proxy runs.  Every request is recorded (when it
arrived, when it was answered, the status or None when it got no answer) so a test can show
what the server went through.  The proxy runs in the test process, in threads, and :meth:`stop` ends them all.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Record", "SlowInfluxProxy", "slow_influx_proxy"]

WRITE_PATHS = ("/write", "/api/v2/write")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
UPSTREAM_TIMEOUT = 30.0


@dataclass
class Record:
    """One request through the proxy; ``status`` None means it got no answer."""

    path: str
    write: bool
    received: float  # time.time()
    answered: float = 0.0
    status: int | None = None
    size: int = 0
    delayed_s: float = 0.0


class SlowInfluxProxy:
    """A threaded HTTP/1.1 proxy from ``127.0.0.1:<port>`` to ``upstream`` (host:port)."""

    def __init__(self, upstream_port: int, write_delay: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.write_delay = write_delay
        self.blackhole = False
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 15  # an idle keep-alive connection is closed after this many seconds

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_HEAD(self) -> None:
                proxy._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="slow-influx-proxy", daemon=True)

    def start(self) -> SlowInfluxProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release writes held by a delay or the blackhole, close the socket."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def records(self, writes_only: bool = True) -> list[Record]:
        """The writes (or every request) so far, oldest first."""
        with self._lock:
            return [r for r in self._records if r.write or not writes_only]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        is_write = handler.command == "POST" and handler.path.split("?", 1)[0] in WRITE_PATHS
        record = Record(handler.path, is_write, received=time.time(), size=len(body))
        with self._lock:
            self._records.append(record)
        if self.blackhole:
            self._stopping.wait()
            self._reset(handler)
            return
        if is_write:
            delay = self.write_delay
            if delay > 0:
                self._stopping.wait(delay)
                record.delayed_s = delay
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = f"127.0.0.1:{self.upstream_port}"
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=UPSTREAM_TIMEOUT)
        try:
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            status, reason = response.status, response.reason
            answer_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        except (OSError, http.client.HTTPException):
            record.answered = time.time()
            self._reset(handler)
            return
        finally:
            upstream.close()
        handler.send_response(status, reason)
        for key, value in answer_headers:
            if key.lower() != "content-length":
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
        record.answered = time.time()
        record.status = status

    @staticmethod
    def _reset(handler: BaseHTTPRequestHandler) -> None:
        """Close the client's connection with a RST (SO_LINGER 0), without an answer."""
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            handler.connection.close()


@contextlib.contextmanager
def slow_influx_proxy(upstream_port: int, write_delay: float = 0.0) -> Iterator[SlowInfluxProxy]:
    """A running :class:`SlowInfluxProxy`, stopped on the way out (also when the test fails)."""
    proxy = SlowInfluxProxy(upstream_port, write_delay).start()
    try:
        yield proxy
    finally:
        proxy.stop()
