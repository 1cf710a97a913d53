"""The demo shop's gateway: the one service users hit, and its keep-alive client for the others.

The gateway routes user requests to catalog, cart and payments with a hard deadline per call,
retries a payment once, and maps downstream failures to distinct answers (503 unreachable or
too slow, 502 answered 5xx or garbage), which is what a load-and-chaos run watches from the
client side.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import gevent
from gevent import socket as gsocket

from harness.demo.breaker import DEFAULT_BREAKER, BreakerSettings, CircuitBreaker
from harness.demo.resolver import Resolver
from harness.demo.web import (
    JSON,
    MAX_BODY,
    MAX_HEADER,
    SESSION,
    App,
    Handler,
    Request,
    Response,
    error_response,
    int_field,
    json_response,
)

__all__ = ["Downstream", "Gateway", "GatewayConfig", "Reply"]

# --------------------------------------------------------------------------------------------
# A small keep-alive HTTP client for downstream calls, with a hard deadline per call.
# --------------------------------------------------------------------------------------------


class _DownstreamError(Exception):
    """A downstream call produced no usable HTTP answer: refused, reset, timed out, garbled."""

    def __init__(self, service: str, reason: str, refused: bool = False) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason
        self.refused = refused  # no connection could be opened: nothing was sent


class _Deadline(Exception):
    """Raised by ``gevent.Timeout`` inside a call; converted to :class:`_DownstreamError`."""


class _ClosedBeforeReply(Exception):
    """The peer closed a connection before sending a single byte of a reply."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> JSON:
        payload = json.loads(self.body)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        return payload


class Downstream:
    """Keep-alive connections to one downstream service, with a deadline over the whole call.

    Written here rather than using geventhttpclient's pool because a whole-call deadline
    (``gevent.Timeout``) must be able to interrupt a send or a receive and still close the
    socket; and because a stale pooled connection (the service was restarted) must be retried
    once on a fresh one, never a timed-out call. Idle connections are capped; there is no cap on
    concurrent calls, so a paused downstream never makes callers queue behind each other: each
    waits for its own deadline and no longer.

    With ``resolve`` the host is a name: it is resolved (``resolve()`` gives an address) for every
    new connection, inside the call's deadline, and never cached, as a Go service's dialer does;
    ``max_age`` then retires a connection that many seconds after it was opened (gRPC's
    ``MaxConnectionAge``, Envoy's ``max_connection_duration``: the knob services use so that
    clients re-resolve), so a name that stops resolving fails new calls within ``max_age``.
    """

    def __init__(
        self,
        service: str,
        host: str,
        port: int,
        timeout: float,
        max_idle: int = 256,
        resolve: Callable[[], str] | None = None,
        max_age: float | None = None,
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_idle = max_idle
        self.resolve = resolve
        self.max_age = max_age
        self._idle: list[tuple[gsocket.socket, float]] = []
        self._host_header = f"{host}:{port}"

    def call(self, method: str, path: str, payload: JSON | None = None, timeout: float | None = None) -> Reply:
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        deadline = self.timeout if timeout is None else timeout
        try:
            with gevent.Timeout(deadline, _Deadline):
                return self._exchange(head.encode("latin-1") + body)
        except _Deadline:
            raise _DownstreamError(self.service, f"no answer within {deadline:g} s") from None
        except _ClosedBeforeReply:
            raise _DownstreamError(self.service, "connection closed before a reply") from None
        except ConnectionRefusedError:
            raise _DownstreamError(self.service, "connection refused", refused=True) from None
        except OSError as exc:
            raise _DownstreamError(self.service, exc.strerror or repr(exc)) from None
        except ValueError as exc:
            raise _DownstreamError(self.service, f"bad reply: {exc}") from None

    def _exchange(self, request: bytes) -> Reply:
        for _ in range(2):  # at most one extra attempt, only for a stale reused connection
            sock, opened, reused = self._checkout()
            try:
                sock.sendall(request)
                reply, keep_alive = _read_reply(sock)
            except (_ClosedBeforeReply, ConnectionResetError, BrokenPipeError):
                sock.close()
                if reused:  # the service went away since: so did every other idle connection
                    self._drop_idle()
                    continue
                raise
            except BaseException:
                sock.close()
                raise
            self._checkin(sock, opened, keep_alive)
            return reply
        raise _ClosedBeforeReply()

    def _checkout(self) -> tuple[gsocket.socket, float, bool]:
        while self._idle:
            sock, opened = self._idle.pop()
            if self.max_age is None or time.monotonic() - opened < self.max_age:
                return sock, opened, True
            sock.close()  # retired: the next connection asks the resolver again
        host = self.host if self.resolve is None else self.resolve()
        sock = gsocket.create_connection((host, self.port))
        sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        return sock, time.monotonic(), False

    def _drop_idle(self) -> None:
        while self._idle:
            self._idle.pop()[0].close()

    def _checkin(self, sock: gsocket.socket, opened: float, keep_alive: bool) -> None:
        if keep_alive and len(self._idle) < self.max_idle:
            self._idle.append((sock, opened))
        else:
            sock.close()


def _read_reply(sock: gsocket.socket) -> tuple[Reply, bool]:
    """Read one HTTP/1.1 response with a Content-Length (all the demo services send one)."""
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            if buffer:
                raise ValueError("connection closed inside the response head")
            raise _ClosedBeforeReply()
        buffer += chunk
        if len(buffer) > MAX_HEADER:
            raise ValueError("response head too large")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    version, status = _status_line(lines[0])
    headers = dict(_header(line) for line in lines[1:] if line)
    if "chunked" in headers.get("transfer-encoding", ""):
        raise ValueError("chunked responses are not supported")
    length = int(headers.get("content-length", "-1"))
    body = _read_body_bytes(sock, buffer, end + 4, length)
    keep_alive = length >= 0 and version == "HTTP/1.1" and headers.get("connection", "") != "close"
    return Reply(status, body), keep_alive


def _status_line(line: str) -> tuple[str, int]:
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {line[:80]!r}")
    return parts[0], int(parts[1])


def _header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip().lower()


def _read_body_bytes(sock: gsocket.socket, buffer: bytearray, start: int, length: int) -> bytes:
    """The body after the head: exactly ``length`` bytes, or up to EOF when no length was sent."""
    if length > MAX_BODY * 16:
        raise ValueError("response body too large")
    while length < 0 or len(buffer) - start < length:
        chunk = sock.recv(65536)
        if not chunk:
            if length < 0:
                break
            raise ValueError("connection closed inside the response body")
        buffer += chunk
    return bytes(buffer[start:] if length < 0 else buffer[start : start + length])


class Replicas:
    """Several instances of one service behind the gateway, called round robin.

    A call that an instance refuses to connect (it is down: killed, not yet restarted) is tried
    once on the next instance, as Envoy's ``retry_on: connect-failure`` with one retry or nginx's
    ``proxy_next_upstream error`` do: nothing was sent, so any call may go elsewhere. So with one
    instance of three down every call still succeeds; with two down, a call that starts on the
    first dead one meets the second and fails (about a third of them).
    """

    def __init__(self, members: list[Downstream]) -> None:
        self.members = members
        self._turn = itertools.count()

    def call(self, method: str, path: str, payload: JSON | None = None, timeout: float | None = None) -> Reply:
        first = next(self._turn) % len(self.members)
        try:
            return self.members[first].call(method, path, payload, timeout)
        except _DownstreamError as exc:
            if not exc.refused or len(self.members) == 1:
                raise
        return self.members[(first + 1) % len(self.members)].call(method, path, payload, timeout)


# --------------------------------------------------------------------------------------------
# gateway: the only service users hit.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayConfig:
    catalog: tuple[str, int]
    cart: tuple[str, int]
    payments: tuple[str, int]
    timeout: float = 1.0
    retry_backoff: float = 0.1
    health_timeout: float = 0.5
    #: Reach payments by this name, resolved through ``nameserver`` for each new connection.
    payments_name: str | None = None
    nameserver: tuple[str, int] | None = None
    #: Seconds a connection to a downstream reached by name is reused before it is retired.
    max_connection_age: float = 1.0
    #: Ports of further catalog instances on catalog's host, called round robin with catalog's own.
    catalog_replicas: tuple[int, ...] = ()
    #: The circuit breaker around the calls to payments.
    breaker: BreakerSettings = DEFAULT_BREAKER


def _passthrough(reply: Reply, service: str) -> Response:
    """A downstream answer as the gateway's own: 2xx/4xx verbatim, 5xx as a 502."""
    if reply.status >= 500:
        return error_response(502, f"{service} error", upstream_status=reply.status)
    return Response(reply.status, reply.body)


def _unavailable(exc: _DownstreamError) -> Response:
    return error_response(503, f"{exc.service} unavailable", reason=exc.reason)


class Gateway:
    """Routes user requests to catalog, cart and payments and maps their failures.

    Catalog and cart failures become 503 (unreachable or too slow) or 502 (answered 5xx or
    garbage). Payments gets one retry after a short backoff, with the same idempotency key, since
    a checkout is what users least forgive losing to a blip; when both attempts fail the answer is
    503 ``{"error": "payments unavailable"}`` and the cart is kept. Every call to payments goes
    through a circuit breaker (:mod:`.breaker`): once payments has failed ``breaker.failures``
    calls in a row, checkouts are answered 503 ``{"error": "payments unavailable", "breaker":
    "open"}`` at once, without a call, until a trial call succeeds.
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.catalog: Downstream | Replicas = Downstream("catalog", *config.catalog, timeout=config.timeout)
        if config.catalog_replicas:
            host, ports = config.catalog[0], (config.catalog[1], *config.catalog_replicas)
            self.catalog = Replicas([Downstream("catalog", host, port, timeout=config.timeout) for port in ports])
        self.cart = Downstream("cart", *config.cart, timeout=config.timeout)
        self.payments = self._payments(config)
        self.payments_breaker = CircuitBreaker("payments", config.breaker)
        self.app = App("gateway")
        self._orders = itertools.count(1)
        routes: list[tuple[str, str, Handler]] = [
            ("GET", r"/health", self.health),
            ("GET", r"/", self.home),
            ("GET", r"/api/products", self.products),
            ("GET", r"/api/products/(?P<product_id>\d{1,9})", self.product),
            ("GET", r"/api/search", self.search),
            ("POST", rf"/api/cart/{SESSION}/items", self.add_to_cart),
            ("GET", rf"/api/cart/{SESSION}", self.view_cart),
            ("POST", rf"/api/checkout/{SESSION}", self.checkout),
        ]
        for method, pattern, handler in routes:
            self.app.add(method, pattern, self._guarded(handler))

    @staticmethod
    def _payments(config: GatewayConfig) -> Downstream:
        if config.payments_name is None or config.nameserver is None:
            return Downstream("payments", *config.payments, timeout=config.timeout)
        name, resolver = config.payments_name, Resolver(config.nameserver)
        return Downstream(
            "payments",
            name,
            config.payments[1],
            timeout=config.timeout,
            resolve=lambda: resolver.lookup(name),
            max_age=config.max_connection_age,
        )

    @staticmethod
    def _guarded(handler: Handler) -> Handler:
        """Turn any downstream failure that a handler did not map itself into a 503."""

        def guarded(request: Request, **params: str) -> Response:
            try:
                return handler(request, **params)
            except _DownstreamError as exc:
                return _unavailable(exc)

        return guarded

    def health(self, request: Request) -> Response:
        """200 with each downstream's state; "degraded" when any of them is not answering."""
        services = {"catalog": self.catalog, "cart": self.cart, "payments": self.payments}
        jobs = {name: gevent.spawn(self._probe, client) for name, client in services.items()}
        gevent.joinall(list(jobs.values()), timeout=self.config.health_timeout + 0.5)
        states = {name: (job.value if job.successful() else "unavailable") for name, job in jobs.items()}
        for job in jobs.values():
            job.kill(block=False)
        status = "ok" if all(state == "ok" for state in states.values()) else "degraded"
        breakers = {self.payments_breaker.name: self.payments_breaker.state.label}
        return json_response({"status": status, "service": "gateway", "downstreams": states, "breakers": breakers})

    def _probe(self, client: Downstream | Replicas) -> str:
        try:
            reply = client.call("GET", "/health", timeout=self.config.health_timeout)
        except _DownstreamError:
            return "unavailable"
        return "ok" if reply.status == 200 else f"error {reply.status}"

    def home(self, request: Request) -> Response:
        reply = self.catalog.call("GET", "/products")
        if reply.status != 200:
            return _passthrough(reply, "catalog")
        products = reply.json()["products"]
        featured = sorted(products, key=lambda p: -p["rating"])[:8]
        return json_response({"shop": "harness demo shop", "featured": featured, "count": len(products)})

    def products(self, request: Request) -> Response:
        return _passthrough(self.catalog.call("GET", "/products"), "catalog")

    def product(self, request: Request, product_id: str) -> Response:
        return _passthrough(self.catalog.call("GET", f"/products/{product_id}"), "catalog")

    def search(self, request: Request) -> Response:
        query = urllib.parse.quote(request.arg("q"), safe="")
        return _passthrough(self.catalog.call("GET", f"/search?q={query}"), "catalog")

    def add_to_cart(self, request: Request, session: str) -> Response:
        """Check the product exists (and take its price) in the catalog, then add it to the cart."""
        payload = request.json()
        product_id = int_field(payload, "product_id", 1, 10**9)
        qty = int_field(payload, "qty", 1, 100)
        product = self.catalog.call("GET", f"/products/{product_id}")
        if product.status == 404:
            return error_response(404, f"no product {product_id}")
        if product.status != 200:
            return _passthrough(product, "catalog")
        item = {"product_id": product_id, "qty": qty, "unit_price": product.json()["price"]}
        return _passthrough(self.cart.call("POST", f"/cart/{session}/items", item), "cart")

    def view_cart(self, request: Request, session: str) -> Response:
        return _passthrough(self.cart.call("GET", f"/cart/{session}"), "cart")

    def checkout(self, request: Request, session: str) -> Response:
        cart_reply = self.cart.call("GET", f"/cart/{session}")
        if cart_reply.status != 200:
            return _passthrough(cart_reply, "cart")
        cart = cart_reply.json()
        if not cart["items"]:
            return error_response(409, "cart is empty")
        order_id = f"ord_{os.getpid():x}_{next(self._orders)}"
        try:
            charge = self._charge(session, cart["total"], order_id)
        except _DownstreamError:
            return error_response(503, "payments unavailable")
        if charge is None:
            return error_response(503, "payments unavailable", breaker="open")
        if charge.status >= 500:
            return error_response(502, "payments error", upstream_status=charge.status)
        if charge.status != 200:
            return error_response(402, "payment declined", upstream_status=charge.status)
        cleared = self._clear_cart(session)
        result = {"status": "confirmed", "order_id": order_id, "charge_id": charge.json()["id"]}
        return json_response({**result, "total": cart["total"], "items": cart["count"], "cart_cleared": cleared})

    def _charge(self, session: str, amount: float, order_id: str) -> Reply | None:
        """POST /charge with the call deadline, and once more after a short backoff on failure;
        None when the breaker is open (then, or by the retry)."""
        payload = {
            "amount": amount,
            "currency": "EUR",
            "session": session,
            "idempotency_key": order_id,
            "requested_at": round(time.time(), 3),  # payments refuses a request 5 minutes off its clock
        }
        try:
            reply = self._charge_once(payload)
            if reply is None or reply.status < 500:
                return reply
        except _DownstreamError:
            pass
        gevent.sleep(self.config.retry_backoff * random.uniform(1.0, 1.5))
        return self._charge_once(payload)

    def _charge_once(self, payload: JSON) -> Reply | None:
        """One POST /charge through the breaker (no answer or a 5xx is a failure); None, unsent,
        while it is open."""
        return self.payments_breaker.call(
            lambda: self.payments.call("POST", "/charge", payload),
            fallback=lambda: None,
            failed=lambda reply: reply.status >= 500,
        )

    def _clear_cart(self, session: str) -> bool:
        """The charge went through, so the order stands even if the cart cannot be emptied now."""
        try:
            return self.cart.call("DELETE", f"/cart/{session}").status == 200
        except _DownstreamError:
            return False
