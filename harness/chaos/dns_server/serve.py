"""Serving the DNS responder: UDP and TCP on one port, the control API, until SIGTERM or SIGINT;
and the command line of ``python -m harness.chaos.dns_server``.

Threads from the standard library (``socketserver``): a query is answered on a thread of its
own, so a delay or a slow upstream holds back no other query. The control API is JSON over
HTTP on ``host:port`` or ``unix:/path`` (mode 0600):

* ``GET /health``: ``{"status": "ok", "listen", "upstream", "faults", "queries", "faulted",
  "forwarded", "static", "upstream_errors", "by_fault", "uptime"}``
* ``GET /faults``: ``{"faults": {name: spec}}``
* ``PUT /faults/<name>`` with a fault (:mod:`.rules`): 201 created, 200 replaced, 400 invalid
* ``DELETE /faults/<name>``: 204, or 404 when there is none; ``DELETE /faults``: all
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.chaos.dns_server.responder import Responder
from harness.chaos.dns_server.rules import validate

__all__ = ["main", "serve", "split_address"]

log = logging.getLogger("harness.chaos.dns_server")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,299}$")
_TCP_IDLE = 10.0


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` or ``[v6]:port``."""
    host, _, port = address.rpartition(":")
    return (host[1:-1] if host.startswith("[") else host), int(port)


class _Udp(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Tcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UnixHttp(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _servers(responder: Responder, listen: str) -> tuple[_Udp, _Tcp]:
    """UDP and TCP listeners on the same port (a free one for port 0: tried a few times)."""
    host, port = split_address(listen)

    class UdpHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            reply = responder.answer(data)
            if reply is not None:
                sock.sendto(reply, self.client_address)

    class TcpHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(_TCP_IDLE)
            with contextlib.suppress(OSError, struct.error):
                while True:
                    head = self.request.recv(2, socket.MSG_WAITALL)
                    if len(head) < 2:
                        return
                    data = self.request.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                    reply = responder.answer(data, tcp=True)
                    if reply is None:
                        return  # a timeout fault: the client waits, then gives up
                    self.request.sendall(struct.pack("!H", len(reply)) + reply)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _Udp.address_family = _Tcp.address_family = family
    for _ in range(20):
        udp = _Udp((host, port), UdpHandler)
        try:
            tcp = _Tcp((host, udp.server_address[1]), TcpHandler)
        except OSError:
            udp.server_close()
            if port:
                raise
            continue
        return udp, tcp
    raise OSError(f"no free port for both UDP and TCP on {host}")


def _control_handler(responder: Responder, health: Callable[[], dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def address_string(self) -> str:
            return "control"

        def _answer(self, status: int, payload: Any = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                return self._answer(200, health())
            if self.path == "/faults":
                return self._answer(200, {"faults": responder.faults})
            return self._answer(404, {"error": f"no such resource {self.path}"})

        def do_DELETE(self) -> None:
            if self.path == "/faults":
                responder.delete_fault(None)
                return self._answer(204)
            name = self._name()
            if name is not None:
                self._answer(204) if responder.delete_fault(name) else self._answer(404, {"error": "no such fault"})

        def do_PUT(self) -> None:
            name = self._name()
            if name is None:
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= 65536:
                    raise ValueError("a JSON body of at most 64 KiB is required")
                spec = validate(json.loads(self.rfile.read(length)))
            except ValueError as exc:
                return self._answer(400, {"error": str(exc)})
            created = responder.set_fault(name, spec)
            log.info("fault %s %s: %s", name, "added" if created else "replaced", spec)
            self._answer(201 if created else 200, {name: spec})

        def _name(self) -> str | None:
            name = self.path[len("/faults/") :] if self.path.startswith("/faults/") else ""
            if not _NAME.match(name):
                self._answer(400 if name else 404, {"error": f"bad fault path {self.path}"})
                return None
            return name

    return Handler


def _control_server(address: str, handler: type[BaseHTTPRequestHandler]) -> socketserver.BaseServer:
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server: socketserver.BaseServer = _UnixHttp(path, handler)
        os.chmod(path, 0o600)  # the control API changes answers: its owner only
        return server
    host, port = split_address(address)
    ThreadingHTTPServer.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return ThreadingHTTPServer((host, port), handler)


def _name_of(server: socketserver.BaseServer, unix: bool) -> str:
    address: Any = server.server_address
    if unix:
        return f"unix:{address}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(
    listen: str,
    control: str,
    *,
    upstream: str | None = None,
    records: dict[str, str] | None = None,
    mark: int | None = None,
    on_ready: Callable[[str, str], None] | None = None,
) -> None:
    """Answer DNS on ``listen`` (UDP and TCP; port 0: a free one) with the control API on
    ``control`` until SIGTERM or SIGINT. Starts with no fault; faults live in memory only.
    ``on_ready(listen, control)`` gets the bound addresses. Raises ``OSError`` when an address
    cannot be bound."""
    responder = Responder(split_address(upstream) if upstream else None, records or {}, mark)
    udp, tcp = _servers(responder, listen)
    started = time.monotonic()
    bound = _name_of(udp, False)

    def health() -> dict[str, Any]:
        s = responder.stats
        return {
            "status": "ok",
            "listen": bound,
            "upstream": upstream,
            "faults": len(responder.faults),
            "queries": s.queries,
            "faulted": s.faulted,
            "forwarded": s.forwarded,
            "static": s.static,
            "upstream_errors": s.upstream_errors,
            "by_fault": dict(s.by_fault),
            "uptime": round(time.monotonic() - started, 3),
        }

    try:
        control_server = _control_server(control, _control_handler(responder, health))
    except OSError:
        udp.server_close()
        tcp.server_close()
        raise
    servers: list[socketserver.BaseServer] = [udp, tcp, control_server]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True) for s in servers]
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    for thread in threads:
        thread.start()
    control_name = _name_of(control_server, control.startswith("unix:"))
    log.info("answering DNS on %s (udp, tcp), upstream %s, control %s", bound, upstream, control_name)
    try:
        if on_ready is not None:
            on_ready(bound, control_name)
        while not stop.wait(0.5):
            pass
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        if control.startswith("unix:"):
            with contextlib.suppress(OSError):
                os.unlink(control[len("unix:") :])


def _record(text: str) -> tuple[str, str]:
    name, sep, address = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=ADDRESS")
    return name, address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.chaos.dns_server", description="A DNS responder with faults switched on over HTTP."
    )
    parser.add_argument("--listen", required=True, help="host:port of the DNS listeners, UDP and TCP (port 0: free)")
    parser.add_argument("--control", required=True, help="host:port or unix:/path of the control API")
    parser.add_argument("--upstream", help="host:port every other name is forwarded to (none: NXDOMAIN)")
    parser.add_argument("--record", type=_record, action="append", default=[], help="NAME=ADDRESS answered here")
    parser.add_argument("--mark", type=lambda s: int(s, 0), default=None, help="SO_MARK of upstream sockets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dns %(levelname)s %(message)s", stream=sys.stderr)

    def ready(listen: str, control: str) -> None:
        print(json.dumps({"listen": listen, "control": control, "pid": os.getpid()}), flush=True)

    try:
        serve(
            args.listen, args.control, upstream=args.upstream, records=dict(args.record), mark=args.mark, on_ready=ready
        )
    except (OSError, ValueError) as exc:
        print(f"harness dns: {exc}", file=sys.stderr)
        return 2
    return 0
