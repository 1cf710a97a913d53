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
import http
import itertools
import json
import os
import random
import re
import signal
import sys
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent import socket as gsocket

__all__ = [
    "SERVICE_FACTORIES",
    "App",
    "Downstream",
    "DownstreamError",
    "Request",
    "Response",
    "main",
]

JSON = dict[str, Any]
HOST = "127.0.0.1"
MAX_BODY = 1 << 20  # nothing in the shop needs more; refuse rather than buffer unbounded input
MAX_HEADER = 64 * 1024

_STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in http.HTTPStatus}
_JSON_HEADERS = ("Content-Type", "application/json")


def _log(service: str, message: str) -> None:
    """One line to stderr, which the supervisor sends to ``<name>.log``.

    Plain writes rather than :mod:`logging`: ``logging`` imports ``threading`` before gevent is
    patched, and a service only logs a handful of lifecycle lines (no access log: at thousands of
    requests per second it would only fill the disk).
    """
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(f"{stamp} {service}[{os.getpid()}] {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# A tiny WSGI framework: requests, responses, a route table.
# --------------------------------------------------------------------------------------------


class HTTPError(Exception):
    """Raised by a handler to answer with an error status and a JSON ``{"error": ...}`` body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler needs from a WSGI environ, read once."""

    method: str
    path: str
    query: str
    body: bytes

    def arg(self, name: str, default: str = "") -> str:
        """One query-string argument (the first if repeated)."""
        values = urllib.parse.parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else default

    def json(self) -> JSON:
        """The body as a JSON object, or a 400 that says what is wrong with it."""
        try:
            payload = json.loads(self.body or b"{}")
        except ValueError as exc:
            raise HTTPError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise HTTPError(400, "body must be a JSON object")
        return payload


@dataclass(frozen=True, slots=True)
class Response:
    """A status and an already-encoded JSON body (so the gateway can pass bodies through)."""

    status: int
    body: bytes


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode())


def error_response(status: int, message: str, **extra: Any) -> Response:
    return json_response({"error": message, **extra}, status)


Handler = Callable[..., Response]


@dataclass
class App:
    """A WSGI application over a route table of ``(method, regex, handler)``.

    Path parameters are the regex's named groups, passed to the handler as keyword arguments.
    Every answer is JSON with a Content-Length, which is what keeps pywsgi connections alive.
    """

    service: str
    routes: list[tuple[str, re.Pattern[str], Handler]] = field(default_factory=list)

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern + r"\Z"), handler))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = self.dispatch(environ)
        start_response(
            _STATUS_LINES.get(response.status, f"{response.status} Unknown"),
            [_JSON_HEADERS, ("Content-Length", str(len(response.body)))],
        )
        return [response.body]

    def dispatch(self, environ: dict[str, Any]) -> Response:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        try:
            handler, params = self._match(method, path)
            request = Request(method, path, environ.get("QUERY_STRING", ""), _read_body(environ))
            return handler(request, **params)
        except HTTPError as exc:
            return error_response(exc.status, exc.message, **exc.extra)
        except Exception as exc:  # a bug must answer 500, not drop the keep-alive connection
            _log(self.service, f"internal error on {method} {path}: {exc!r}")
            return error_response(500, "internal error")

    def _match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for route_method, pattern, handler in self.routes:
            found = pattern.match(path)
            if found is None:
                continue
            if route_method == method:
                return handler, found.groupdict()
            allowed = True
        if allowed:
            raise HTTPError(405, f"method {method} not allowed on {path}")
        raise HTTPError(404, f"no such endpoint: {path}")


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise HTTPError(400, "invalid Content-Length") from None
    if length > MAX_BODY:
        raise HTTPError(413, f"body larger than {MAX_BODY} bytes")
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _health_handler(service: str) -> Handler:
    started = time.monotonic()

    def health(request: Request) -> Response:
        uptime = round(time.monotonic() - started, 3)
        return json_response({"status": "ok", "service": service, "pid": os.getpid(), "uptime_s": uptime})

    return health


def _int_field(payload: JSON, name: str, low: int, high: int) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise HTTPError(400, f"{name} must be an integer in [{low}, {high}]")
    return value


_SESSION = r"(?P<session>[A-Za-z0-9_.\-]{1,64})"


# --------------------------------------------------------------------------------------------
# catalog: a fixed set of products, a lookup and a slower search.
# --------------------------------------------------------------------------------------------

_ADJECTIVES = ["Classic", "Ultra", "Eco", "Smart", "Vintage", "Compact", "Pro", "Deluxe", "Travel", "Solar"]
_NOUNS = [
    "Kettle",
    "Backpack",
    "Lamp",
    "Headphones",
    "Mug",
    "Notebook",
    "Jacket",
    "Blender",
    "Speaker",
    "Watch",
]
_CATEGORIES = {
    "Kettle": "kitchen",
    "Blender": "kitchen",
    "Mug": "kitchen",
    "Backpack": "outdoor",
    "Jacket": "outdoor",
    "Lamp": "home",
    "Notebook": "office",
    "Headphones": "audio",
    "Speaker": "audio",
    "Watch": "accessories",
}
PRODUCT_COUNT = 50


def make_products(count: int = PRODUCT_COUNT, seed: int = 7) -> list[JSON]:
    """The same ``count`` products on every start, so locustfiles and tests can rely on ids 1..count."""
    rng = random.Random(seed)
    names = [f"{a} {n}" for a, n in itertools.product(_ADJECTIVES, _NOUNS)]
    rng.shuffle(names)
    return [
        {
            "id": index,
            "name": name,
            "category": _CATEGORIES[name.split()[-1]],
            "price": round(rng.uniform(4.0, 250.0), 2),
            "currency": "EUR",
            "stock": rng.randint(0, 400),
            "rating": round(rng.uniform(2.5, 5.0), 1),
        }
        for index, name in enumerate(names[:count], start=1)
    ]


def _search_score(product: JSON, terms: list[str]) -> int:
    text = f"{product['name']} {product['category']}".lower()
    return sum(text.count(term) * (3 if term in product["name"].lower() else 1) for term in terms)


def make_catalog(search_delay: tuple[float, float, float] = (0.005, 0.020, 0.008)) -> App:
    """catalog: ``/products``, ``/products/<id>``, ``/search?q=``.

    Bodies for the list and each product are encoded once: the catalog should be cheap, so that
    the gateway (the thing under test) is where time goes. Search sleeps 5-20 ms (triangular,
    mode 8 ms) to stand in for a query against a search index: a realistic slow endpoint.
    """
    products = make_products()
    by_id = {p["id"]: json_response(p) for p in products}
    listing = json_response({"products": products, "count": len(products)})
    low, high, mode = search_delay
    app = App("catalog")

    def list_products(request: Request) -> Response:
        return listing

    def get_product(request: Request, product_id: str) -> Response:
        found = by_id.get(int(product_id))
        if found is None:
            raise HTTPError(404, f"no product {product_id}")
        return found

    def search(request: Request) -> Response:
        query = request.arg("q").strip()
        terms = [t for t in query.lower().split() if t][:8]
        gevent.sleep(random.triangular(low, high, mode))
        scored = sorted(((_search_score(p, terms), p) for p in products), key=lambda sp: -sp[0])
        hits = [p for score, p in scored if score > 0][:20]
        return json_response({"query": query, "count": len(hits), "results": hits})

    app.add("GET", r"/health", _health_handler("catalog"))
    app.add("GET", r"/products", list_products)
    app.add("GET", r"/products/(?P<product_id>\d{1,9})", get_product)
    app.add("GET", r"/search", search)
    return app


# --------------------------------------------------------------------------------------------
# cart: in-memory carts by session.
# --------------------------------------------------------------------------------------------

MAX_CARTS = 100_000  # oldest carts are dropped beyond this: memory stays bounded in long runs


def make_cart(max_carts: int = MAX_CARTS) -> App:
    """cart: ``POST /cart/<session>/items``, ``GET /cart/<session>``, ``DELETE /cart/<session>``.

    State is lost on restart, as an in-memory cache would be; that is part of what a process
    kill does to a real system.
    """
    carts: OrderedDict[str, dict[int, JSON]] = OrderedDict()
    app = App("cart")

    def view(session: str) -> JSON:
        items = list(carts.get(session, {}).values())
        total = round(sum(i["qty"] * i["unit_price"] for i in items), 2)
        return {"session": session, "items": items, "count": sum(i["qty"] for i in items), "total": total}

    def add_item(request: Request, session: str) -> Response:
        payload = request.json()
        product_id = _int_field(payload, "product_id", 1, 10**9)
        qty = _int_field(payload, "qty", 1, 100)
        price = payload.get("unit_price", 0.0)
        if not isinstance(price, int | float) or isinstance(price, bool) or price < 0:
            raise HTTPError(400, "unit_price must be a non-negative number")
        cart = carts.setdefault(session, {})
        carts.move_to_end(session)
        item = cart.setdefault(product_id, {"product_id": product_id, "qty": 0, "unit_price": price})
        item["qty"] = min(item["qty"] + qty, 1000)
        while len(carts) > max_carts:
            carts.popitem(last=False)
        return json_response(view(session))

    def get_cart(request: Request, session: str) -> Response:
        return json_response(view(session))

    def delete_cart(request: Request, session: str) -> Response:
        existed = carts.pop(session, None) is not None
        return json_response({"session": session, "deleted": existed})

    app.add("GET", r"/health", _health_handler("cart"))
    app.add("POST", rf"/cart/{_SESSION}/items", add_item)
    app.add("GET", rf"/cart/{_SESSION}", get_cart)
    app.add("DELETE", rf"/cart/{_SESSION}", delete_cart)
    return app


# --------------------------------------------------------------------------------------------
# payments: a slow, always-approving charge endpoint with idempotency keys.
# --------------------------------------------------------------------------------------------

MAX_IDEMPOTENCY_KEYS = 50_000


def make_payments(delay: tuple[float, float, float] = (0.010, 0.030, 0.015)) -> App:
    """payments: ``POST /charge`` answers ``{"status": "approved", "id": ...}`` after 10-30 ms.

    A repeated ``idempotency_key`` returns the first charge: the gateway retries once after a
    timeout, and a paused payments process later answers the abandoned attempt too; neither may
    charge twice.
    """
    low, high, mode = delay
    charges: OrderedDict[str, JSON] = OrderedDict()
    app = App("payments")

    def charge(request: Request) -> Response:
        payload = request.json()
        amount = payload.get("amount")
        if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
            raise HTTPError(400, "amount must be a positive number")
        gevent.sleep(random.triangular(low, high, mode))
        key = str(payload.get("idempotency_key") or "")
        if key and key in charges:
            return json_response(charges[key])
        result = {"status": "approved", "id": f"ch_{random.getrandbits(64):016x}", "amount": amount}
        if key:
            charges[key] = result
            while len(charges) > MAX_IDEMPOTENCY_KEYS:
                charges.popitem(last=False)
        return json_response(result)

    app.add("GET", r"/health", _health_handler("payments"))
    app.add("POST", r"/charge", charge)
    return app


# --------------------------------------------------------------------------------------------
# A small keep-alive HTTP client for downstream calls, with a hard deadline per call.
# --------------------------------------------------------------------------------------------


class DownstreamError(Exception):
    """A downstream call produced no usable HTTP answer: refused, reset, timed out, garbled."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


class _Deadline(Exception):
    """Raised by ``gevent.Timeout`` inside a call; converted to :class:`DownstreamError`."""


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
    """

    def __init__(self, service: str, host: str, port: int, timeout: float, max_idle: int = 256) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[gsocket.socket] = []
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
            raise DownstreamError(self.service, f"no answer within {deadline:g} s") from None
        except _ClosedBeforeReply:
            raise DownstreamError(self.service, "connection closed before a reply") from None
        except OSError as exc:
            raise DownstreamError(self.service, exc.strerror or repr(exc)) from None
        except ValueError as exc:
            raise DownstreamError(self.service, f"bad reply: {exc}") from None

    def _exchange(self, request: bytes) -> Reply:
        for _ in range(2):  # at most one extra attempt, only for a stale reused connection
            sock, reused = self._checkout()
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
            self._checkin(sock, keep_alive)
            return reply
        raise _ClosedBeforeReply()

    def _checkout(self) -> tuple[gsocket.socket, bool]:
        if self._idle:
            return self._idle.pop(), True
        sock = gsocket.create_connection((self.host, self.port))
        sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        return sock, False

    def _drop_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _checkin(self, sock: gsocket.socket, keep_alive: bool) -> None:
        if keep_alive and len(self._idle) < self.max_idle:
            self._idle.append(sock)
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


def _passthrough(reply: Reply, service: str) -> Response:
    """A downstream answer as the gateway's own: 2xx/4xx verbatim, 5xx as a 502."""
    if reply.status >= 500:
        return error_response(502, f"{service} error", upstream_status=reply.status)
    return Response(reply.status, reply.body)


def _unavailable(exc: DownstreamError) -> Response:
    return error_response(503, f"{exc.service} unavailable", reason=exc.reason)


class Gateway:
    """Routes user requests to catalog, cart and payments and maps their failures.

    Catalog and cart failures become 503 (unreachable or too slow) or 502 (answered 5xx or
    garbage). Payments gets one retry after a short backoff, with the same idempotency key, since
    a checkout is what users least forgive losing to a blip; when both attempts fail the answer is
    503 ``{"error": "payments unavailable"}`` and the cart is kept.
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.catalog = Downstream("catalog", *config.catalog, timeout=config.timeout)
        self.cart = Downstream("cart", *config.cart, timeout=config.timeout)
        self.payments = Downstream("payments", *config.payments, timeout=config.timeout)
        self.app = App("gateway")
        self._orders = itertools.count(1)
        routes: list[tuple[str, str, Handler]] = [
            ("GET", r"/health", self.health),
            ("GET", r"/", self.home),
            ("GET", r"/api/products", self.products),
            ("GET", r"/api/products/(?P<product_id>\d{1,9})", self.product),
            ("GET", r"/api/search", self.search),
            ("POST", rf"/api/cart/{_SESSION}/items", self.add_to_cart),
            ("GET", rf"/api/cart/{_SESSION}", self.view_cart),
            ("POST", rf"/api/checkout/{_SESSION}", self.checkout),
        ]
        for method, pattern, handler in routes:
            self.app.add(method, pattern, self._guarded(handler))

    @staticmethod
    def _guarded(handler: Handler) -> Handler:
        """Turn any downstream failure that a handler did not map itself into a 503."""

        def guarded(request: Request, **params: str) -> Response:
            try:
                return handler(request, **params)
            except DownstreamError as exc:
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
        return json_response({"status": status, "service": "gateway", "downstreams": states})

    def _probe(self, client: Downstream) -> str:
        try:
            reply = client.call("GET", "/health", timeout=self.config.health_timeout)
        except DownstreamError:
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
        product_id = _int_field(payload, "product_id", 1, 10**9)
        qty = _int_field(payload, "qty", 1, 100)
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
        except DownstreamError:
            return error_response(503, "payments unavailable")
        if charge.status >= 500:
            return error_response(502, "payments error", upstream_status=charge.status)
        if charge.status != 200:
            return error_response(402, "payment declined", upstream_status=charge.status)
        cleared = self._clear_cart(session)
        result = {"status": "confirmed", "order_id": order_id, "charge_id": charge.json()["id"]}
        return json_response({**result, "total": cart["total"], "items": cart["count"], "cart_cleared": cleared})

    def _charge(self, session: str, amount: float, order_id: str) -> Reply:
        """POST /charge with the call deadline, and once more after a short backoff on failure."""
        payload = {"amount": amount, "currency": "EUR", "session": session, "idempotency_key": order_id}
        try:
            reply = self.payments.call("POST", "/charge", payload)
            if reply.status < 500:
                return reply
        except DownstreamError:
            pass
        gevent.sleep(self.config.retry_backoff * random.uniform(1.0, 1.5))
        return self.payments.call("POST", "/charge", payload)

    def _clear_cart(self, session: str) -> bool:
        """The charge went through, so the order stands even if the cart cannot be emptied now."""
        try:
            return self.cart.call("DELETE", f"/cart/{session}").status == 200
        except DownstreamError:
            return False


def make_gateway(config: GatewayConfig) -> App:
    return Gateway(config).app


# --------------------------------------------------------------------------------------------
# Process entry point.
# --------------------------------------------------------------------------------------------


def _build_gateway(args: argparse.Namespace) -> App:
    port = args.port
    return make_gateway(
        GatewayConfig(
            catalog=(args.catalog_host, args.catalog_port or port + 1),
            cart=(args.cart_host, args.cart_port or port + 2),
            payments=(args.payments_host, args.payments_port or port + 3),
            timeout=args.timeout,
            retry_backoff=args.retry_backoff,
        )
    )


SERVICE_FACTORIES: dict[str, Callable[[argparse.Namespace], App]] = {
    "gateway": _build_gateway,
    "catalog": lambda args: make_catalog(),
    "cart": lambda args: make_cart(),
    "payments": lambda args: make_payments(),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.demo.services", description="One demo shop service.")
    parser.add_argument("service", choices=sorted([*SERVICE_FACTORIES, "proxy"]))
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
    parser.add_argument("--timeout", type=float, default=1.0, help="gateway only: downstream call deadline (s)")
    parser.add_argument("--retry-backoff", type=float, default=0.1, help="gateway only: before the payments retry")
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
        _log(service, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        return 1
    _log(service, f"listening on http://{host}:{port}")
    server.serve_forever()
    _log(service, "stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of one service process. Patches gevent before anything else."""
    from gevent import monkey

    monkey.patch_all()
    args = parse_args(argv)
    if args.service == "proxy":
        return _serve_proxy(args)
    app = SERVICE_FACTORIES[args.service](args)
    return serve(args.service, args.port, app, args.host)


def _serve_proxy(args: argparse.Namespace) -> int:
    """The fault proxy in front of payments: the demo's target for proxy.* faults."""
    from harness.chaos.proxy_server import serve as serve_proxy

    if args.upstream_port is None or args.control_port is None:
        _log("proxy", "needs --upstream-port and --control-port")
        return 2
    control = f"{HOST}:{args.control_port}"
    try:
        serve_proxy(
            f"{HOST}:{args.port}",
            f"{args.upstream_host}:{args.upstream_port}",
            control,
            on_ready=lambda listen, _control: _log("proxy", f"listening on {listen}, control API on {control}"),
        )
    except OSError as exc:
        _log("proxy", f"cannot listen: {exc.strerror or exc}")
        return 1
    _log("proxy", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
