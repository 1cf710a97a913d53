"""The demo shop's HTTP services: gateway, catalog, cart and payments.

Each service is its own OS process (``python -m harness.demo.services <name> --port N``) so that
process faults (kill, pause) hit one dependency at a time, as they would in production, and the
gateway's timeouts, retries and error mapping can be watched from the client side.

The services are deliberately small but behave like real ones where a load-and-chaos run can
see it: keep-alive connections, JSON bodies, a slow search endpoint with variance, a payments
call with a hard deadline and one retry, and distinct 502/503 answers for downstream failures.

Only loopback is ever bound. gevent is patched first thing in :func:`main`, before any module that
creates sockets, threads or SSL contexts is imported; this module therefore imports nothing at the
top that does so (``gevent.pywsgi`` pulls in ``ssl`` and is imported inside :func:`serve`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

import gevent
from gevent import socket as gsocket

from harness.demo.breaker import BreakerSettings
from harness.demo.gateway import Gateway, GatewayConfig
from harness.demo.shop import make_cart, make_catalog, make_payments, payments_journal_dir
from harness.demo.web import HOST, App, log

__all__ = ["SERVICE_FACTORIES", "main", "parse_args", "serve"]


def _build_gateway(args: argparse.Namespace) -> App:
    port = args.port
    gateway = Gateway(
        GatewayConfig(
            catalog=(args.catalog_host, args.catalog_port or port + 1),
            cart=(args.cart_host, args.cart_port or port + 2),
            payments=(args.payments_host, args.payments_port or port + 3),
            timeout=args.timeout,
            retry_backoff=args.retry_backoff,
            payments_name=args.payments_name,
            nameserver=_address(args.nameserver) if args.nameserver else None,
            breaker=BreakerSettings(failures=args.breaker_failures, reset=args.breaker_reset),
        )
    )
    return _instrumented(gateway.app, gateway)


def _instrumented(app: App, gateway: Gateway | None = None) -> App:
    """``app`` with its Prometheus metrics on GET /metrics (and the gateway's breaker's).

    The metrics module is imported here, once gevent is patched: prometheus_client takes its
    locks from ``threading`` when it is imported."""
    from harness.demo.metrics import instrument

    instrument(app, (gateway.payments_breaker,) if gateway is not None else ())
    return app


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


SERVICE_FACTORIES: dict[str, Callable[[argparse.Namespace], App]] = {
    "gateway": _build_gateway,
    "catalog": lambda args: _instrumented(make_catalog()),
    "cart": lambda args: _instrumented(make_cart()),
    "payments": lambda args: _instrumented(
        make_payments(journal_dir=args.journal_dir or payments_journal_dir(args.port))
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.demo.services", description="One demo shop service.")
    parser.add_argument("service", choices=sorted([*SERVICE_FACTORIES, "proxy", "dns"]))
    parser.add_argument("--port", type=int, required=True, help="port to bind on 127.0.0.1")
    parser.add_argument("--catalog-port", type=int, help="gateway only; default port+1")
    parser.add_argument("--cart-port", type=int, help="gateway only; default port+2")
    parser.add_argument("--payments-port", type=int, help="gateway only; default port+3")
    # The services on other hosts (the multi-host test spreads them over network namespaces).
    parser.add_argument("--catalog-host", default=HOST, help="gateway only: catalog's address")
    parser.add_argument("--cart-host", default=HOST, help="gateway only: cart's address")
    parser.add_argument("--payments-host", default=HOST, help="gateway only: payments' address")
    parser.add_argument("--host", default=HOST, help="address to bind (payments runs in a namespace of its own)")
    parser.add_argument("--upstream-port", type=int, help="proxy only: the service behind it")
    parser.add_argument("--upstream-host", default=HOST, help="proxy only: the service's address")
    parser.add_argument("--control-port", type=int, help="proxy only: its control API (proxy.* faults)")
    parser.add_argument(
        "--journal-dir", help="payments only: where charges are journaled (default /tmp/harness-demo-payments-PORT)"
    )
    parser.add_argument("--payments-name", help="gateway only: reach payments by this name (with --nameserver)")
    parser.add_argument("--nameserver", help="gateway only: host:port of the DNS server names are resolved with")
    parser.add_argument("--record", action="append", default=[], help="dns only: NAME=ADDRESS it answers")
    parser.add_argument("--timeout", type=float, default=1.0, help="gateway only: downstream call deadline (s)")
    parser.add_argument("--retry-backoff", type=float, default=0.1, help="gateway only: before the payments retry")
    defaults = BreakerSettings()
    parser.add_argument(
        "--breaker-failures",
        type=int,
        default=defaults.failures,
        help="gateway only: consecutive failed payments calls that open its circuit breaker (0: no breaker)",
    )
    parser.add_argument(
        "--breaker-reset",
        type=float,
        default=defaults.reset,
        help="gateway only: seconds the breaker stays open before one trial call",
    )
    return parser.parse_args(argv)


def serve(service: str, port: int, app: App, host: str = HOST) -> int:
    """Serve until SIGTERM or SIGINT, then close keep-alive connections within a second."""
    from gevent.pywsgi import WSGIServer  # imports ssl: only after gevent is patched

    class NoDelayWSGIServer(WSGIServer):
        """pywsgi sends the response head and body in two writes; without TCP_NODELAY the body
        waits for the client's delayed ACK (40 ms on Linux) and a keep-alive service crawls."""

        def handle(self, sock: gsocket.socket, address: tuple[str, int]) -> None:
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            super().handle(sock, address)

    server = NoDelayWSGIServer((host, port), app, log=None, backlog=1024)
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, lambda: gevent.spawn(server.stop, timeout=1.0))
    try:
        server.start()
    except OSError as exc:
        log(service, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        return 1
    log(service, f"listening on http://{host}:{port}")
    server.serve_forever()
    log(service, "stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of one service process. Patches gevent before anything else (but for the DNS
    server, which runs on the standard library's threads)."""
    args = parse_args(argv)
    if args.service == "dns":
        return _serve_dns(args)
    from gevent import monkey

    monkey.patch_all()
    if args.service == "proxy":
        return _serve_proxy(args)
    app = SERVICE_FACTORIES[args.service](args)
    return serve(args.service, args.port, app, args.host)


def _serve_proxy(args: argparse.Namespace) -> int:
    """The fault proxy in front of payments: the demo's target for proxy.* faults."""
    from harness.chaos.proxy_server import serve as serve_proxy

    if args.upstream_port is None or args.control_port is None:
        log("proxy", "needs --upstream-port and --control-port")
        return 2
    control = f"{HOST}:{args.control_port}"
    try:
        serve_proxy(
            f"{HOST}:{args.port}",
            f"{args.upstream_host}:{args.upstream_port}",
            control,
            workers=1,  # payments sees tens of requests/s: one process is plenty
            on_ready=lambda listen, _control: log("proxy", f"listening on {listen}, control API on {control}"),
        )
    except OSError as exc:
        log("proxy", f"cannot listen: {exc.strerror or exc}")
        return 1
    log("proxy", "stopped")
    return 0


def _serve_dns(args: argparse.Namespace) -> int:
    """The demo's "cluster DNS": answers the demo's names, forwards nothing; dns.* faults go in
    through its control API (target.control)."""
    from harness.chaos.dns_server import serve as serve_dns

    if args.control_port is None:
        log("dns", "needs --control-port")
        return 2
    records = dict(record.partition("=")[::2] for record in args.record)
    control = f"{HOST}:{args.control_port}"
    try:
        serve_dns(
            f"{HOST}:{args.port}",
            control,
            records=records,
            on_ready=lambda listen, _control: log("dns", f"answering DNS on {listen}, control API on {control}"),
        )
    except OSError as exc:
        log("dns", f"cannot listen: {exc.strerror or exc}")
        return 1
    log("dns", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
