"""Serving the fault proxy: its two listeners (data and control), until SIGTERM or SIGINT, and the
command line of ``python -m harness.chaos.proxy_server``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from gevent import socket as gsocket
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

from harness.chaos.proxy_server.control import ControlApi
from harness.chaos.proxy_server.forward import Proxy
from harness.chaos.proxy_server.spec import format_address, parse_address
from harness.chaos.proxy_server.workers import Workers, default_workers

__all__ = ["main", "serve"]

log = logging.getLogger("harness.chaos.proxy_server")

_DESCRIPTION = "The fault proxy: a gevent TCP/HTTP forwarder with faults switched on and off over HTTP."


def _listener(address: str, backlog: int, *, reuseport: bool = False) -> Any:
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
            if reuseport:  # every worker process binds the same address: the kernel spreads connections
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
    workers: int | None = None,
    on_ready: Callable[[str, str], None] | None = None,
) -> None:
    """Proxy ``listen`` to ``upstream`` with the control API on ``control`` until SIGTERM or SIGINT.

    Addresses are ``host:port`` (port 0 picks a free one), ``[v6]:port``; ``control`` may also
    be ``unix:/path`` (mode 0600, removed on exit). ``on_ready(listen, control)`` is called
    with the bound addresses once both accept connections. Starts with no fault; faults live
    in memory only, so a restarted proxy forwards cleanly. ``workers`` processes (default: the
    cores this process may use) share the listening port (:mod:`.workers`). Returns after
    closing every connection; raises ``OSError`` when an address cannot be bound.
    """
    count = default_workers() if workers is None else workers
    if count < 1:
        raise ValueError(f"workers must be at least 1, not {count}")
    proxy = Proxy(upstream, mark)
    data_sock = _listener(listen, 1024, reuseport=count > 1)
    try:
        control_sock = _listener(control, 64)
    except OSError:
        data_sock.close()
        raise
    proxy.listen = format_address(data_sock.family, data_sock.getsockname())
    control_name = format_address(control_sock.family, control_sock.getsockname())
    pool = Workers()
    if count > 1:  # forked before anything serves; each binds the port the first socket got
        bound = proxy.listen
        pool = Workers.start(
            count - 1, proxy, lambda: _listener(bound, 1024, reuseport=True), [data_sock, control_sock]
        )
    data_server = StreamServer(data_sock, proxy.handle)
    control_server = WSGIServer(control_sock, ControlApi(proxy, pool), log=None, error_log=log)
    stop = gevent.event.Event()
    handlers = []
    if threading.current_thread() is threading.main_thread():
        handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    try:
        data_server.start()
        control_server.start()
        log.info(
            "proxying %s -> %s, control %s, mark %s, %d process(es)", proxy.listen, upstream, control_name, mark, count
        )
        if on_ready is not None:
            on_ready(proxy.listen, control_name)
        stop.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        data_server.close()  # no new connections; then end the open ones
        pool.stop()
        proxy.close_all()
        data_server.stop(timeout=1)
        control_server.stop(timeout=1)
        if control_sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                os.unlink(control_name[len("unix:") :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.chaos.proxy_server", description=_DESCRIPTION)
    parser.add_argument("--listen", required=True, help="host:port clients connect to (port 0: any free port)")
    parser.add_argument("--upstream", required=True, help="host:port of the service")
    parser.add_argument("--control", required=True, help="host:port or unix:/path of the control API")
    parser.add_argument("--mark", type=lambda s: int(s, 0), default=None, help="SO_MARK of upstream sockets")
    parser.add_argument(
        "--workers", type=int, default=None, help="processes sharing the listening port (default: the usable cores)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s proxy %(levelname)s %(message)s", stream=sys.stderr)

    def ready(listen: str, control: str) -> None:
        # One line a supervisor (or a human) can read: where the proxy listens and is controlled.
        print(json.dumps({"listen": listen, "control": control, "pid": os.getpid()}), flush=True)

    try:
        serve(args.listen, args.upstream, args.control, mark=args.mark, workers=args.workers, on_ready=ready)
    except (OSError, ValueError) as exc:
        print(f"harness proxy: {exc}", file=sys.stderr)
        return 2
    return 0
